"""The engine's workspace budget, the limit on what one call may allocate at all, the chunking
that keeps buffers under them, and the reusable scratch buffers the chunks are gathered into.

One setting bounds every temporary of every op: ``GPUCONV_WORKSPACE_MB`` (a positive integer,
default 512), read at the first call (an invalid value raises ValueError at every call until it
is fixed); tests (and users on small machines) may monkeypatch ``MEMORY_BUDGET_BYTES`` instead
(None: the environment's value), which is read at every call. Beside the output (allocated
whole, once) a call holds:
- *piece* arrays, whose size follows the piece of the output being computed (the zero-padded
  input rows it reads, an accumulator when the output dtype is not the compute dtype, an
  intermediate): ``_pieces`` sizes the pieces so that these stay under ``piece_limit()``, half
  the budget;
- *working* buffers of at most ``chunk_limit()``, a quarter of the budget, each (im2col columns,
  GEMM results before the scatter of a transposed conv, cache blocks, epilogue slabs, all
  threads together), at most two of them at a time (the columns and their GEMM result).
At least one output row of one batch item is computed at a time, so a budget below what that
row needs is exceeded by that row (a one-byte budget still works, row by row). Not counted: a
compute-dtype copy of the weights of a float16 op (weight-sized; locally connected weights,
input-sized, are cast piece by piece), and NumPy's and BLAS's own small buffers.
Within the budget, pieces are kept near ``PIECE_TARGET_BYTES`` and working buffers near
``CHUNK_TARGET_BYTES``: a buffer reused for every piece, in the last-level cache, is faster than
one huge buffer that must be paged in.

Independently of the budget, ``check_allocation`` refuses, before anything is allocated, a call
whose output and smallest workspace together exceed the memory this process can get
(``allocation_limit``): NumPy would otherwise fail late, or the kernel would kill the process.
"""
import functools
import math
import os

import numpy as np

from ..errors import AllocationTooLargeError
from . import _parallel

DEFAULT_WORKSPACE_MB = 512
MEMORY_BUDGET_BYTES = None  # None: GPUCONV_WORKSPACE_MB (or its default)
CHUNK_TARGET_BYTES = 8 * 2**20
PIECE_TARGET_BYTES = 64 * 2**20
# None: the machine's memory (or the cgroup's limit, when lower). Tests set a small number.
ALLOCATION_LIMIT_BYTES = None
# Memory-bound work below this size that follows a GEMM stays on the calling thread
# (``threads_near_gemm``).
GATHER_PARALLEL_BYTES = 4 * 2**20


_environment_budget = None  # GPUCONV_WORKSPACE_MB in bytes, once read (reading costs ~4 us)


def budget_bytes():
    """The workspace budget: ``MEMORY_BUDGET_BYTES``, else ``GPUCONV_WORKSPACE_MB`` MiB."""
    global _environment_budget
    if MEMORY_BUDGET_BYTES is not None:
        return MEMORY_BUDGET_BYTES
    if _environment_budget is None:
        _environment_budget = budget_from_environment(os.environ.get("GPUCONV_WORKSPACE_MB"))
    return _environment_budget


def budget_from_environment(raw):
    """Bytes for ``GPUCONV_WORKSPACE_MB=raw`` (None: the default); ValueError naming the
    variable and the value unless it is a positive integer."""
    if raw is None:
        return DEFAULT_WORKSPACE_MB * 2**20
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise ValueError(
            "The environment variable GPUCONV_WORKSPACE_MB must be a positive integer (MiB of workspace "
            f"per call). Received: GPUCONV_WORKSPACE_MB={raw!r}"
        )
    return int(text) * 2**20


def chunk_limit():
    """Working buffers (all threads together): a quarter of the budget, at most CHUNK_TARGET_BYTES."""
    return min(budget_bytes() // 4, CHUNK_TARGET_BYTES)


def piece_limit():
    """Piece arrays: half the budget (the other half holds two working buffers), at most
    PIECE_TARGET_BYTES."""
    return min(budget_bytes() // 2, PIECE_TARGET_BYTES)


def allocation_limit():
    """Bytes one call may allocate in all: ``ALLOCATION_LIMIT_BYTES``, else the physical memory
    or the cgroup's ``memory.max`` when that is lower (None where neither can be read)."""
    if ALLOCATION_LIMIT_BYTES is not None:
        return ALLOCATION_LIMIT_BYTES
    return _machine_limit()


@functools.lru_cache(maxsize=1)
def _machine_limit():
    """Read once per process: the machine's memory does not change under a running process."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        if text.isdigit():
            limits.append(int(text))
    except OSError:
        pass
    return min(limits) if limits else None


def _size_text(nbytes):
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def check_allocation(shape, dtype, what, workspace_bytes=0):
    """Refuse an array of ``shape`` and ``dtype`` (plus ``workspace_bytes`` more, beside it)
    larger than ``allocation_limit()``, before allocating anything. Sizes in Python ints."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    limit = allocation_limit()
    if limit is None or nbytes + workspace_bytes <= limit:
        return
    shape = tuple(int(n) for n in shape)
    extra = f" plus at least {workspace_bytes} bytes of workspace" if workspace_bytes else ""
    raise AllocationTooLargeError(
        f"The {what} of shape {shape} ({np.dtype(dtype).name}) needs {nbytes} bytes ({_size_text(nbytes)}){extra}, "
        f"more than the {limit} bytes ({_size_text(limit)}) this process can allocate."
    )


def threads_near_gemm(nbytes, memory_bound=True):
    """Threads for a copy that follows (or feeds) a GEMM: the im2col gather, the padding copy,
    the transposed-conv scatter. After a GEMM, OpenBLAS's workers keep spinning on the other
    cores for a while (its default thread timeout, ~0.1 s; gpuconv lowers it when imported
    before NumPy, see ``gpuconv/__init__.py``), and a piece handed to one of our threads waits
    for that core. So memory-bound work below ``GATHER_PARALLEL_BYTES`` runs on the calling
    thread. Measured side by side: bench row D9's 1.2 MB gathers 1.77 -> 1.48 ms; padding of D2,
    D3, D9 5-8% faster; T1's and T3's channels_last scatters 1.66 -> 1.37 and 1.58 -> 1.39 ms;
    gathers of 7 MB and more (D1, D2, V1) within noise either way. Loop-bound work (short
    strided runs: a group-major transpose, a channels_first scatter) keeps the threads."""
    if memory_bound and nbytes < GATHER_PARALLEL_BYTES:
        return 1
    return _parallel.threads_for(nbytes)


def chunks(batch, rows, bytes_per_row, limit=None, item_bytes=0):
    """Yield ``(batch_slice, row_slice)`` pieces whose bytes stay under ``limit`` (default
    ``chunk_limit()``).

    A *row* is one index of the first spatial output axis (or input axis, for the transposed conv)
    and ``bytes_per_row`` what one row of one batch item needs; ``item_bytes`` is what a piece
    needs once per batch item it holds, however few rows (the halo of input rows a window reads
    beyond its own; negative where one row needs less than ``bytes_per_row``). Whole batch items
    are grouped while they fit; an item that alone exceeds the limit is cut into runs of rows (at
    least one row per piece, so a single row larger than the limit is still computed). Every
    piece either spans all rows or exactly one batch item, which keeps each piece of a
    C-contiguous output a strided view.
    """
    limit = chunk_limit() if limit is None else limit
    per_item = item_bytes + rows * bytes_per_row
    if per_item <= limit:
        step = max(1, limit // max(per_item, 1))
        for b in range(0, batch, step):
            yield slice(b, min(b + step, batch)), slice(0, rows)
        return
    step = max(1, (limit - item_bytes) // max(bytes_per_row, 1))
    for b in range(batch):
        for r in range(0, rows, step):
            yield slice(b, b + 1), slice(r, min(r + step, rows))


def reshapes_in_place(a, shape):
    """Whether ``a.reshape(shape)`` is a view (no copy)."""
    try:
        np.reshape(a, shape, copy=False)
    except ValueError:
        return False
    return True


class Scratch:
    """One buffer reused by every piece of a chunked loop (allocated once, at the largest size)."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.buffer = None

    def fits(self, shape):
        return self.buffer is not None and self.buffer.size >= math.prod(shape)

    def take(self, shape, fill=None):
        """A C-contiguous array of ``shape`` in the buffer: its old contents, or, when the buffer
        has to grow and ``fill`` is given, ``fill`` everywhere (a fresh zeroed allocation costs
        no more than an empty one)."""
        size = math.prod(shape)
        if self.fits(shape):
            return self.buffer[:size].reshape(shape)
        self.buffer = None  # the old buffer is freed before the larger one is allocated
        if fill is None:
            fresh = np.empty(shape, self.dtype)
        else:
            fresh = np.zeros(shape, self.dtype) if fill == 0 else np.full(shape, fill, self.dtype)
        self.buffer = fresh.reshape(-1)
        return fresh

    def gather(self, piece, shape):
        """``piece.reshape(shape)``: a view when the layout allows it, else a copy into the buffer."""
        try:
            return np.reshape(piece, shape, copy=False)
        except ValueError:
            pass
        flat = self.take((piece.size,))
        _parallel.copy(flat.reshape(piece.shape), piece, threads_near_gemm(flat.nbytes))
        return flat.reshape(shape)

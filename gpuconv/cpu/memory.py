"""The engine's scratch-memory budget, the chunking that keeps im2col buffers under it, and the
reusable scratch buffer the chunks are gathered into.

Tests (and users on small machines) may monkeypatch ``MEMORY_BUDGET_BYTES``; it is read at every
call. The budget bounds the *scratch* buffers (im2col columns, GEMM results before the scatter of
a transposed conv); the output itself is always allocated whole. Independently of the budget,
pieces are kept near ``CHUNK_TARGET_BYTES``: a column buffer that stays in the last-level cache
and is reused for every piece is faster than one huge buffer that must be paged in.
"""
import numpy as np

from . import _parallel

MEMORY_BUDGET_BYTES = 512 * 2**20
CHUNK_TARGET_BYTES = 8 * 2**20
# Memory-bound work below this size that follows a GEMM stays on the calling thread
# (``threads_near_gemm``).
GATHER_PARALLEL_BYTES = 4 * 2**20


def threads_near_gemm(nbytes, memory_bound=True):
    """Threads for a copy that follows (or feeds) a GEMM: the im2col gather, the padding copy,
    the transposed-conv scatter. After a GEMM, OpenBLAS's workers keep spinning on the other
    cores for a while (its thread timeout, ~0.1 s), and a piece handed to one of our threads
    waits for that core. So memory-bound work below ``GATHER_PARALLEL_BYTES`` runs on the calling
    thread. Measured side by side: bench row D9's 1.2 MB gathers 1.77 -> 1.48 ms; padding of D2,
    D3, D9 5-8% faster; T1's and T3's channels_last scatters 1.66 -> 1.37 and 1.58 -> 1.39 ms;
    gathers of 7 MB and more (D1, D2, V1) within noise either way. Loop-bound work (short
    strided runs: a group-major transpose, a channels_first scatter) keeps the threads."""
    if memory_bound and nbytes < GATHER_PARALLEL_BYTES:
        return 1
    return _parallel.threads_for(nbytes)


def chunk_limit():
    return min(MEMORY_BUDGET_BYTES, CHUNK_TARGET_BYTES)


def chunks(batch, rows, bytes_per_row):
    """Yield ``(batch_slice, row_slice)`` pieces whose scratch stays under ``chunk_limit()``.

    A *row* is one index of the first spatial output axis (or input axis, for the transposed conv)
    and ``bytes_per_row`` what one row of one batch item needs. Whole batch items are grouped while
    they fit; an item that alone exceeds the limit is cut into runs of rows (at least one row per
    piece, so a single row larger than the limit is still computed). Every piece either spans all
    rows or exactly one batch item, which keeps each piece of a C-contiguous output a strided view.
    """
    limit = chunk_limit()
    per_item = rows * bytes_per_row
    if per_item <= limit:
        step = max(1, limit // max(per_item, 1))
        for b in range(0, batch, step):
            yield slice(b, min(b + step, batch)), slice(0, rows)
        return
    step = max(1, limit // max(bytes_per_row, 1))
    for b in range(batch):
        for r in range(0, rows, step):
            yield slice(b, b + 1), slice(r, min(r + step, rows))


class Scratch:
    """One buffer reused by every piece of a chunked loop (allocated once, at the largest size)."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.buffer = None

    def gather(self, piece, shape):
        """``piece.reshape(shape)``: a view when the layout allows it, else a copy into the buffer."""
        try:
            return np.reshape(piece, shape, copy=False)
        except ValueError:
            pass
        size = piece.size
        if self.buffer is None or self.buffer.size < size:
            self.buffer = np.empty(size, self.dtype)
        flat = self.buffer[:size]
        _parallel.copy(flat.reshape(piece.shape), piece, threads_near_gemm(flat.nbytes))
        return flat.reshape(shape)

"""Run independent NumPy pieces on a few threads.

NumPy's element-wise loops, copies and einsum release the GIL but are single-threaded; BLAS is
already threaded. The memory-bound paths (depthwise, im2col gathers) split their work into
disjoint pieces and run them here, so the engine uses the cores BLAS would. Pieces never write
to overlapping memory, so results do not depend on the number of threads or their timing.

``NUM_THREADS`` defaults to the CPUs this process may run on (``GPUCONV_NUM_THREADS`` overrides);
tests may monkeypatch it.
"""
import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def _default_threads():
    env = os.environ.get("GPUCONV_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


NUM_THREADS = _default_threads()

# Below this much memory traffic a piece is faster done inline than handed to a thread.
MIN_PARALLEL_BYTES = 1 << 20

_pool = None
_pool_pid = None
_pool_lock = threading.Lock()


def _executor():
    """The shared pool, created on first use; a forked child (whose copy of the pool has no
    threads behind it) and a raised NUM_THREADS get a fresh one."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid() or _pool._max_workers < NUM_THREADS:
            if _pool is not None and _pool_pid == os.getpid():
                _pool.shutdown(wait=False)  # idle workers exit; running pieces finish first
            _pool = ThreadPoolExecutor(max_workers=NUM_THREADS, thread_name_prefix="gpuconv-cpu")
            _pool_pid = os.getpid()
        return _pool


def run(fn, pieces):
    """Call ``fn(piece)`` for every piece; in parallel when there are several pieces and threads.
    Exceptions propagate (the earliest failing piece's, after every piece has finished)."""
    pieces = list(pieces)
    if NUM_THREADS <= 1 or len(pieces) <= 1 or threading.current_thread().name.startswith("gpuconv-cpu"):
        for p in pieces:
            fn(p)
        return
    # Each piece runs in a copy of the caller's context, so np.errstate (a context variable)
    # applies in the workers too. The caller does the first piece itself instead of waiting.
    futures = [_executor().submit(contextvars.copy_context().run, fn, p) for p in pieces[1:]]
    first_error = None
    try:
        fn(pieces[0])
    except BaseException as e:  # still wait for the workers: they write into our buffers
        first_error = e
    errors = [first_error] + [f.exception() for f in futures]
    for e in errors:
        if e is not None:
            raise e


def threads_for(nbytes):
    """How many pieces a job touching ``nbytes`` is worth cutting into."""
    return NUM_THREADS if nbytes >= MIN_PARALLEL_BYTES else 1


def split(n, parts):
    """``range(n)`` cut into at most ``parts`` contiguous slices of nearly equal length."""
    parts = max(1, min(parts, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def slabs(shape, nbytes):
    """Index tuples cutting an array of ``shape`` into disjoint slabs along its outermost axis
    long enough to give every thread one (a single full slab when the work is small)."""
    threads = threads_for(nbytes)
    axis = next((ax for ax, n in enumerate(shape) if n >= threads), None)
    if threads == 1 or axis is None:
        return [(Ellipsis,)]
    lead = (slice(None),) * axis
    return [lead + (sl,) for sl in split(shape[axis], threads)]


def copy(dst, src):
    """``dst[...] = src`` (casting, any strides) with the slabs copied on the threads."""
    run(lambda idx: np.copyto(dst[idx], src[idx], casting="unsafe"), slabs(dst.shape, dst.nbytes + src.nbytes))

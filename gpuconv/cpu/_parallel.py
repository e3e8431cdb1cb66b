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


def _default_threads():
    env = os.environ.get("GPUCONV_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


NUM_THREADS = _default_threads()

_pool = None
_pool_lock = threading.Lock()


def _executor():
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < NUM_THREADS:
            _pool = ThreadPoolExecutor(max_workers=NUM_THREADS, thread_name_prefix="gpuconv-cpu")
        return _pool


def run(fn, pieces):
    """Call ``fn(piece)`` for every piece; in parallel when there are several pieces and threads.
    Exceptions propagate (the first one raised, after every piece has finished)."""
    pieces = list(pieces)
    if NUM_THREADS <= 1 or len(pieces) <= 1 or threading.current_thread().name.startswith("gpuconv-cpu"):
        for p in pieces:
            fn(p)
        return
    # Each piece runs in a copy of the caller's context, so np.errstate (a context variable)
    # applies in the workers too.
    futures = [_executor().submit(contextvars.copy_context().run, fn, p) for p in pieces]
    errors = [f.exception() for f in futures]
    for e in errors:
        if e is not None:
            raise e


def split(n, parts):
    """``range(n)`` cut into at most ``parts`` contiguous slices of nearly equal length."""
    parts = max(1, min(parts, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

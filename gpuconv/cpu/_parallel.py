"""Run independent NumPy pieces on a few threads.

NumPy's element-wise loops, copies and einsum release the GIL but are single-threaded; BLAS is
already threaded. The memory-bound paths (depthwise, im2col gathers) split their work into
disjoint pieces and run them here, so the engine uses the cores BLAS would. Pieces never write
to overlapping memory, so results do not depend on the number of threads or their timing.

Why our own pool, with each worker pinned to one CPU of the process's affinity mask: a worker
that sleeps between calls is woken by the caller, and the scheduler tends to wake it on the
caller's CPU. On the 2-vCPU bench machine two unpinned threads doing in-cache multiplies ran at
0.8x of one thread (both on one CPU); pinned, 1.5x; the depthwise rows went from 1.2 ms to
0.75 ms. (OpenMP and OpenBLAS avoid the same trap by spinning; we pin and sleep instead, so idle
workers never take a core from BLAS.) The caller only waits, so it never shares a CPU with a
worker. ``GPUCONV_PIN_THREADS=0`` turns pinning off (the work split is unchanged).

``NUM_THREADS`` (None: resolved at the first use, ``num_threads()``) defaults to the CPUs this process
may run on; ``GPUCONV_NUM_THREADS`` overrides it with a positive integer, capped at those CPUs
(more threads than CPUs only wait for each other). Tests may monkeypatch ``NUM_THREADS``.

Fork: a child forked while the pool exists gets a fresh pool (``os.register_at_fork``), and a
fresh lock, since the parent's might have been held by another thread at the fork. This makes
gpuconv's own threads fork-safe; OpenBLAS's are not (a child forked during a GEMM of the parent
can hang in its next GEMM, as with plain NumPy).
"""
import contextvars
import itertools
import logging
import math
import os
import queue
import threading

import numpy as np


def _allowed_cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def threads_from_environment(raw, cpus):
    """Threads for ``GPUCONV_NUM_THREADS=raw`` (None or empty: one per allowed CPU), at most
    ``cpus``; ValueError naming the variable and the value unless it is a positive integer."""
    if raw is None or raw.strip() == "":
        return cpus
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise ValueError(
            "The environment variable GPUCONV_NUM_THREADS must be a positive integer (worker threads of the "
            f"NumPy engine). Received: GPUCONV_NUM_THREADS={raw!r}"
        )
    requested = int(text)
    if requested > cpus:
        _log_cap_once(requested, cpus)
    return min(requested, cpus)


_capped = set()


def _log_cap_once(requested, cpus):
    if (requested, cpus) not in _capped:
        _capped.add((requested, cpus))
        logging.getLogger("gpuconv").warning(
            "gpuconv: GPUCONV_NUM_THREADS=%d is more than the %d CPUs this process may use; using %d threads",
            requested, cpus, cpus)


NUM_THREADS = None
_environment_threads = None  # from GPUCONV_NUM_THREADS and the affinity mask, once read


def num_threads():
    """``NUM_THREADS`` when set, else from ``GPUCONV_NUM_THREADS`` and the affinity mask, read at
    the first use (an invalid value raises at every use until it is fixed)."""
    global _environment_threads
    if NUM_THREADS is not None:
        return NUM_THREADS
    if _environment_threads is None:
        _environment_threads = threads_from_environment(os.environ.get("GPUCONV_NUM_THREADS"),
                                                        max(1, len(_allowed_cpus())))
    return _environment_threads

PIN_THREADS = os.environ.get("GPUCONV_PIN_THREADS", "1") != "0"

# Below this much memory traffic a piece is faster done inline than handed to a thread.
MIN_PARALLEL_BYTES = 1 << 20

_WORKER_PREFIX = "gpuconv-cpu"


class _Workers:
    """``count`` daemon threads, worker ``i`` pinned (where the OS allows) to the ``i``-th CPU of
    the process's affinity mask, each taking jobs from its own queue."""

    def __init__(self, count, pin):
        self.count, self.pinned = count, pin
        self.pid = os.getpid()
        cpus = _allowed_cpus()
        self._queues = [queue.SimpleQueue() for _ in range(count)]
        for i, q in enumerate(self._queues):
            cpu = cpus[i % len(cpus)] if pin and len(cpus) > 1 else None
            threading.Thread(target=self._serve, args=(q, cpu), name=f"{_WORKER_PREFIX}-{i}", daemon=True).start()

    @staticmethod
    def _serve(jobs, cpu):
        if cpu is not None:
            try:
                os.sched_setaffinity(0, {cpu})  # 0 = this thread on Linux
            except (AttributeError, OSError):
                pass
        while True:
            jobs.get()()

    def submit(self, worker, job):
        self._queues[worker].put(job)


_pool = None
_pool_lock = threading.Lock()


def _workers():
    """The shared workers, created on first use; a forked child (whose copy of the pool has no
    threads behind it), a raised NUM_THREADS or a changed PIN_THREADS get fresh ones (the old
    threads stay idle)."""
    global _pool
    threads = num_threads()
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid() or _pool.count < threads or _pool.pinned != PIN_THREADS:
            _pool = _Workers(threads, PIN_THREADS)
        return _pool


def _forget_pool_in_child():
    """After a fork: the parent's workers do not exist here, and its lock may have been held."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def run(fn, pieces):
    """Call ``fn(piece)`` for every piece; in parallel when there are several pieces and threads.
    Worker ``w`` runs pieces ``w, w + T, ..`` in order. Every piece runs even when one fails; the
    earliest failing piece's exception is then raised."""
    pieces = list(pieces)
    threads = min(num_threads(), len(pieces))
    if threads <= 1 or threading.current_thread().name.startswith(_WORKER_PREFIX):
        errors = [_call(fn, p) for p in pieces]
    else:
        errors = [None] * len(pieces)
        remaining = [threads]
        all_done = threading.Event()
        lock = threading.Lock()
        pool = _workers()

        def job(worker, context):
            for i in range(worker, len(pieces), threads):
                errors[i] = context.run(_call, fn, pieces[i])
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    all_done.set()

        # Each worker runs in a copy of the caller's context, so np.errstate (a context
        # variable) applies there too.
        for w in range(threads):
            pool.submit(w, lambda w=w, context=contextvars.copy_context(): job(w, context))
        all_done.wait()
    for e in errors:
        if e is not None:
            raise e


def _call(fn, piece):
    try:
        fn(piece)
    except BaseException as e:  # noqa: BLE001 - re-raised by ``run`` once every piece is done
        return e
    return None


def threads_for(nbytes):
    """How many pieces a job touching ``nbytes`` is worth cutting into."""
    return num_threads() if nbytes >= MIN_PARALLEL_BYTES else 1


def split(n, parts):
    """``range(n)`` cut into at most ``parts`` contiguous slices of nearly equal length."""
    parts = max(1, min(parts, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def slabs(shape, nbytes, threads=None):
    """Index tuples cutting an array of ``shape`` into disjoint slabs along its outermost axis
    long enough to give every thread one (a single full slab when the work is small, or when
    ``threads`` says 1)."""
    threads = threads_for(nbytes) if threads is None else threads
    axis = next((ax for ax, n in enumerate(shape) if n >= threads), None)
    if threads == 1 or axis is None:
        return [(Ellipsis,)]
    lead = (slice(None),) * axis
    return [lead + (sl,) for sl in split(shape[axis], threads)]


def copy(dst, src, threads=None):
    """``dst[...] = src`` (casting, any strides) with the slabs copied on the threads (at most
    ``threads`` of them when given)."""
    slabs_ = slabs(dst.shape, dst.nbytes + src.nbytes, threads)
    run(lambda idx: np.copyto(dst[idx], src[idx], casting="unsafe"), slabs_)


def bounded_slabs(shape, itemsize, max_bytes, parts):
    """Index tuples cutting a C-contiguous array of ``shape`` into disjoint slabs of at most
    ``max_bytes`` (but at least one element) and, work allowing, at least ``parts`` of them: a
    run of indices of one axis, the axes before it fixed to one index each, every axis after it
    whole. Each slab is then a contiguous block."""
    total = math.prod(shape) * itemsize
    if total == 0:
        return [(Ellipsis,)]
    target = max(itemsize, min(max_bytes, -(-total // max(parts, 1))))
    axis, row = 0, total // shape[0]  # ``row``: bytes of one index of ``axis``
    while row > target and axis < len(shape) - 1:
        axis += 1
        row //= shape[axis]
    step = max(1, target // row)
    slabs_ = []
    for lead in itertools.product(*(range(n) for n in shape[:axis])):
        for start in range(0, shape[axis], step):
            slabs_.append(lead + (slice(start, min(start + step, shape[axis])),))
    return slabs_

"""Timers: host clock for the CPU, CUDA events for the GPU (with an L2 flush and optional CUDA-graph
replay). Every timer warms up first and reports median, min and max over the repeats.

GPU timing, per repeat: write over a buffer larger than L2 (so no repeat starts with the previous
repeat's operands in cache), record a start event, launch, record an end event; all on the legacy
default stream, which is where CuPy's and PyTorch's default work goes. The flush kernel is queued
before the start event, so the host's launch overhead overlaps the flush and the events time the
device work. A CUDA graph (``capture_cupy_graph`` / ``capture_torch_graph``) removes the launch
gaps between the several kernels one op may need.
"""
import dataclasses
import statistics
import time
from typing import List


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call."""

    median: float
    min: float
    max: float
    repeat: int
    method: str
    samples: List[float] = dataclasses.field(default_factory=list, repr=False)

    @classmethod
    def from_samples(cls, samples, method):
        samples = [float(s) for s in samples]
        return cls(statistics.median(samples), min(samples), max(samples), len(samples), method, samples)

    def as_dict(self):
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max, "repeat": self.repeat,
                "method": self.method}


def _check_counts(warmup, repeat):
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0. Received: warmup={warmup}")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1. Received: repeat={repeat}")


def time_cpu(fn, *, warmup, repeat):
    """Median of ``repeat`` calls of ``fn`` by ``time.perf_counter``, after ``warmup`` calls."""
    _check_counts(warmup, repeat)
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return Timing.from_samples(samples, "perf_counter")


# OpenBLAS workers busy-wait about 0.1 s after a BLAS call (their thread timeout), PyTorch's
# OpenMP pool spins similarly; a block started inside that window shares its cores with them.
IDLE_POOLS_SECONDS = 0.12


def time_cpu_blocks(fns, *, warmup, repeat, rounds=3):
    """Like :func:`time_cpu` for several callables, timed in alternating blocks: each block runs
    one callable alone (its own warm-up, then a share of the repeats), and the blocks alternate
    over ``rounds`` so a slow change of machine load still hits every callable alike.

    Why blocks and not call-by-call alternation: on a small CPU the libraries' worker threads
    (PyTorch's OpenMP pool, OpenBLAS) keep spinning for a while after each call and steal the
    cores from whatever runs next; alternating every call measured that contention (PyTorch's
    3x3 conv 5x slower than alone), not the libraries. Returns one Timing per callable.
    """
    _check_counts(warmup, repeat)
    rounds = max(1, min(rounds, repeat))
    samples = [[] for _ in fns]
    for r in range(rounds):
        share = repeat // rounds + (r < repeat % rounds)
        for fn, acc in zip(fns, samples):
            time.sleep(IDLE_POOLS_SECONDS)  # let the previous block's spinning worker threads sleep
            for _ in range(max(warmup, 1)):
                fn()
            for _ in range(share):
                t0 = time.perf_counter()
                fn()
                acc.append(time.perf_counter() - t0)
    return [Timing.from_samples(acc, f"perf_counter, {rounds} alternating blocks") for acc in samples]


class L2Flusher:
    """Overwrites a device buffer larger than the L2 cache (twice its size, at least 64 MiB)."""

    def __init__(self, min_bytes=64 << 20):
        import cupy as cp

        l2 = int(cp.cuda.Device().attributes.get("L2CacheSize", 0))
        self.nbytes = max(2 * l2, min_bytes)
        self.l2_bytes = l2
        self._buf = cp.empty(self.nbytes, dtype=cp.uint8)
        self._value = 0

    def flush(self):
        # A changing value, so no layer of the stack can skip a write of what is already there.
        self._value = (self._value + 1) % 251
        self._buf.fill(self._value)


def time_gpu(launch, *, warmup, repeat, flusher=None, method="cuda-events"):
    """Median of ``repeat`` launches timed by CUDA events on the legacy default stream.

    ``launch`` queues the work (a gpuconv op, a torch call or a graph replay) on the default
    stream and returns without synchronizing. Each repeat is preceded by ``flusher.flush()``.
    """
    import cupy as cp

    _check_counts(warmup, repeat)
    null = cp.cuda.Stream.null
    with null:
        for _ in range(warmup):
            launch()
        null.synchronize()
        starts = [cp.cuda.Event() for _ in range(repeat)]
        ends = [cp.cuda.Event() for _ in range(repeat)]
        for start, end in zip(starts, ends):
            if flusher is not None:
                flusher.flush()
            start.record(null)
            launch()
            end.record(null)
        ends[-1].synchronize()
    # cupy reports milliseconds
    samples = [cp.cuda.get_elapsed_time(s, e) * 1e-3 for s, e in zip(starts, ends)]
    return Timing.from_samples(samples, method)


def capture_cupy_graph(fn):
    """Record ``fn``'s launches (CuPy current stream) into a CUDA graph; return a replay function.

    ``fn`` runs once uncaptured on the capture stream first, so kernels are compiled and loaded
    and the memory pool holds blocks of the right sizes (an allocation from the driver is not
    allowed while capturing). The output captured is kept alive with the graph: every replay
    rewrites it.
    """
    import cupy as cp

    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        fn()
        stream.synchronize()
        stream.begin_capture()
        try:
            out = fn()
        except BaseException:
            try:
                stream.end_capture()
            except Exception:  # the capture is invalid anyway; the original error is the news
                pass
            raise
        graph = stream.end_capture()
    stream.synchronize()

    def replay():
        graph.launch(stream=cp.cuda.Stream.null)
        return out

    return replay


def capture_torch_graph(fn):
    """The PyTorch counterpart of :func:`capture_cupy_graph` (``torch.cuda.CUDAGraph``)."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # cudnn.benchmark picks its algorithm on these calls, not in the capture
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    torch.cuda.synchronize()

    def replay():
        graph.replay()
        return out

    return replay


def synchronize_gpu():
    import cupy as cp

    cp.cuda.Stream.null.synchronize()

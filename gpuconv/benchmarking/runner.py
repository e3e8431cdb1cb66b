"""Running one row: place operands, compute, check against the oracle, then (only if right) time
gpuconv and the comparison side by side, and derive the figures.
"""
import dataclasses
import math
import zlib
from typing import Optional

import numpy as np

from .oracle_gate import COMPARISON_SLACK, check_indices, compute_oracle, threshold
from .cost import bytes_moved, flops, roofline_seconds
from .inputs import make_inputs
from .subjects import place
from .timing import Timing, synchronize_gpu, time_cpu, time_cpu_blocks, time_gpu

PASS, FAIL, ERROR = "PASS", "FAIL", "ERROR"
UNSUPPORTED, OFF = "UNSUPPORTED", "OFF"


@dataclasses.dataclass(frozen=True)
class Settings:
    dtype: str = "float32"
    data_format: str = "channels_last"
    warmup: int = 1
    repeat: int = 5
    cuda_graph: bool = False
    check_batch: Optional[int] = None
    seed: int = 0


@dataclasses.dataclass
class Comparison:
    library: str
    device: str
    status: str
    rel_err: Optional[float] = None
    time: Optional[Timing] = None
    ratio: Optional[float] = None  # gpuconv time / comparison time (< 1: gpuconv is faster)
    note: str = ""

    def as_dict(self):
        d = dataclasses.asdict(self)
        d["time"] = self.time.as_dict() if self.time else None
        return d


@dataclasses.dataclass
class RowResult:
    row: object
    dtype: str
    data_format: str
    status: str
    threshold: float
    rel_err: Optional[float] = None
    checked_items: int = 0
    error: str = ""
    time: Optional[Timing] = None
    flop: int = 0
    tensor_flop: int = 0
    bytes: int = 0
    roofline_s: float = 0.0
    bound: str = ""
    compare: Optional[Comparison] = None
    notes: list = dataclasses.field(default_factory=list)

    @property
    def timed(self):
        return self.time is not None

    @property
    def tflops(self):
        return self.flop / self.time.median / 1e12 if self.timed else None

    @property
    def gbs(self):
        return self.bytes / self.time.median / 1e9 if self.timed else None

    @property
    def roofline_pct(self):
        return 100.0 * self.roofline_s / self.time.median if self.timed else None

    @property
    def ratio(self):
        return self.compare.ratio if self.compare is not None else None


def _error_text(e):
    text = f"{type(e).__name__}: {e}"
    return " ".join(text.split())  # one line, whatever the exception carried


class Runner:
    """Runs rows with one subject (gpuconv) and an optional comparison (PyTorch)."""

    def __init__(self, settings, subject, ceilings, comparison=None, comparison_error="", flusher=None):
        self.settings = settings
        self.subject = subject
        self.ceilings = ceilings
        self.comparison = comparison
        self.comparison_error = comparison_error
        self.flusher = flusher
        self.device = subject.device

    # ---- timing ---------------------------------------------------------------------------
    def _time(self, launch, method):
        s = self.settings
        if self.device == "cuda":
            return time_gpu(launch, warmup=s.warmup, repeat=s.repeat, flusher=self.flusher, method=method)
        return time_cpu(launch, warmup=s.warmup, repeat=s.repeat)

    def _sync(self):
        if self.device == "cuda":
            synchronize_gpu()

    def _launcher(self, who, fn, result):
        """``fn`` itself, or its CUDA-graph replay with --cuda-graph (falling back with a note)."""
        if not (self.settings.cuda_graph and self.device == "cuda"):
            return fn, "cuda-events" if self.device == "cuda" else "perf_counter"
        try:
            return who.capture_graph(fn), "cuda-graph"
        except Exception as e:
            result.notes.append(f"{who.label}: CUDA graph capture failed ({_error_text(e)}); timed without graph")
            return fn, "cuda-events"

    # ---- one row ---------------------------------------------------------------------------
    def run(self, row):
        s = self.settings
        result = RowResult(row, s.dtype, s.data_format, ERROR, threshold(s.dtype))
        f = flops(row)
        result.flop, result.tensor_flop = f.total, f.tensor
        result.bytes = bytes_moved(row, s.dtype)
        result.roofline_s, result.bound = roofline_seconds(f, result.bytes, self.ceilings.for_dtype(s.dtype))

        rng = np.random.default_rng([s.seed, zlib.crc32(row.id.encode())])
        host = make_inputs(row, s.dtype, s.data_format, rng)
        arrays = place(host, self.device)
        try:
            fn = self.subject.prepare(row, arrays, s.data_format)
            out = fn()
            self._sync()
        except Exception as e:
            result.error = _error_text(e)
            return result

        indices = check_indices(row, s.check_batch)
        oracle = compute_oracle(row, host, s.data_format, indices)
        result.checked_items = len(indices)
        result.rel_err = oracle.error_of(out)
        del out
        if not result.rel_err <= result.threshold:
            result.status = FAIL
            result.error = f"relative L2 error {result.rel_err:.3e} > {result.threshold:.0e}: not timed"
            return result

        try:
            launch, method = self._launcher(self.subject, fn, result)
            if method == "cuda-graph":  # the replayed graph must compute the same thing
                err = oracle.error_of(launch())
                if not err <= result.threshold:
                    result.status, result.rel_err = FAIL, err
                    result.error = f"CUDA graph replay: relative L2 error {err:.3e}: not timed"
                    return result
        except Exception as e:
            result.error = _error_text(e)
            return result

        comp, comp_launch, comp_method = self._prepare_comparison(row, arrays, oracle, result)
        try:
            if comp_launch is not None and self.device == "cpu":
                result.time, comp.time = time_cpu_blocks([launch, comp_launch], warmup=s.warmup,
                                                         repeat=s.repeat)
            else:
                result.time = self._time(launch, method)
        except Exception as e:
            result.error = _error_text(e)
            return result
        result.status = PASS
        if comp_launch is not None and comp.time is None:
            try:
                comp.time = self._time(comp_launch, comp_method)
            except Exception as e:
                comp.status, comp.note = ERROR, _error_text(e)
        if comp.time is not None:
            comp.status = PASS
            comp.ratio = result.time.median / comp.time.median
        result.compare = comp
        return result

    def _prepare_comparison(self, row, arrays, oracle, result):
        """Map, run once and check the comparison call. Returns (Comparison, launch or None, method)."""
        from .torch_compare import Unsupported

        if self.comparison is None:
            return Comparison("", "", OFF, note=self.comparison_error), None, ""
        who = self.comparison
        comp = Comparison(who.label, who.device, ERROR)
        try:
            fn = who.prepare(row, arrays, self.settings.data_format)
            out = fn()
            self._sync()
            comp.rel_err = oracle.error_of(who.to_host(out))
            del out
            if not comp.rel_err <= result.threshold * COMPARISON_SLACK:
                comp.status = FAIL
                comp.note = f"its relative L2 error {comp.rel_err:.3e} says the call is mis-mapped: not timed"
                return comp, None, ""
            launch, method = self._launcher(who, fn, result)
        except Unsupported as e:
            comp.status, comp.note = UNSUPPORTED, str(e)
            return comp, None, ""
        except Exception as e:
            comp.note = _error_text(e)
            return comp, None, ""
        return comp, launch, method


def geomean(values):
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarize(results):
    counts = {k: sum(r.status == k for r in results) for k in (PASS, FAIL, ERROR)}
    ratios = [r.ratio for r in results if r.ratio is not None]
    pct = [r.roofline_pct for r in results if r.roofline_pct is not None]
    libraries = sorted({r.compare.library for r in results if r.compare is not None and r.compare.library})
    return {
        "rows": len(results),
        "pass": counts[PASS],
        "fail": counts[FAIL],
        "error": counts[ERROR],
        "compared_rows": len(ratios),
        "geomean_ratio": geomean(ratios),
        "geomean_roofline_pct": geomean(pct),
        "compared_with": ", ".join(libraries),
    }

"""Running one row: place operands, compute, check against the oracle, then (only if right) time
gpuconv and the comparison side by side, and derive the figures.

``Settings.pass_name`` picks what is timed: the forward op ('forward'), its backward ('backward':
the gradients of one recorded forward, see ``gradient_calls``) or the two per call ('both'). A
backward row is gated by ``gradient_gate`` (every gradient against the float64 oracle); a row
whose op has no backward in the library is SKIP, not an error.

A gpuconv/comparison time ratio outside ``RATIO_BOUNDS`` is not believed at once: both sides are
timed again after a longer warm-up (``check_ratio``), and a ratio still outside is kept but
flagged (``RowResult.flags`` holds ``RATIO_FLAG``), so the table, the exports and the plot can
mark it. On a small shared CPU such ratios often come from the scheduler, not the libraries: a
thread pool whose worker waits for a CPU loses whole scheduler ticks per call (4 ms steps on the
2-vCPU bench machine).
"""
import dataclasses
import math
import zlib
from typing import Optional

import numpy as np

from .oracle_gate import COMPARISON_SLACK, check_indices, compute_oracle, threshold
from .cost import pass_bytes, pass_flops, roofline_seconds
from .gradient_calls import FORWARD, NoBackward
from .gradient_gate import GradientOracle, compute_gradient_oracle, sub_batch
from .inputs import make_inputs, make_output_gradient
from .subjects import place
from .timing import Timing, synchronize_gpu, time_cpu, time_cpu_blocks, time_gpu

PASS, FAIL, ERROR = "PASS", "FAIL", "ERROR"
UNSUPPORTED, OFF, SKIP = "UNSUPPORTED", "OFF", "SKIP"

# A gpuconv/comparison ratio outside these is suspect: measured again, and flagged when it stays
# outside. A flag says "look at this row" (a real gap, or the machine), not "wrong": the row's
# note gives both measurements.
RATIO_BOUNDS = (0.05, 20.0)
RATIO_FLAG = "ratio_outside_bounds"


@dataclasses.dataclass(frozen=True)
class Settings:
    dtype: str = "float32"
    data_format: str = "channels_last"
    warmup: int = 1
    repeat: int = 5
    cuda_graph: bool = False
    check_batch: Optional[int] = None
    seed: int = 0
    pass_name: str = FORWARD


@dataclasses.dataclass
class Comparison:
    library: str
    device: str
    status: str
    rel_err: Optional[float] = None
    time: Optional[Timing] = None
    ratio: Optional[float] = None  # gpuconv time / comparison time (< 1: gpuconv is faster)
    note: str = ""
    rel_errs: Optional[dict] = None  # backward rows: the error of each gradient

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
    pass_name: str = FORWARD
    rel_errs: Optional[dict] = None  # backward rows: the error of each gradient (dx, dkernel, ...)
    flags: list = dataclasses.field(default_factory=list)  # e.g. RATIO_FLAG: a figure not to trust

    @property
    def flagged(self):
        return bool(self.flags)

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
    def _time(self, launch, method, warmup):
        s = self.settings
        if self.device == "cuda":
            return time_gpu(launch, warmup=warmup, repeat=s.repeat, flusher=self.flusher, method=method)
        return time_cpu(launch, warmup=warmup, repeat=s.repeat)

    def _measure(self, launch, method, comp_launch, comp_method, warmup):
        """``(gpuconv Timing, comparison Timing or None, comparison error text)``. On the CPU the
        two are timed in alternating blocks (``time_cpu_blocks``); a comparison that fails while
        timed is the comparison's error, not the row's."""
        s = self.settings
        if comp_launch is not None and self.device == "cpu":
            mine, theirs = time_cpu_blocks([launch, comp_launch], warmup=warmup, repeat=s.repeat)
            return mine, theirs, ""
        mine = self._time(launch, method, warmup)
        if comp_launch is None:
            return mine, None, ""
        try:
            return mine, self._time(comp_launch, comp_method, warmup), ""
        except Exception as e:
            return mine, None, _error_text(e)

    def _sync(self):
        if self.device == "cuda":
            synchronize_gpu()

    def _launcher(self, who, fn, result):
        """``fn`` itself, or its CUDA-graph replay with --cuda-graph (falling back with a note)."""
        if not (self.settings.cuda_graph and self.device == "cuda"):
            return fn, "cuda-events" if self.device == "cuda" else "perf_counter"
        if self.settings.pass_name != FORWARD:  # the tape's host-side bookkeeping cannot be captured
            if who is self.subject:
                result.notes.append("--cuda-graph applies to forward rows only; timed without graph")
            return fn, "cuda-events"
        try:
            return who.capture_graph(fn), "cuda-graph"
        except Exception as e:
            result.notes.append(f"{who.label}: CUDA graph capture failed ({_error_text(e)}); timed without graph")
            return fn, "cuda-events"

    def _prepare(self, who, row, arrays):
        """``who``'s timed call of the row for the run's pass."""
        s = self.settings
        if s.pass_name == FORWARD:
            return who.prepare(row, arrays, s.data_format)
        return who.prepare(row, arrays, s.data_format, s.pass_name)

    @staticmethod
    def _errors(oracle, outputs, sub_batch_outputs=None):
        """``(largest relative L2 error, {result: error} or None)`` of a call's outputs."""
        if isinstance(oracle, GradientOracle):
            errors = oracle.errors_of(outputs, sub_batch_outputs)
            return max(errors.values()), errors
        return oracle.error_of(outputs), None

    def _oracle(self, row, host, indices, result):
        """The float64 reference of the run's pass; for a backward row checked on a subset of the
        batch, also the subject's own results of that sub-batch (its weight gradients' check)."""
        s = self.settings
        if s.pass_name == FORWARD:
            return compute_oracle(row, host, s.data_format, indices), None
        oracle = compute_gradient_oracle(row, host, s.data_format, indices, s.pass_name)
        if not oracle.needs_sub_batch:
            return oracle, None
        small = place(sub_batch(host, indices), self.device)
        sub_out = self._prepare(self.subject, row.with_batch(len(indices)), small)()
        result.notes.append(f"weight gradients checked on a sub-batch of {len(indices)} items "
                            f"(dx on the full-batch call)")
        return oracle, sub_out

    # ---- one row ---------------------------------------------------------------------------
    def run(self, row):
        s = self.settings
        result = RowResult(row, s.dtype, s.data_format, ERROR, threshold(s.dtype), pass_name=s.pass_name)
        f = pass_flops(row, s.pass_name)
        result.flop, result.tensor_flop = f.total, f.tensor
        result.bytes = pass_bytes(row, s.dtype, s.pass_name)
        result.roofline_s, result.bound = roofline_seconds(f, result.bytes, self.ceilings.for_dtype(s.dtype))

        rng = np.random.default_rng([s.seed, zlib.crc32(row.id.encode())])
        host = make_inputs(row, s.dtype, s.data_format, rng)
        if s.pass_name != FORWARD:  # drawn after the operands, so they are the forward rows' ones
            host["dy"] = make_output_gradient(row, s.dtype, s.data_format, rng)
        arrays = place(host, self.device)
        try:
            fn = self._prepare(self.subject, row, arrays)
            out = fn()
            self._sync()
        except NoBackward as e:
            result.status, result.error = SKIP, str(e)
            return result
        except Exception as e:
            result.error = _error_text(e)
            return result

        indices = check_indices(row, s.check_batch, total_flops=f.total)
        try:
            oracle, sub_out = self._oracle(row, host, indices, result)
        except Exception as e:
            result.error = _error_text(e)
            return result
        result.checked_items = len(indices)
        result.rel_err, result.rel_errs = self._errors(oracle, out, sub_out)
        del out, sub_out
        if not result.rel_err <= result.threshold:
            result.status = FAIL
            worst = ""
            if result.rel_errs:  # name the wrong gradient(s)
                worst = " in " + ", ".join(k for k, v in result.rel_errs.items() if not v <= result.threshold)
            result.error = f"relative L2 error {result.rel_err:.3e} > {result.threshold:.0e}{worst}: not timed"
            return result

        try:
            launch, method = self._launcher(self.subject, fn, result)
            if method == "cuda-graph":  # the replayed graph must compute the same thing (forward only)
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
            result.time, comp.time, comp_error = self._measure(launch, method, comp_launch, comp_method,
                                                               s.warmup)
        except Exception as e:
            result.error = _error_text(e)
            return result
        result.status = PASS
        if comp_error:
            comp.status, comp.note = ERROR, comp_error
        if comp.time is not None:
            comp.status = PASS
            comp.ratio = result.time.median / comp.time.median
            warmup = remeasure_warmup(s.warmup)
            check_ratio(result, comp, lambda: self._measure(launch, method, comp_launch, comp_method, warmup),
                        warmup)
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
            fn = self._prepare(who, row, arrays)
            out = fn()
            self._sync()
            comp.rel_err, comp.rel_errs = self._errors(oracle, who.to_host(out))
            del out
            if isinstance(oracle, GradientOracle) and oracle.needs_sub_batch:
                result.notes.append(f"{who.label}: only its dx is checked (weight gradients need the whole "
                                    f"batch in the oracle; --check-batch {row.N} checks them)")
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


def remeasure_warmup(warmup):
    """The longer warm-up of a re-measurement: twice the run's, at least 5 calls."""
    return max(2 * warmup, 5)


def ratio_in_bounds(ratio, bounds=RATIO_BOUNDS):
    low, high = bounds
    return low <= ratio <= high


def check_ratio(result, comp, measure, warmup, bounds=RATIO_BOUNDS):
    """The safety net of a timed, compared row: a ratio outside ``bounds`` is measured again
    (``measure()`` -> ``(Timing, Timing, error text)``, both sides after ``warmup`` calls) and the
    second measurement kept; a ratio still outside adds ``RATIO_FLAG`` to ``result.flags``. What
    happened is one note of the row either way. Returns True when the row was re-measured."""
    if ratio_in_bounds(comp.ratio, bounds):
        return False
    low, high = bounds
    first = comp.ratio
    what = f"time ratio gpuconv/comparison {first:.3g}x outside {low:g}x..{high:g}x"
    try:
        mine, theirs, error = measure()
    except Exception as e:  # the first measurement stands, and stays suspect
        mine, theirs, error = None, None, _error_text(e)
    if mine is None or theirs is None:
        result.flags.append(RATIO_FLAG)
        result.notes.append(f"{what}; re-measuring failed ({error}): the ratio is flagged")
        return True
    result.time, comp.time = mine, theirs
    comp.ratio = mine.median / theirs.median
    again = f"{what}; both re-measured after {warmup} warm-up calls: {comp.ratio:.3g}x"
    if ratio_in_bounds(comp.ratio, bounds):
        result.notes.append(f"{again} (the re-measurement is reported)")
    else:
        result.flags.append(RATIO_FLAG)
        result.notes.append(f"{again}, still outside: flagged")
    return True


def geomean(values):
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarize(results):
    counts = {k: sum(r.status == k for r in results) for k in (PASS, FAIL, ERROR, SKIP)}
    ratios = [r.ratio for r in results if r.ratio is not None]
    pct = [r.roofline_pct for r in results if r.roofline_pct is not None]
    libraries = sorted({r.compare.library for r in results if r.compare is not None and r.compare.library})
    return {
        "rows": len(results),
        "pass": counts[PASS],
        "fail": counts[FAIL],
        "error": counts[ERROR],
        "skip": counts[SKIP],
        "compared_rows": len(ratios),
        "geomean_ratio": geomean(ratios),
        "geomean_roofline_pct": geomean(pct),
        "compared_with": ", ".join(libraries),
        "flagged_rows": sum(RATIO_FLAG in r.flags for r in results),
    }

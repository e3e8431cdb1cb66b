"""The correctness gate: a wrong answer gets a FAIL, no timing, and a non-zero exit status."""
import json
import math

import numpy as np
import pytest

import gpuconv.cpu as cpu_engine
from gpuconv.bench.ceilings import DeviceCeilings
from gpuconv.bench.check import check_indices, relative_l2_error
from gpuconv.bench.cli import main
from gpuconv.bench.row import Row
from gpuconv.bench.runner import ERROR, FAIL, PASS, Runner, Settings
from gpuconv.bench.subjects import GpuconvSubject

ENGINE_OPS = ("conv", "conv_transpose", "depthwise_conv", "separable_conv", "pool")
CEILINGS = DeviceCeilings("test", 1e10, 1e10, 1e10, 1e10, "test")
TINY = Row("t", "tiny conv", "conv", 2, 4, 6, (9, 9), 3, 2, "same")
SETTINGS = Settings(warmup=1, repeat=2, seed=7)


class CountingEngine:
    """The NumPy engine, with every op result passed through ``transform`` and counted."""

    NAME = "counting"

    def __init__(self, transform=lambda y: y):
        self.transform = transform
        self.calls = 0

    def __getattr__(self, name):
        attr = getattr(cpu_engine, name)
        if name not in ENGINE_OPS:
            return attr

        def op(*args, **kwargs):
            self.calls += 1
            return self.transform(attr(*args, **kwargs))

        return op


class RaisingEngine(CountingEngine):
    def __init__(self):
        super().__init__(self._boom)

    @staticmethod
    def _boom(y):
        raise RuntimeError("kernel exploded")


def _run(engine, row=TINY, comparison=None):
    return Runner(SETTINGS, GpuconvSubject("numpy", engine), CEILINGS, comparison).run(row)


def test_a_slightly_wrong_engine_fails_and_is_never_timed():
    engine = CountingEngine(lambda y: y * np.float32(1 + 1e-4))  # 10x over the float32 threshold
    result = _run(engine)
    assert result.status == FAIL
    assert result.rel_err == pytest.approx(1e-4, rel=1e-2)
    assert result.time is None and result.compare is None
    assert result.tflops is None and result.roofline_pct is None
    assert engine.calls == 1  # computed once for the check, never again for timing
    assert "not timed" in result.error


def test_the_same_engine_unchanged_passes_and_is_timed():
    engine = CountingEngine()
    result = _run(engine)
    assert result.status == PASS and result.rel_err <= 1e-5
    assert result.time is not None and result.time.repeat == SETTINGS.repeat
    assert engine.calls == 1 + SETTINGS.warmup + SETTINGS.repeat
    assert result.tflops > 0 and result.roofline_pct > 0


def test_nan_output_fails():
    result = _run(CountingEngine(lambda y: np.where(np.arange(y.size).reshape(y.shape) == 3, np.nan, y)))
    assert result.status == FAIL and math.isinf(result.rel_err) and result.time is None


def test_a_raising_engine_is_an_error_not_a_crash():
    result = _run(RaisingEngine())
    assert result.status == ERROR and "kernel exploded" in result.error and result.time is None


class MisMappedComparison:
    """A comparison whose call is wrongly mapped (transposed output): it must not get a ratio."""

    label, device = "fake torch", "cpu"

    def __init__(self):
        self.calls = 0

    def prepare(self, row, arrays, data_format):
        from gpuconv.bench.calls import call_op

        def run():
            self.calls += 1
            y = call_op(row, arrays, data_format)
            return y[:, ::-1]  # right values, wrong places

        return run

    def to_host(self, y):
        return np.ascontiguousarray(y)


def test_a_mis_mapped_comparison_is_caught_and_not_timed():
    comparison = MisMappedComparison()
    result = _run(None, comparison=comparison)
    assert result.status == PASS and result.time is not None
    assert result.compare.status == FAIL and result.compare.rel_err > 0.1
    assert result.compare.time is None and result.ratio is None
    assert comparison.calls == 1


def test_cli_exit_status_is_nonzero_and_the_table_shows_fail(tmp_path, capsys):
    out = tmp_path / "r.json"
    engine = CountingEngine(lambda y: y * np.float32(1.01))
    status = main(["--backend", "numpy", "--suite", "quick", "--rows", "W1,T3", "--repeat", "1", "--warmup", "0",
                   "--no-compare", "--json", str(out), "--seed", "1"], engine=engine)
    assert status == 1
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith(("W1 ", "T3 "))]
    assert len(rows) == 2 and all(" FAIL " in line for line in rows)
    assert "2 FAIL" in text
    doc = json.loads(out.read_text())
    assert [r["status"] for r in doc["rows"]] == ["FAIL", "FAIL"]
    assert all(r["time"] is None and r["tflops"] is None for r in doc["rows"])
    assert engine.calls == 2


def test_check_indices_keep_the_last_item_when_the_batch_is_cut():
    row = TINY.with_batch(32)
    assert check_indices(row) == list(range(32))  # tiny: the whole batch is cheap
    assert check_indices(row, check_batch=3) == [0, 1, 31]
    assert check_indices(row, check_batch=1) == [31]
    assert check_indices(row, check_batch=99) == list(range(32))
    assert check_indices(row, flop_budget=1) == [31]


def test_relative_l2_error_edge_cases():
    ref = np.array([3.0, 4.0])
    assert relative_l2_error(ref, ref) == 0.0
    assert relative_l2_error(np.array([3.0, 4.5]), ref) == pytest.approx(0.1)
    assert math.isinf(relative_l2_error(np.array([3.0, np.nan]), ref))
    assert math.isinf(relative_l2_error(np.array([3.0]), ref))

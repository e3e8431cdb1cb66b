"""The correctness gate: a wrong answer gets a FAIL, no timing, and a non-zero exit status."""
import inspect
import json
import math

import numpy as np
import pytest

import gpuconv
from gpuconv import backend as _backend
from gpuconv import engines
from gpuconv.benchmarking.calls import validate
from gpuconv.benchmarking.ceilings import DeviceCeilings
from gpuconv.benchmarking.oracle_gate import check_indices, relative_l2_error
from gpuconv.benchmarking.cli import main
from gpuconv.benchmarking.row import Row
from gpuconv.benchmarking.runner import ERROR, FAIL, PASS, Runner, Settings
from gpuconv.benchmarking.subjects import GpuconvSubject
from gpuconv.cpu import engine as cpu_engine

CEILINGS = DeviceCeilings("test", 1e10, 1e10, 1e10, 1e10, "test")
TINY = Row("t", "tiny conv", "conv", 2, 4, 6, (9, 9), 3, 2, "same")
SETTINGS = Settings(warmup=1, repeat=2, seed=7)


class CountingEngine:
    """The NumPy engine behind the ``gpuconv.engines.Engine`` contract, with every op result passed
    through ``transform`` and counted."""

    NAME = "counting"
    FUSED_ACTIVATIONS = cpu_engine.FUSED_ACTIVATIONS

    def __init__(self, transform=lambda y: y):
        self.transform = transform
        self.calls = 0

    def _counted(self, y):
        self.calls += 1
        return self.transform(y)

    def asarray(self, x):
        return cpu_engine.asarray(x)

    def conv(self, problem, x, kernel, bias):
        return self._counted(cpu_engine.conv(problem, x, kernel, bias))

    def conv_transpose(self, problem, x, kernel, bias):
        return self._counted(cpu_engine.conv_transpose(problem, x, kernel, bias))

    def depthwise_conv(self, problem, x, kernel, bias):
        return self._counted(cpu_engine.depthwise_conv(problem, x, kernel, bias))

    def separable_conv(self, problem, x, depthwise_kernel, pointwise_kernel, bias):
        return self._counted(cpu_engine.separable_conv(problem, x, depthwise_kernel, pointwise_kernel, bias))

    def pool(self, problem, x):
        return self._counted(cpu_engine.pool(problem, x))

    def locally_connected(self, problem, x, kernel, bias):
        return self._counted(cpu_engine.locally_connected(problem, x, kernel, bias))

    def upsample(self, problem, x):
        return self._counted(cpu_engine.upsample(problem, x))

    def conv_backward_weights(self, problem, x, dy):
        return self._counted(cpu_engine.conv_backward_weights(problem, x, dy))

    def pool_backward(self, problem, x, dy):
        return self._counted(cpu_engine.pool_backward(problem, x, dy))

    def upsample_backward(self, problem, dy):
        return self._counted(cpu_engine.upsample_backward(problem, dy))

    def locally_connected_backward_input(self, problem, dy, kernel):
        return self._counted(cpu_engine.locally_connected_backward_input(problem, dy, kernel))

    def locally_connected_backward_weights(self, problem, x, dy):
        return self._counted(cpu_engine.locally_connected_backward_weights(problem, x, dy))

    def optimizer_update(self, rule, scalars, params, grads, slots, decays):
        cpu_engine.optimizer_update(rule, scalars, params, grads, slots, decays)  # in place: nothing to count


def test_the_counting_engine_implements_the_engine_protocol():
    engine = CountingEngine()
    assert isinstance(engine, engines.Engine) and engines.resolve(engine) is engine
    for name in engines.OPERATIONS:
        protocol = inspect.signature(getattr(engines.Engine, name))
        protocol = protocol.replace(parameters=list(protocol.parameters.values())[1:])  # without self
        assert inspect.signature(getattr(engine, name)) == protocol, name


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
        from gpuconv.benchmarking.calls import call_op

        def run():
            self.calls += 1
            y = call_op(row, arrays, data_format, engine="numpy")
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


def test_the_bench_never_reads_or_changes_the_global_backend(monkeypatch, capsys):
    """Every call names its engine: the timed one, the oracle (engine='numpy'), the validation."""
    def refuse(*args, **kwargs):
        raise AssertionError("the global backend was consulted or changed")

    for name in ("engine", "set_backend", "get_backend"):
        monkeypatch.setattr(_backend, name, refuse)
        if hasattr(gpuconv, name):
            monkeypatch.setattr(gpuconv, name, refuse)
    assert validate(TINY, "channels_last") == TINY.output_shape("channels_last")
    counting = CountingEngine()
    assert _run(counting).status == PASS and counting.calls > 0
    assert _run(None).status == PASS  # GpuconvSubject("numpy"): the NumPy engine, by name
    assert main(["--backend", "numpy", "--suite", "quick", "--rows", "W1", "--repeat", "1", "--warmup", "0",
                 "--no-compare", "--seed", "1"]) == 0, capsys.readouterr()


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

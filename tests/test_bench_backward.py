"""Backward rows of gpuconv-bench (``--pass backward|both``): the gradients' gate against the float64
NumPy-engine oracle before any timing, the SKIP of an op without a backward, the FLOP/byte counts,
and the pass in the CLI, the table and the JSON/CSV."""
import csv
import json

import numpy as np
import pytest

from gpuconv.benchmarking import gradient_calls
from gpuconv.benchmarking.ceilings import DeviceCeilings
from gpuconv.benchmarking.cli import main
from gpuconv.benchmarking.cost import bytes_moved, flops, pass_bytes, pass_flops
from gpuconv.benchmarking.row import Row
from gpuconv.benchmarking.runner import FAIL, PASS, SKIP, Runner, Settings
from gpuconv.benchmarking.subjects import GpuconvSubject
from gpuconv.cpu import engine as cpu_engine

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

CEILINGS = DeviceCeilings("test", 1e10, 1e10, 1e10, 1e10, "test")
CONV = Row("c", "tiny conv with bias", "conv", 2, 4, 6, (9, 9), 3, 2, "same", bias=True)
SEPARABLE = Row("s", "tiny separable", "separable", 2, 3, 5, (8, 8), 3, 1, "same", dm=2, bias=True)
POOL = Row("p", "tiny max pool", "max_pool", 2, 3, 3, (8, 8), 2, 2, "valid")
BACKWARD = Settings(warmup=1, repeat=2, seed=5, pass_name="backward")
BOTH = Settings(warmup=1, repeat=2, seed=5, pass_name="both")
ONE_ROW = ["--backend", "numpy", "--repeat", "1", "--warmup", "0", "--seed", "3", "--no-compare"]
LAYER = ["--op", "conv2d", "--batch", "2", "--in", "4", "--out", "6", "--size", "9", "--bias"]


class WrongWeightGradientEngine:
    """The NumPy engine with its weight gradient scaled by 1 + 1e-4 (10x the float32 threshold) and
    counted; every other function is the NumPy engine's."""

    NAME = "wrong-weight-gradient"

    def __init__(self):
        self.backward_weight_calls = 0

    def __getattr__(self, name):
        return getattr(cpu_engine, name)

    def conv_backward_weights(self, problem, x, dy):
        self.backward_weight_calls += 1
        return cpu_engine.conv_backward_weights(problem, x, dy) * np.float32(1 + 1e-4)


def _run(settings, row, engine=None, comparison=None):
    return Runner(settings, GpuconvSubject("numpy", engine), CEILINGS, comparison).run(row)


@pytest.mark.parametrize("row", [CONV, SEPARABLE, POOL], ids=lambda r: r.op)
def test_a_rows_backward_passes_the_gate_on_the_numpy_engine_and_is_timed(row):
    result = _run(BACKWARD, row)
    assert result.status == PASS, result.error
    assert set(result.rel_errs) == set(gradient_calls.gradient_names(row))
    assert all(err <= 1e-5 for err in result.rel_errs.values()), result.rel_errs
    assert result.rel_err == max(result.rel_errs.values())
    assert result.checked_items == row.N and result.time is not None and result.time.repeat == 2


def test_both_checks_the_output_and_every_gradient():
    result = _run(BOTH, CONV)
    assert result.status == PASS, result.error
    assert set(result.rel_errs) == {"y", "dx", "dkernel", "dbias"}
    assert all(err <= 1e-5 for err in result.rel_errs.values())


def test_a_wrong_weight_gradient_fails_and_is_never_timed():
    engine = WrongWeightGradientEngine()
    result = _run(BACKWARD, CONV, engine)
    assert result.status == FAIL and result.error.endswith("> 1e-05 in dkernel: not timed")
    assert result.rel_errs["dkernel"] == pytest.approx(1e-4, rel=1e-2)
    assert result.rel_errs["dx"] <= 1e-5  # the input gradient is right: the gate names the wrong one
    assert result.time is None and result.compare is None and result.roofline_pct is None
    assert engine.backward_weight_calls == 1  # computed once for the check, never again for timing


def test_a_wrong_weight_gradient_on_a_sub_batch_check_still_fails():
    """With the oracle on fewer items than the batch, the weight gradients are checked on the
    subject's own sub-batch run: the wrong kernel is still caught."""
    engine = WrongWeightGradientEngine()
    row = Row("c4", "conv, batch 4", "conv", 4, 4, 6, (9, 9), 3, 1, "same")
    settings = Settings(warmup=1, repeat=2, seed=5, pass_name="backward", check_batch=2)
    result = _run(settings, row, engine)
    assert result.status == FAIL and result.checked_items == 2 and result.time is None
    assert result.rel_errs["dkernel"] == pytest.approx(1e-4, rel=1e-2)
    assert any("sub-batch of 2 items" in note for note in result.notes)


def test_an_op_without_a_backward_is_skip_not_a_crash(monkeypatch):
    from gpuconv import autodiff

    def unrecorded(row, arrays, data_format, engine=None):
        with autodiff.stop_recording():
            return cpu_engine.asarray(arrays["x"]) * 2.0

    monkeypatch.setattr(gradient_calls, "call_op", unrecorded)
    result = _run(BACKWARD, CONV)
    assert result.status == SKIP and result.time is None
    assert result.error == "no backward for op conv2d"


@pytest.fixture(scope="module")
def torch_cpu():
    from gpuconv.benchmarking.torch_compare import TorchSubject

    return TorchSubject("cpu", threads=1)


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not importable")
@pytest.mark.parametrize("row", [CONV, SEPARABLE, POOL,
                                 Row("t", "tiny convT", "conv_transpose", 2, 4, 6, (5, 5), 3, 2, "same", bias=True),
                                 Row("w", "tiny depthwise", "depthwise", 2, 3, 6, (7,), 3, 1, "causal", dm=2),
                                 Row("d", "tiny dense", "dense", 3, 8, 5, (1,), bias=True, activation="relu"),
                                 # torch's asymmetric-padding mappings: F.pad first, or pad and slice
                                 Row("a", "conv s2 'same' pads (0, 1)", "conv", 2, 3, 4, (10, 10), 3, 2, "same"),
                                 Row("k4", "conv k4 'same' pads (1, 2)", "conv", 2, 3, 4, (7, 7), 4, 1, "same"),
                                 Row("m", "max pool k3 s2 'same'", "max_pool", 2, 3, 3, (10, 10), 3, 2, "same"),
                                 Row("v", "average pool k2 s1 'same'", "avg_pool", 2, 3, 3, (7, 7), 2, 1, "same")],
                         ids=lambda r: f"{r.op}-{r.id}")
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_torch_gradients_are_checked_in_keras_layout_and_timed(row, data_format, torch_cpu):
    settings = Settings(warmup=0, repeat=1, seed=5, pass_name="backward", data_format=data_format)
    result = _run(settings, row, comparison=torch_cpu)
    assert result.status == PASS, result.error
    comp = result.compare
    assert comp.status == PASS, comp.note
    assert set(comp.rel_errs) == set(gradient_calls.gradient_names(row))
    assert all(err <= 1e-4 for err in comp.rel_errs.values()), comp.rel_errs
    assert comp.ratio == pytest.approx(result.time.median / comp.time.median)


def test_backward_flops_are_twice_the_forwards_and_pooling_is_memory():
    conv, bias = flops(CONV), CONV.N * CONV.K * 5 * 5  # 'same' at stride 2: 9 -> 5
    backward = pass_flops(CONV, "backward")
    assert backward.tensor == 2 * conv.tensor and backward.simt == bias == conv.simt
    both = pass_flops(CONV, "both")
    assert both.total == conv.total + backward.total
    assert pass_flops(CONV, "forward") == conv
    assert pass_flops(POOL, "backward") == flops(POOL)
    x, y = 2 * 8 * 8 * 3, 2 * 4 * 4 * 3
    assert pass_bytes(POOL, "float32", "backward") == 4 * (2 * x + y)  # x, dy read; dx written
    weights = 3 * 3 * 4 * 6 + 6
    x, y = 2 * 9 * 9 * 4, 2 * 5 * 5 * 6
    assert pass_bytes(CONV, "float16", "backward") == 2 * (2 * x + 2 * weights + y)
    assert pass_bytes(CONV, "float32", "both") == bytes_moved(CONV, "float32") + pass_bytes(CONV, "float32",
                                                                                             "backward")


@pytest.mark.parametrize("pass_name, suffix", [("backward", "conv2d:bwd"), ("both", "conv2d:fwd+bwd")])
def test_cli_accepts_the_pass_and_labels_the_table_json_and_csv(pass_name, suffix, tmp_path, capsys):
    status = main(ONE_ROW + LAYER + ["--pass", pass_name, "--json", str(tmp_path / "r.json"),
                                     "--csv", str(tmp_path / "r.csv")])
    assert status == 0
    text = capsys.readouterr().out
    table = [line.split() for line in text.splitlines() if line.startswith("custom ")]
    assert len(table) == 1 and table[0][1] == suffix and "PASS" in table[0]
    assert f"{pass_name} pass" in text
    doc = json.loads((tmp_path / "r.json").read_text())
    (row,) = doc["rows"]
    assert row["pass"] == pass_name and doc["settings"]["pass_name"] == pass_name
    expected = {"dx", "dkernel", "dbias"} | ({"y"} if pass_name == "both" else set())
    assert set(row["rel_errs"]) == expected and row["status"] == "PASS"
    assert row["gflop"] == pytest.approx(pass_flops(_layer_row(), pass_name).total / 1e9)
    with open(tmp_path / "r.csv", newline="") as f:
        (line,) = list(csv.DictReader(f))
    assert line["pass"] == pass_name and float(line["rel_err_dkernel"]) == row["rel_errs"]["dkernel"]


def _layer_row():
    return Row("custom", "", "conv", 2, 4, 6, (9, 9), 3, 1, "valid", bias=True)


def test_forward_stays_the_default_pass(tmp_path, capsys):
    assert main(ONE_ROW + LAYER + ["--json", str(tmp_path / "r.json")]) == 0
    text = capsys.readouterr().out
    assert [line.split()[1] for line in text.splitlines() if line.startswith("custom ")] == ["conv2d"]
    (row,) = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert row["pass"] == "forward" and row["rel_errs"] is None


@pytest.mark.parametrize("value", ["sideways", "Backward", ""])
def test_cli_rejects_other_passes_with_a_message_naming_the_flag(value, capsys):
    assert main(ONE_ROW + LAYER + ["--pass", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--pass" in err[0] and "backward" in err[0], err

"""gpuconv-bench's command line: error handling (one line, exit 2), a tiny end-to-end run, and the
JSON/CSV schema."""
import csv
import json
import subprocess
import sys

import pytest

from gpuconv import backend as _backend
from gpuconv.benchmarking.cli import main, parse_op

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

CUDA_OK, CUDA_REASON = _backend.probe_cuda()
ONE_ROW = ["--backend", "numpy", "--repeat", "1", "--warmup", "0", "--seed", "3"]


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("gpuconv-bench: error: ")
    return err[0]


LAYER = ["--op", "conv2d", "--batch", "2", "--in", "8", "--out", "16", "--size", "12"]


@pytest.mark.parametrize("flags, expected", [
    (LAYER + ["--kernel", "0"], ["--kernel 0", "kernel_size"]),
    (LAYER + ["--groups", "3"], ["--groups 3", "--out 16", "divisible"]),
    (LAYER + ["--groups", "0"], ["--groups 0", "positive"]),
    (LAYER + ["--kernel", "13", "--padding", "valid"], ["--size 12", "--kernel 13", "--padding valid",
                                                       "zero or negative"]),
    (LAYER + ["--padding", "causal"], ["--padding causal"]),
    (LAYER + ["--stride", "2", "--dilation", "2"], ["--stride 2", "--dilation 2", "dilation_rate > 1"]),
    (LAYER + ["--kernel", "3x3x3"], ["--kernel 3x3x3", "tuple of 2 integers"]),
    (LAYER + ["--size", "abc"], ["--size abc"]),
    (LAYER + ["--batch", "x"], ["--batch", "'x'"]),
    (LAYER + ["--depth-multiplier", "2"], ["--depth-multiplier 2"]),
    (LAYER + ["--activation", "nope"], ["--activation nope", "activation"]),
    (["--op", "depthwise_conv2d", "--in", "8", "--out", "12", "--size", "8"], ["--out 12", "--in 8"]),
    (["--op", "warp9d", "--in", "8", "--size", "8"], ["--op warp9d", "unknown op"]),
    (["--op", "dense", "--in", "8", "--size", "8"], ["--size 8", "dense"]),
    (["--suite", "quick", "--rows", "D4,ZZ"], ["--rows D4,ZZ", "ZZ"]),
    (["--suite", "quick", "--op", "conv2d"], ["--suite quick", "--op conv2d"]),
    (["--repeat", "0"], ["--repeat 0"]),
    (["--dtype", "float64"], ["--dtype", "float64"]),
])
def test_impossible_flags_exit_2_with_one_line_naming_flag_and_value(flags, expected, capsys):
    assert main(["--backend", "numpy"] + flags) == 2
    line = _error_line(capsys)
    for text in expected:
        assert text in line, (text, line)
    assert capsys.readouterr().out == ""


@pytest.mark.skipif(CUDA_OK, reason="CUDA is available here, so --backend cuda is not an error")
def test_backend_cuda_without_a_gpu_is_a_clean_exit_2(capsys):
    assert main(["--backend", "cuda", "--suite", "quick"]) == 2
    line = _error_line(capsys)
    assert "--backend cuda" in line and "unavailable" in line and "Traceback" not in line


def test_plot_without_matplotlib_is_a_clean_exit_2_before_any_row_runs(capsys, tmp_path, monkeypatch):
    # A None entry in sys.modules makes `import matplotlib` raise ImportError, as on a machine
    # without it, whether or not this one has it.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(ONE_ROW + ["--suite", "quick", "--rows", "W1", "--plot", str(tmp_path / "p.png")]) == 2
    assert "matplotlib" in _error_line(capsys)


@pytest.mark.parametrize("name, expected", [
    ("conv2d", ("conv", 2)), ("Conv3D", ("conv", 3)), ("conv1d_transpose", ("conv_transpose", 1)),
    ("Conv2DTranspose", ("conv_transpose", 2)), ("depthwise_conv2d", ("depthwise", 2)),
    ("DepthwiseConv1D", ("depthwise", 1)), ("SeparableConv2D", ("separable", 2)),
    ("MaxPooling2D", ("max_pool", 2)), ("avg_pool3d", ("avg_pool", 3)), ("Dense", ("dense", 1)),
])
def test_op_names(name, expected):
    assert parse_op(name) == expected


def test_list_through_python_dash_m():
    proc = subprocess.run([sys.executable, "-m", "gpuconv.benchmarking", "--backend", "numpy", "--suite", "suite",
                           "--list"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 25 and lines[3].split()[0] == "D4" and "7.399 GFLOP" in lines[3]


# --------------------------------------------------------------------------------------------
# A tiny end-to-end run, and what it writes
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_two_rows(tmp_path_factory):
    """``--suite quick`` restricted to two rows, one repeat; returns (status, stdout, json, csv)."""
    d = tmp_path_factory.mktemp("bench")
    previous = _backend.requested_backend()
    mp = pytest.MonkeyPatch()
    out = []
    mp.setattr(sys, "stdout", _Tee(out))
    try:
        status = main(ONE_ROW + ["--suite", "quick", "--rows", "W6,T3", "--json", str(d / "r.json"),
                                 "--csv", str(d / "r.csv")])
    finally:
        mp.undo()
    assert _backend.requested_backend() == previous  # the run named its engine; the selection is untouched
    with open(d / "r.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    return status, "".join(out), json.loads((d / "r.json").read_text()), lines


class _Tee:
    def __init__(self, sink):
        self.sink = sink

    def write(self, text):
        self.sink.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def test_end_to_end_two_rows(run_two_rows):
    status, text, doc, _ = run_two_rows
    assert status == 0
    table = [line for line in text.splitlines() if line.startswith(("W6 ", "T3 "))]
    assert len(table) == 2 and all(" PASS " in line for line in table)
    assert "summary: 2/2 rows PASS" in text
    assert "measured (CPU, no datasheet table)" in text
    if HAVE_TORCH:
        assert "geomean time ratio gpuconv/torch" in text and "torch" in doc["summary"]["compared_with"]


ROW_TYPES = {
    "id": str, "description": str, "op": str, "op_text": str, "shape": str, "N": int, "C": int, "K": int,
    "spatial": list, "g": int, "dm": int, "padding": str, "bias": bool, "output_shape": list, "dtype": str,
    "data_format": str, "status": str, "error": str, "rel_err": float, "threshold": float, "checked_items": int,
    "time": dict, "gflop": float, "tensor_gflop": float, "bytes": int, "tflops": float, "gbs": float,
    "roofline_s": float, "bound": str, "roofline_pct": float, "compare": dict, "notes": list,
}
ENV_KEYS = {"gpuconv", "backend", "python", "numpy", "torch", "platform", "cpu", "cpu_threads", "gpu",
            "cuda_driver", "cuda_runtime", "cupy"}


def test_json_schema(run_two_rows):
    _, _, doc, _ = run_two_rows
    assert doc["schema"] == "gpuconv-bench/1"
    assert set(doc) == {"schema", "environment", "settings", "ceilings", "summary", "rows"}
    assert ENV_KEYS <= set(doc["environment"]) and doc["environment"]["backend"] == "numpy"
    assert isinstance(doc["environment"]["cpu_threads"], int) and doc["environment"]["cpu_threads"] >= 1
    assert doc["settings"]["repeat"] == 1 and doc["settings"]["seed"] == 3
    c = doc["ceilings"]
    assert all(isinstance(c[k], float) and c[k] > 0 for k in ("fp32", "fp16_tensor", "fp16_simt", "bandwidth"))
    assert c["source"].startswith("measured")
    s = doc["summary"]
    assert (s["rows"], s["pass"], s["fail"], s["error"]) == (2, 2, 0, 0)
    assert [r["id"] for r in doc["rows"]] == ["W6", "T3"]
    for r in doc["rows"]:
        for key, typ in ROW_TYPES.items():
            assert isinstance(r[key], typ), (key, r[key])
        assert set(r["time"]) == {"median_s", "min_s", "max_s", "repeat", "method"}
        assert r["time"]["min_s"] <= r["time"]["median_s"] <= r["time"]["max_s"] and r["time"]["repeat"] == 1
        assert r["tflops"] == pytest.approx(r["gflop"] / 1e3 / r["time"]["median_s"])
        assert r["gbs"] == pytest.approx(r["bytes"] / 1e9 / r["time"]["median_s"])
        assert r["roofline_pct"] == pytest.approx(100 * r["roofline_s"] / r["time"]["median_s"])
        comp = r["compare"]
        assert {"library", "device", "status", "rel_err", "time", "ratio", "note"} <= set(comp)
        if HAVE_TORCH:
            assert comp["status"] == "PASS" and comp["device"] == "cpu" and "torch" in comp["library"]
            assert comp["rel_err"] <= 1e-4
            assert comp["ratio"] == pytest.approx(r["time"]["median_s"] / comp["time"]["median_s"])


def test_csv_has_one_line_per_row_with_every_figure_and_the_environment(run_two_rows):
    _, _, doc, lines = run_two_rows
    assert [line["id"] for line in lines] == ["W6", "T3"]
    for line, rec in zip(lines, doc["rows"]):
        for key in ("status", "rel_err", "gflop", "bytes", "tflops", "gbs", "roofline_s", "roofline_pct",
                    "time_median_s", "time_min_s", "time_max_s", "compare_status", "compare_ratio",
                    "compare_time_median_s", "env_cpu", "env_numpy", "env_gpuconv", "ceilings_bandwidth"):
            assert key in line, key
        assert float(line["time_median_s"]) == pytest.approx(rec["time"]["median_s"])
        assert line["spatial"] == "x".join(str(v) for v in rec["spatial"])
        assert line["env_backend"] == "numpy"


def test_single_layer_from_flags_runs(capsys):
    status = main(ONE_ROW + ["--op", "conv2d", "--batch", "2", "--in", "4", "--out", "6", "--size", "9",
                             "--kernel", "3", "--stride", "2", "--padding", "same", "--bias", "--activation", "relu",
                             "--data-format", "channels_first", "--dtype", "float16"])
    out = capsys.readouterr().out
    assert status == 0, out
    line = next(line for line in out.splitlines() if line.startswith("custom "))
    assert " PASS " in line and "2x9x9 4->6 k3 s2 same" in line


@pytest.mark.parametrize("padding", ["VALID", "Same"])
def test_padding_flag_is_case_insensitive_as_keras(padding, capsys):
    # Keras lowercases padding; an upper-case flag once reached Row's geometry as-is ("VALID" took
    # the 'same' formula) and crashed the dry run with a shape mismatch.
    status = main(ONE_ROW + ["--op", "conv2d", "--in", "2", "--size", "9", "--padding", padding, "--list"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"1x9x9 2->2 k3 {padding.lower()}" in out

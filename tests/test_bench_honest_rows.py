"""Honest CPU rows of gpuconv-bench: an implausible gpuconv/torch ratio is re-measured and, when it
stays implausible, flagged in the table, the summary and the exports; the ceilings line is worded
for the device in use; torch's OpenMP workers are pinned only where that is still possible; and
every document a help text or docstring of the benchmark names exists in the repository.

No test here times anything for its speed: the timers are fakes returning chosen numbers.
"""
import ast
import csv
import json
import pathlib
import re

import pytest

from gpuconv.benchmarking import export, report
from gpuconv.benchmarking import runner as runner_module
from gpuconv.benchmarking.ceilings import DeviceCeilings
from gpuconv.benchmarking.cli import build_parser
from gpuconv.benchmarking.row import Row
from gpuconv.benchmarking.runner import (PASS, RATIO_BOUNDS, RATIO_FLAG, Comparison, Runner, RowResult,
                                         Settings, check_ratio, remeasure_warmup, summarize)
from gpuconv.benchmarking.subjects import GpuconvSubject
from gpuconv.benchmarking.timing import Timing
from gpuconv.benchmarking.torch_compare import OMP_PLACEMENT_VARS, omp_pinning_plan

REPO = pathlib.Path(__file__).resolve().parents[1]
BENCH = REPO / "gpuconv" / "benchmarking"
CPU_CEILINGS = DeviceCeilings("cpu", 1.75e11, 1.75e11, 1.75e11, 1.3e10,
                              "measured (CPU, no datasheet table): 64 MiB np.copyto, 1024^3 float32 matmul")
GPU_CEILINGS = DeviceCeilings("NVIDIA H200", 66.9e12, 989.4e12, 133.8e12, 4.8e12, "datasheet (H200 SXM)")
DENSE = Row("K6", "seed CNN Dense 100->10", "dense", 128, 100, 10, (1,), 1, 1, "valid", bias=True)


def _t(seconds):
    return Timing.from_samples([seconds], "fake")


def _compared(mine, theirs):
    """A PASS row timed at ``mine`` seconds against a comparison timed at ``theirs``."""
    result = RowResult(DENSE, "float32", "channels_last", PASS, 1e-5, rel_err=1e-7, time=_t(mine))
    result.compare = Comparison("torch 9.9 CPU (2 threads)", "cpu", PASS, rel_err=1e-7, time=_t(theirs),
                                ratio=mine / theirs)
    return result


class _Measurements:
    """A fake ``measure()``: returns the given (gpuconv, comparison) seconds in turn, counting calls."""

    def __init__(self, *pairs):
        self.pairs, self.calls = list(pairs), 0

    def __call__(self):
        mine, theirs = self.pairs[self.calls]
        self.calls += 1
        return _t(mine), _t(theirs), ""


# --------------------------------------------------------------------------------------------
# The safety net: re-measure, then flag
# --------------------------------------------------------------------------------------------
def test_an_absurd_ratio_is_remeasured_and_the_sane_second_measurement_kept():
    result = _compared(120e-6, 12e-3)  # the row: torch at 12 ms, 0.01x
    measure = _Measurements((120e-6, 18e-6))
    assert check_ratio(result, result.compare, measure, warmup=6) is True
    assert measure.calls == 1
    assert result.compare.ratio == pytest.approx(120e-6 / 18e-6)
    assert result.time.median == 120e-6 and result.compare.time.median == 18e-6
    assert result.flags == []
    assert len(result.notes) == 1 and "0.01x outside 0.05x..20x" in result.notes[0]
    assert "re-measured after 6 warm-up calls: 6.67x" in result.notes[0]


def test_a_ratio_still_absurd_after_the_remeasurement_is_flagged():
    result = _compared(120e-6, 12e-3)
    measure = _Measurements((110e-6, 11e-3))
    check_ratio(result, result.compare, measure, warmup=6)
    assert measure.calls == 1
    assert result.flags == [RATIO_FLAG] and result.flagged
    assert result.compare.ratio == pytest.approx(0.01) and "still outside: flagged" in result.notes[0]


@pytest.mark.parametrize("ratio", [RATIO_BOUNDS[0], 1.0, RATIO_BOUNDS[1]])
def test_a_plausible_ratio_is_not_measured_again(ratio):
    result = _compared(ratio * 1e-3, 1e-3)
    measure = _Measurements()
    assert check_ratio(result, result.compare, measure, warmup=6) is False
    assert measure.calls == 0 and result.flags == [] and result.notes == []


def test_a_remeasurement_that_fails_leaves_the_first_figures_flagged():
    result = _compared(1e-3, 1e-6)

    def broken():
        raise RuntimeError("torch went away")

    check_ratio(result, result.compare, broken, warmup=6)
    assert result.flags == [RATIO_FLAG] and result.compare.ratio == pytest.approx(1000.0)
    assert "RuntimeError: torch went away" in result.notes[0]


class _SameCallComparison:
    """A comparison computing exactly what gpuconv computes (so it passes the oracle gate)."""

    label, device = "fake comparison", "cpu"

    def __init__(self):
        self.inner = GpuconvSubject("numpy")

    def prepare(self, row, arrays, data_format):
        return self.inner.prepare(row, arrays, data_format)

    def to_host(self, y):
        return y


@pytest.mark.parametrize("second, flagged", [((150e-6, 20e-6), False), ((150e-6, 11e-3), True)])
def test_runner_remeasures_both_sides_with_a_longer_warmup(monkeypatch, second, flagged):
    """Through the Runner: the first block timing says 0.0125x, the second decides."""
    calls = []
    answers = iter([(150e-6, 12e-3), second])

    def fake_blocks(fns, *, warmup, repeat):
        assert len(fns) == 2  # gpuconv and the comparison, timed again together
        calls.append(warmup)
        mine, theirs = next(answers)
        return [_t(mine), _t(theirs)]

    monkeypatch.setattr(runner_module, "time_cpu_blocks", fake_blocks)
    settings = Settings(warmup=2, repeat=3, seed=5)
    small = Row("dense", "small dense", "dense", 4, 12, 5, (1,), 1, 1, "valid", bias=True)
    result = Runner(settings, GpuconvSubject("numpy"), CPU_CEILINGS, _SameCallComparison()).run(small)
    assert result.status == PASS and result.compare.status == PASS
    assert calls == [2, remeasure_warmup(2)]
    assert result.compare.ratio == pytest.approx(second[0] / second[1])
    assert (RATIO_FLAG in result.flags) is flagged
    assert any("0.0125x outside" in n for n in result.notes)


# --------------------------------------------------------------------------------------------
# The flag where a reader sees it: table, summary, JSON, CSV
# --------------------------------------------------------------------------------------------
def _flagged_and_plain():
    flagged = _compared(120e-6, 12e-3)
    flagged.flags.append(RATIO_FLAG)
    return [flagged, _compared(2e-3, 1e-3)]


def test_table_marks_the_flagged_ratio_and_explains_the_mark():
    results = _flagged_and_plain()
    table = report.render_table(results)
    k6_lines = [line for line in table.splitlines() if line.startswith("K6 ")]
    assert k6_lines[0].endswith("0.01x" + report.FLAG_MARK)
    assert not k6_lines[1].endswith(report.FLAG_MARK)
    assert table.splitlines()[-1] == report.FLAG_FOOTNOTE
    assert "0.05x..20x" in report.FLAG_FOOTNOTE and "docs/bench_suite.md" in report.FLAG_FOOTNOTE
    assert report.FLAG_FOOTNOTE not in report.render_table(results[1:])


def test_the_summary_counts_the_flagged_ratios():
    summary = summarize(_flagged_and_plain())
    assert summary["flagged_rows"] == 1 and summary["compared_rows"] == 2
    assert summary["geomean_ratio"] == pytest.approx((0.01 * 2.0) ** 0.5)  # a flag hides nothing
    assert "1 ratio flagged (!, see the note under the table)" in report.render_summary(summary)
    assert "flagged" not in report.render_summary(summarize(_flagged_and_plain()[1:]))


def test_the_flag_is_exported_to_json_and_csv(tmp_path):
    results = _flagged_and_plain()
    env = {"backend": "numpy", "cpu": "test CPU", "cpu_threads": 2}
    doc = export.document(results, env, Settings(), CPU_CEILINGS, summarize(results))
    export.write_json(tmp_path / "r.json", doc)
    export.write_csv(tmp_path / "r.csv", doc)
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [r["flags"] for r in rows] == [[RATIO_FLAG], []]
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["flagged_rows"] == 1
    with open(tmp_path / "r.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert [line["flags"] for line in lines] == [RATIO_FLAG, ""]


# --------------------------------------------------------------------------------------------
# The ceilings line, worded for the device
# --------------------------------------------------------------------------------------------
def test_cpu_ceilings_line_gives_the_measured_cpu_rates_and_threads():
    line = report.ceilings_line(CPU_CEILINGS, "cpu", threads=2)
    assert "measured on this CPU (2 threads)" in line
    assert "float32 FMA 175 GFLOP/s" in line and "memory 13 GB/s" in line
    assert "tensor" not in line and "CUDA-core" not in line and "TFLOP/s" not in line
    assert CPU_CEILINGS.source in line


def test_gpu_ceilings_line_gives_the_three_gpu_rates():
    line = report.ceilings_line(GPU_CEILINGS, "cuda")
    assert line.startswith("ceilings: fp32 66.9 TFLOP/s, fp16 tensor 989 / CUDA-core 134 TFLOP/s")
    assert "memory 4800 GB/s [datasheet (H200 SXM)]" in line


def test_header_uses_the_device_wording():
    env = {"gpuconv": "0.0", "backend": "numpy", "cpu": "test CPU", "cpu_threads": 2, "gpu": None}
    header = report.render_header("suite 'keras'", 6, Settings(), env, CPU_CEILINGS, "torch", "")
    assert "ceilings measured on this CPU (2 threads)" in header and "fp16 tensor" not in header


@pytest.mark.parametrize("load, busy", [(None, False), (0.3, False), (1.0, False), (3.75, True)])
def test_a_busy_machine_is_said_under_the_header(load, busy):
    line = report.load_warning(load, cpus=2)
    assert bool(line) is busy
    if busy:
        assert "busy (1-minute load average 3.75 on 2 CPUs)" in line


def test_load_warning_refuses_no_cpus():
    with pytest.raises(ValueError, match="cpus must be >= 1. Received: cpus=0"):
        report.load_warning(1.0, cpus=0)


def test_ceilings_line_refuses_an_unknown_device():
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'. Received: device='tpu'"):
        report.ceilings_line(CPU_CEILINGS, "tpu")


# --------------------------------------------------------------------------------------------
# Pinning torch's OpenMP workers only where it is ours to do
# --------------------------------------------------------------------------------------------
def test_pinning_when_nothing_chose_a_placement_yet():
    assert omp_pinning_plan({}, torch_imported=False, openmp_loaded=False) == (True, "OpenMP workers pinned")


@pytest.mark.parametrize("var", OMP_PLACEMENT_VARS)
def test_a_placement_the_user_chose_is_kept(var):
    pin, words = omp_pinning_plan({var: "spread"}, torch_imported=False, openmp_loaded=False)
    assert not pin and f"${var}=spread" in words


@pytest.mark.parametrize("imported, loaded", [(True, False), (False, True)])
def test_an_openmp_runtime_already_loaded_cannot_be_pinned_and_says_so(imported, loaded):
    pin, words = omp_pinning_plan({}, torch_imported=imported, openmp_loaded=loaded)
    assert not pin and "unpinned" in words


# --------------------------------------------------------------------------------------------
# Documents named by the benchmark's texts exist
# --------------------------------------------------------------------------------------------
# A path ending in .md; a leading "/" is kept, so an absolute path (outside the repository) fails.
_DOC_PATH = re.compile(r"(?<![\w/.-])(/?(?:[\w.-]+/)*[\w.-]+\.md)\b")


def _texts_of_the_benchmark():
    """(where, text): every string literal of gpuconv/benchmarking (docstrings, help texts,
    footnotes) and the rendered --help."""
    for path in sorted(BENCH.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield f"{path.relative_to(REPO)}:{node.lineno}", node.value
    yield "gpuconv-bench --help", build_parser().format_help()


def test_every_document_named_by_a_benchmark_text_exists_in_the_repository():
    named = {(where, m) for where, text in _texts_of_the_benchmark() for m in _DOC_PATH.findall(text)}
    assert ("gpuconv-bench --help", "docs/bench_suite.md") in named  # the scan sees the help text
    missing = sorted((where, doc) for where, doc in named if doc.startswith("/") or not (REPO / doc).is_file())
    assert missing == [], f"documents named but not in the repository: {missing}"

"""``python -m gpuconv.cuda.check``'s command line: progress as each compile finishes, the summary
line, and ``--only`` with kernel files, families and names that select nothing.

The compiling tests use NVRTC (no GPU) on the smallest kernel files, as CI does (skipped only
when CuPy's NVRTC is not importable, failed then under GPUCONV_REQUIRE_NVRTC=1).
"""
import io
import os
import re
import subprocess
import sys

import pytest

from gpuconv.cuda import check, registry
from test_cuda_compile import REQUIRE, UNAVAILABLE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASK_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+\.cu) sm_(\d+): (\d+) kernels, \d+\.\d s, max \d+ regs, (\d+) spills$")


@pytest.fixture(scope="module")
def nvrtc_available():
    """Skips where CuPy's NVRTC is missing, and fails there instead under GPUCONV_REQUIRE_NVRTC=1 (CI)."""
    if UNAVAILABLE is not None:
        (pytest.fail if REQUIRE else pytest.skip)(f"compiling needs CuPy's NVRTC: {UNAVAILABLE}")


@pytest.fixture(scope="module")
def registered():
    absent, errors = check.import_kernel_modules()
    assert not errors, errors
    return registry.registry()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gpuconv.cuda.check", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_cli_prints_a_line_per_task_as_it_finishes_and_a_summary(nvrtc_available, registered):
    done = run_cli("--only", "locally_connected.cu", "--jobs", "2", "--progress", "lines")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 4, done.stderr  # what starts, two tasks (sm_80, sm_90), then the summary
    assert lines[0] == ("[0/2] compiling 1 kernel file(s) for sm_80, sm_90 on 2 thread(s), the largest first; "
                        "a line as each finishes")
    lines = lines[1:]
    tasks = [TASK_LINE.match(line) for line in lines[:2]]
    assert all(tasks), lines
    assert [m.group(1) for m in tasks] == ["1", "2"] and {m.group(2) for m in tasks} == {"2"}
    assert {m.group(3) for m in tasks} == {"locally_connected.cu"}
    assert sorted(m.group(4) for m in tasks) == ["80", "90"]
    assert {int(m.group(5)) for m in tasks} == {len(registered["locally_connected.cu"])}
    assert re.match(r"^check: 2 compile\(s\) in \d+\.\d s wall on 2 thread\(s\) \(the compiles' own times add up "
                    r"to \d+\.\d s\); 0 failed, 0 spilling function\(s\), 0 error\(s\): OK$", lines[2]), lines[2]
    # The table and its verdict still go to stdout, and only there.
    assert done.stdout.rstrip().endswith("OK") and "locally_connected" in done.stdout


def test_run_check_with_a_family_compiles_each_of_its_files(nvrtc_available, registered):
    stream = io.StringIO()
    result = check.run_check(files=["locally_connected"], archs=(90,), jobs=2,
                             progress=check.Progress(stream, bar=False))
    assert result.ok, check.report(result)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[0/2] compiling 2 kernel file(s) for sm_90 on 2 thread(s)"), lines
    matches = [TASK_LINE.match(line) for line in lines[1:]]
    assert len(lines) == 3 and all(matches), lines
    assert sorted(m.group(3) for m in matches) == ["locally_connected.cu", "locally_connected_backward.cu"]
    assert sorted(t.filename for t in result.tasks) == ["locally_connected.cu", "locally_connected_backward.cu"]
    assert {r.file for r in result.rows} == {"locally_connected.cu", "locally_connected_backward.cu"}


def test_a_family_is_a_stem_start_up_to_an_underscore(registered):
    assert check.select_files(["depthwise"], registered) == ["depthwise.cu", "depthwise_backward_input.cu",
                                                             "depthwise_backward_weights.cu"]
    assert check.select_files(["conv"], registered) == ["conv_backward_weights.cu", "conv_direct.cu",
                                                        "conv_implicit_gemm.cu", "conv_transpose.cu"]
    assert check.select_files(["pooling"], registered) == ["pooling.cu", "pooling_backward.cu"]
    # A file name is that file only; a whole stem with underscores is a family of its own.
    assert check.select_files(["depthwise.cu"], registered) == ["depthwise.cu"]
    assert check.select_files(["conv_transpose"], registered) == ["conv_transpose.cu"]
    assert check.select_files(["upsample.cu", "upsample"], registered) == ["upsample.cu", "upsample_backward.cu"]


@pytest.mark.parametrize("bad", ["pool", "depthwise_back", "pooling.c", "nope.cu"])
def test_a_name_selecting_nothing_is_refused_with_the_valid_names(registered, bad):
    with pytest.raises(ValueError) as info:
        check.select_files([bad], registered)
    message = str(info.value)
    assert f"{bad!r}" in message and "`only`" in message
    assert all(f in message for f in registered)  # every valid file is listed
    assert "depthwise, " in message and "pooling, " in message  # and the families of several files


def test_cli_refuses_an_unknown_name_before_compiling():
    done = run_cli("--only", "pooling.cu", "pool")
    assert done.returncode == 2
    assert "'pool' names no registered kernel file or family" in done.stderr
    assert "pooling.cu" in done.stderr and "[1/" not in done.stderr  # nothing was compiled


def test_jobs_must_be_positive():
    with pytest.raises(ValueError, match=r"jobs=0"):
        check.run_check(files=["pooling.cu"], jobs=0)
    done = run_cli("--jobs", "0")
    assert done.returncode == 2 and "positive integer" in done.stderr


def _task(filename, arch, seconds=1.5):
    rows = [check.Row(filename, "k<float>", f"sm_{arch}", registers=40)]
    return check.TaskResult(filename, arch, 1, seconds, rows)


def test_bar_redraws_one_line_in_place_and_ends_it(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    stream = io.StringIO()
    progress = check.Progress(stream, bar=True)
    progress(1, 2, _task("pooling.cu", 80))
    assert "\n" not in stream.getvalue() and stream.getvalue().startswith("\r")
    progress(2, 2, _task("pooling.cu", 90))
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "[##############################] [2/2] pooling.cu sm_90: 1 kernels, 1.5 s, max 40 regs, 0 spills" in text


def test_bar_fits_the_terminal_line(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    stream = io.StringIO()
    check.Progress(stream, bar=True)(1, 2, _task("depthwise_backward_weights.cu", 80))
    drawn = stream.getvalue().split("\x1b[K", 1)[1]
    assert drawn.startswith("[###") and len(drawn) == 39  # a longer line would wrap and not redraw


def test_a_failed_task_says_so_in_its_line():
    failed = check.TaskResult("pooling.cu", 90, 24, 2.0, errors=["pooling.cu sm_90: NVRTC failed"])
    assert check.task_line(3, 26, failed) == "[3/26] pooling.cu sm_90: FAILED after 2.0 s (1 error(s))"

"""Every registered instantiation once under AddressSanitizer + UBSan and once under the race
checker: tests/test_cuda_gpu_instantiations.py run again in a child process per check mode.

A child, because a sanitized shared object needs its runtime preloaded into the interpreter
(``python -m gpuconv.emulator.sanitized``) and a race-checked build is a different library; the
child's own last test fails if any registered instantiation was never launched. On a real GPU
the same role belongs to NVIDIA's compute-sanitizer, which these tests do not drive.
"""
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import EMULATOR_AVAILABLE, EMULATOR_REASON

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not EMULATOR_AVAILABLE, reason=f"cuda-emulator unavailable: {EMULATOR_REASON}")]

TESTS = pathlib.Path(__file__).resolve().parent
TARGET = TESTS / "test_cuda_gpu_instantiations.py"


def _run_child(prefix, extra_env):
    env = dict(os.environ, GPUCONV_GPU_TESTS="emulator", **extra_env)
    cmd = [sys.executable, *prefix, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(TARGET)]
    done = subprocess.run(cmd, cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=1800)
    tail = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, f"{' '.join(cmd)} failed (rc {done.returncode}):\n{tail}"
    assert " passed" in done.stdout and " failed" not in done.stdout, tail
    return done.stdout


def test_every_instantiation_under_address_and_undefined_behaviour_sanitizers():
    out = _run_child(["-m", "gpuconv.emulator.sanitized"], {})
    assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out


def test_every_instantiation_under_the_race_checker():
    _run_child([], {"GPUCONV_EMULATOR_CHECK": "race"})

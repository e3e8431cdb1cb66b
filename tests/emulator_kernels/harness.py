"""Shared helpers of tests/test_emulator_*.py: build and launch the test kernels of this folder on
the cuda-emulator, and run launches in a child interpreter with the sanitizer runtimes preloaded.

Test kernels are ordinary ``.cu`` files here that include the package's headers
(``common.cuh`` / ``ptx.cuh``) exactly as kernels/*.cu do; ``build.build(..., source=...,
headers=...)`` compiles them with the emulator's shim, cached on disk like the package's kernels.

ASAN/UBSan (``'asan'`` mode) needs libasan and libubsan loaded before anything else in the
process, so those launches run in a child interpreter: :func:`run_sanitized` (NOTE for the lead:
this is the helper to unify with ``python -m gpuconv.emulator.sanitized``; it builds the same
environment, from the real interpreter binary, not a pyenv shim script).
"""
import functools
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np

from gpuconv.cuda import sources
from gpuconv.cuda.launch import KernelLaunchError  # noqa: F401  (re-exported for the tests)
from gpuconv.emulator import build, device, runtime

HERE = pathlib.Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent

ASAN_OPTIONS = "detect_leaks=0:halt_on_error=1:abort_on_error=0:alloc_dealloc_mismatch=0:detect_odr_violation=0"
UBSAN_OPTIONS = "halt_on_error=1:print_stacktrace=1"


# The instantiations of runtime_checks.cu (one build serves the runtime tests and the benchmark).
RUNTIME_CHECK_NAMES = (
    "gct::bounded", "gct::unbounded", "gct::dynamic_reverse",
    "gct::warp_op_mismatch<false>", "gct::warp_op_mismatch<true>",
    "gct::warp_barrier_deadlock<false>", "gct::warp_barrier_deadlock<true>",
    "gct::warp_lane_exited<false>", "gct::warp_lane_exited<true>",
    "gct::mma_partial_warp", "gct::mma_vs_ldmatrix", "gct::cp_async_left_pending", "gct::four_barriers",
)


def source(filename):
    return (HERE / filename).read_text(encoding="utf-8")


def built(filename, names, mode="plain"):
    """The emulator build of tests/emulator_kernels/<filename> with instantiations ``names``."""
    return build.build(filename, tuple(names), mode, source=source(filename), headers=sources.read_headers())


@functools.lru_cache(maxsize=None)
def library(filename, names, mode="plain"):
    return runtime.Library(built(filename, names, mode))


def kernel(filename, names, name, mode="plain"):
    return library(filename, tuple(names), mode).kernels[name]


def limits():
    return device.EmulatorDevice().limits()


def dev(array):
    """A copy of ``array`` in (emulated) device memory."""
    out = np.empty(np.shape(array), dtype=np.asarray(array).dtype).view(runtime.DeviceArray)
    np.copyto(out, array)
    return out


def zeros(shape, dtype):
    return np.zeros(shape, dtype).view(runtime.DeviceArray)


def launch(k, grid, block, args, shared_mem=0):
    k.launch(grid, block, args, shared_mem, limits())


# ---------------------------------------------------------------------------------------------
# Sanitized child processes
# ---------------------------------------------------------------------------------------------
def real_interpreter():
    """The interpreter's ELF binary (LD_PRELOAD is lost through a pyenv shim, a shell script)."""
    path = os.path.realpath(sys.executable)
    with open(path, "rb") as f:
        if f.read(4) != b"\x7fELF":
            return None
    return path


def sanitizer_runtimes():
    cxx = build.compiler_path()
    if cxx is None:
        return None
    paths = []
    for name in ("libasan.so", "libubsan.so"):
        out = subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True, text=True, timeout=60)
        path = out.stdout.strip()
        if not os.path.isabs(path) or not os.path.exists(path):
            return None
        paths.append(path)
    return paths


def sanitized_unavailable():
    """None when sanitized children can run here, else why not."""
    if build.compiler_path() is None:
        return build.available()[1]
    if real_interpreter() is None:
        return f"{sys.executable} is not an ELF binary (a shim script would drop LD_PRELOAD)"
    if sanitizer_runtimes() is None:
        return "g++ does not know libasan.so / libubsan.so (install libasan8 and libubsan1)"
    return None


def sanitized_env():
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(sanitizer_runtimes() + ([env["LD_PRELOAD"]] if env.get("LD_PRELOAD") else []))
    env["ASAN_OPTIONS"] = ASAN_OPTIONS
    env["UBSAN_OPTIONS"] = UBSAN_OPTIONS
    env["GPUCONV_EMULATOR_CHECK"] = "asan"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(TESTS), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def run_sanitized(code, timeout=600):
    """Run ``code`` (Python; ``harness`` is importable) in a sanitized child: CompletedProcess."""
    return subprocess.run([real_interpreter(), "-c", textwrap.dedent(code)], env=sanitized_env(), cwd=str(REPO),
                          capture_output=True, text=True, timeout=timeout)

"""Run a Python command with the cuda-emulator's AddressSanitizer + UBSan build.

    python -m gpuconv.emulator.sanitized -m pytest tests/test_cuda_gpu_instantiations.py

A sanitized shared object needs the sanitizer runtimes loaded before anything else in the process,
so this re-executes the *real* interpreter (``sys.executable``: a pyenv shim is a shell script and
would lose LD_PRELOAD) with libasan and libubsan preloaded, ``GPUCONV_EMULATOR_CHECK=asan``, and
sanitizer options that stop at the first report (``halt_on_error``) without reporting the Python
interpreter's own leaks. Everything after the module name is handed to that interpreter.
"""
import os
import subprocess
import sys

from . import build

ASAN_OPTIONS = "detect_leaks=0:halt_on_error=1:abort_on_error=0:alloc_dealloc_mismatch=0:detect_odr_violation=0"
UBSAN_OPTIONS = "halt_on_error=1:print_stacktrace=1"


def runtime_library(cxx, name):
    out = subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True, text=True, timeout=60)
    path = out.stdout.strip()
    if not path or not os.path.isabs(path) or not os.path.exists(path):
        raise RuntimeError(f"{cxx} does not know where {name} is (got {path!r}); install the sanitizer runtimes "
                           "(Debian: libasan8 and libubsan1, part of g++)")
    return path


def environment(base=None):
    """The environment of a sanitized interpreter (LD_PRELOAD and the options)."""
    cxx = build.compiler_path()
    if cxx is None:
        raise RuntimeError(build.available()[1])
    env = dict(os.environ if base is None else base)
    preload = [runtime_library(cxx, "libasan.so"), runtime_library(cxx, "libubsan.so")]
    env["LD_PRELOAD"] = " ".join(preload + ([env["LD_PRELOAD"]] if env.get("LD_PRELOAD") else []))
    env["ASAN_OPTIONS"] = ASAN_OPTIONS
    env["UBSAN_OPTIONS"] = UBSAN_OPTIONS
    env["GPUCONV_EMULATOR_CHECK"] = "asan"
    return env


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    os.execve(sys.executable, [sys.executable, *args], environment())


if __name__ == "__main__":
    sys.exit(main())

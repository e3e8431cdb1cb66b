"""Compiling kernels/*.cu for the cuda-emulator: one shared object per (source file, check mode).

The translation unit is generated, never the kernel: the shim (``shim/gcemu.h``) is included
first, then the kernel source exactly as NVRTC gets it (``sources.read_source`` and every header
of ``sources.read_headers``, written to a private build folder), then the runtime
(``shim/gcemu_runtime.cpp``) and a table with one entry per registered instantiation, each
named by its name expression, as ``name_expressions`` names it for NVRTC.

Check modes (``MODES``): ``'plain'``; ``'asan'``, AddressSanitizer + UndefinedBehaviorSanitizer
with ``-fsanitize=alignment`` (x86 tolerates a misaligned float4 that faults on a GPU); and
``'race'``, the shared-memory race checker: ThreadSanitizer's instrumentation compiled in and
answered by the runtime's own hooks (no TSAN runtime). The optional ``fma`` flag contracts
``a*b+c`` into FMAs as nvcc does (``-ffp-contract=fast -mfma``).

Shared objects are cached like the cubins (``gpuconv/cuda/disk_cache.py``; folder
``GPUCONV_EMULATOR_CACHE_DIR``, default ``~/.cache/gpuconv/emulator``), keyed by the source, the
headers, the shim, the compiler's version and the flags.
"""
import dataclasses
import functools
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import threading

from ..cuda import disk_cache, sources
from ..errors import KernelCompileError

CACHE_ENV = "GPUCONV_EMULATOR_CACHE_DIR"
CXX_ENV = "GPUCONV_EMULATOR_CXX"
FORMAT = 2  # part of every cache key; 2: compiled and linked in two steps

SHIM_DIR = pathlib.Path(__file__).resolve().parent / "shim"
SHIM_FILES = ("gcemu.h", "gcemu_ptx.h", "gcemu_runtime.cpp")

_COMMON_FLAGS = (
    "-std=c++17", "-fPIC", "-shared", "-g1",
    "-fno-strict-aliasing",  # the kernels read float data through float4 / Vec<T, V> as CUDA allows
    "-fno-fast-math", "-fno-math-errno",
    # Template statics (the kernels' __shared__ variables) would be STB_GNU_UNIQUE, which the
    # dynamic linker binds process-wide despite RTLD_LOCAL: a second build of one kernel (another
    # check mode) would run on the first library's storage.
    "-fno-gnu-unique",
    "-Wno-unknown-pragmas", "-Wno-attributes",
)

MODES = {
    "plain": ("-O2", "-ffp-contract=off"),
    "asan": ("-O1", "-ffp-contract=off", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
             "-fsanitize=alignment", "-fno-sanitize-recover=all"),
    "race": ("-O1", "-ffp-contract=off", "-fsanitize=thread", "-DGCEMU_RACECHECK=1"),
}
FMA_FLAGS = ("-ffp-contract=fast", "-mfma")


def check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"Invalid value for argument `check`. Expected one of {tuple(MODES)}. Received: check={mode!r}")
    return mode


def flags_for(mode, fma=False):
    flags = _COMMON_FLAGS + MODES[check_mode(mode)]
    if fma:
        flags = tuple(f for f in flags if not f.startswith("-ffp-contract")) + FMA_FLAGS
    return flags


@functools.lru_cache(maxsize=None)
def compiler_path():
    """The host C++ compiler: $GPUCONV_EMULATOR_CXX, else g++ or c++ on PATH; None if there is none."""
    chosen = os.environ.get(CXX_ENV) or shutil.which("g++") or shutil.which("c++")
    return chosen or None


@functools.lru_cache(maxsize=None)
def compiler_version(path):
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    return out.stdout.splitlines()[0] if out.stdout else path


def available():
    """(ok, reason): whether kernels can be built for the emulator here."""
    path = compiler_path()
    if path is None:
        return False, "no C++ compiler (g++) on PATH; set GPUCONV_EMULATOR_CXX"
    try:
        return True, compiler_version(path)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"the C++ compiler {path!r} does not run ({e})"


def shim_sources():
    return {name: (SHIM_DIR / name).read_text(encoding="utf-8") for name in SHIM_FILES}


# ---------------------------------------------------------------------------------------------
# What the sources declare: launch bounds (checked at launch, as the driver does)
# ---------------------------------------------------------------------------------------------
_BOUNDS = re.compile(r"__global__\s+void\s+__launch_bounds__\s*\(([^)]*)\)\s*(\w+)\s*\(")


def launch_bounds(source):
    """{kernel template name: max threads per block} from ``__launch_bounds__(N, ...)``; a kernel
    whose bound is not an integer literal is refused (the emulator could not check it)."""
    bounds = {}
    for m in _BOUNDS.finditer(source):
        value, name = m.group(1).split(",")[0].strip(), m.group(2)
        if not value.isdigit():
            raise KernelCompileError(f"__launch_bounds__ of {name} is {value!r}: the cuda-emulator checks only "
                                     "integer literals", source_file=None, name_expression=name, options=(), log="")
        bounds[name] = int(value)
    return bounds


def template_of(name_expression):
    """'gc::conv_direct<float, 0, int, 0>' -> 'conv_direct' (the key of ``launch_bounds``)."""
    return name_expression.split("<", 1)[0].split("::")[-1].strip()


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------
def translation_unit(filename, names):
    entries = ",\n".join(f'    gcemu::Kernel<&{ne}>::entry("{ne}")' for ne in names)
    return (f'#include "gcemu.h"\n#include "{filename}"\n#include "gcemu_runtime.cpp"\n\n'
            f"const gcemu::KernelEntry gcemu_kernels[] = {{\n{entries}\n}};\n"
            f"const int gcemu_kernel_total = {len(names)};\n")


def _cache_key(filename, names, flags, cxx, source, headers):
    h = hashlib.sha256()
    h.update(repr((FORMAT, filename, tuple(names), tuple(flags), compiler_version(cxx))).encode())
    h.update(source.encode())
    for name, text in sorted(headers.items()):
        h.update(name.encode() + text.encode())
    for name, text in shim_sources().items():
        h.update(name.encode() + text.encode())
    return h.hexdigest()[:32]


def cache_dir():
    return disk_cache.root_from_env(CACHE_ENV, "emulator")


@dataclasses.dataclass(frozen=True)
class Built:
    path: pathlib.Path
    filename: str
    names: tuple
    mode: str
    bounds: dict  # template name -> max threads per block


stats = {"builds": 0, "disk_hits": 0}
_stats_lock = threading.Lock()


def _count(key):
    with _stats_lock:
        stats[key] += 1


def build(filename, names, mode="plain", fma=False, source=None, headers=None):
    """The shared object of ``filename``'s instantiations ``names`` (cached on disk).

    ``source`` / ``headers`` replace the package's text (tests build deliberately broken kernels
    this way); by default they are exactly what NVRTC compiles."""
    cxx = compiler_path()
    if cxx is None:
        raise KernelCompileError(f"cannot build kernels/{filename} for the cuda-emulator: {available()[1]}",
                                 source_file=filename, name_expression=", ".join(names), options=(), log="")
    names = tuple(names)
    flags = flags_for(mode, fma)
    source = sources.read_source(filename) if source is None else source
    headers = sources.read_headers() if headers is None else dict(headers)
    bounds = launch_bounds(source)
    key = _cache_key(filename, names, flags, cxx, source, headers)
    stem = f"{filename.replace('.', '_')}-{mode}{'-fma' if fma else ''}-{key}"
    root = cache_dir()
    hit = disk_cache.load(root, stem, ".so")
    if hit is not None and tuple(hit[1].get("names", ())) == names:
        _count("disk_hits")
        return Built(hit[0], filename, names, mode, bounds)
    payload = _compile(filename, names, flags, cxx, source, headers)
    path = disk_cache.store(root, stem, ".so", payload, {"names": list(names), "flags": list(flags)})
    _count("builds")
    return Built(path, filename, names, mode, bounds)


def _run_compiler(cmd, filename, names, flags):
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.SubprocessError) as e:
        raise KernelCompileError(f"the cuda-emulator could not run {cmd[0]} for kernels/{filename}: {e}",
                                 source_file=filename, name_expression=", ".join(names), options=flags, log="") from e
    if done.returncode != 0:
        raise KernelCompileError(
            f"{cmd[0]} failed to build kernels/{filename} for the cuda-emulator (instantiations: "
            f"{', '.join(names)}) with {' '.join(flags)}\n--- compiler log ---\n{done.stderr[-20000:]}",
            source_file=filename, name_expression=", ".join(names), options=flags, log=done.stderr,
        )


def _compile(filename, names, flags, cxx, source, headers):
    with tempfile.TemporaryDirectory(prefix="gpuconv-emu-") as tmp:
        folder = pathlib.Path(tmp)
        (folder / filename).write_text(source, encoding="utf-8")
        for name, text in headers.items():
            (folder / name).write_text(text, encoding="utf-8")
        for name, text in shim_sources().items():
            (folder / name).write_text(text, encoding="utf-8")
        tu = folder / "gcemu_tu.cpp"
        tu.write_text(translation_unit(filename, names), encoding="utf-8")
        obj, out = folder / "kernels.o", folder / "kernels.so"
        # Two steps: the race checker compiles ThreadSanitizer's instrumentation in but must not
        # link its runtime (the hooks are the runtime's own; libtsan cannot be dlopen'ed).
        link = [f for f in flags if f in ("-shared", "-fPIC") or (f.startswith("-fsanitize") and "thread" not in f)]
        compile_flags = [f for f in flags if f != "-shared"]
        for cmd in ([cxx, *compile_flags, "-c", "-I", str(folder), str(tu), "-o", str(obj)],
                    [cxx, *link, str(obj), "-o", str(out)]):
            _run_compiler(cmd, filename, names, flags)
        return out.read_bytes()

"""Reading, compiling and caching the CUDA sources in ``kernels/``.

API (the kernel modules of gpuconv.cuda code against exactly this):

``compile_options(arch=None) -> tuple``
    The one place compiler options live. With ``arch`` (an int such as 80 or 90, or a string
    such as ``'sm_90'``) the tuple ends with ``-arch=sm_XX``. ``python -m gpuconv.cuda.check``
    compiles with exactly these options (plus ``--ptxas-options=-v``).
``read_source(filename) -> str``
    A kernel source (``.cu`` or ``.cuh``) from the installed package ``gpuconv.kernels``
    (importlib.resources), falling back to the checkout's ``kernels/`` directory. Raises
    :class:`gpuconv.errors.KernelSourceNotFoundError` naming the resource and the package.
``register(filename, name_expressions)``
    Declares the instantiations of one ``.cu`` file that the runtime may request. Each kernel
    module calls it once at import; ``get_function`` refuses any other name, and the CI check
    compiles exactly the registered set, so what CI proves is what the runtime can ask for.
``registry() -> dict``
    ``{filename: tuple(name_expressions)}`` of everything registered so far.
``get_function(filename, name_expression) -> cupy.RawKernel``
    The kernel for the current device. The whole file is compiled once per
    (device, filename, options) with all its registered name expressions (one NVRTC call per
    file per device), exactly once even when many threads ask at the same time (the others
    wait and see the same result or the same exception). Failures are not cached.
``nvrtc_compile(filename, name_expressions, options) -> Compiled``
    One NVRTC run (what both the runtime and the check use): cubin bytes, lowered names, log.
``cuda_type(dtype) -> str``
    The C++ type a kernel template takes for a NumPy dtype (``'float'``, ``'gc::half'``, ``'double'``).
``index_ctype(width) -> str``
    ``'int'`` for ``'int32'``, ``'long long'`` for ``'int64'``.

Headers: sources may ``#include "common.cuh"`` (or any other ``.cuh`` of the package). Every
``.cuh`` of the package is handed to NVRTC as an in-memory header, so includes resolve the same
way from an installed wheel (even a zipped one), a source checkout, or plain NVRTC in CI. The
kernels include no CUDA toolkit header (see common.cuh), so no ``-I`` is needed at all.

Why NVRTC directly and not ``cupy.RawModule(code=...)``: RawModule appends ``-ftz=true`` and
its own arch flag, so the CI check could not compile what the runtime compiles. Here both go
through :func:`nvrtc_compile`; the cubin is written to a disk cache (``GPUCONV_CACHE_DIR``,
default ``~/.cache/gpuconv/kernels``; ``GPUCONV_CACHE_DIR=off`` keeps it in a temporary folder)
and loaded with ``cupy.RawModule(path=...)``, whose ``get_function`` returns a ``cupy.RawKernel``.
"""
import dataclasses
import hashlib
import os
import pathlib
import struct
import threading

import numpy as np

from ..errors import KernelCompileError, KernelSourceNotFoundError
from . import disk_cache

KERNEL_PACKAGE = "gpuconv.kernels"
CACHE_ENV = "GPUCONV_CACHE_DIR"
# Part of every disk-cache key. 2: cubins are written whole (complete_cubin); the one-byte-short
# files format 1 wrote are never read again.
CACHE_FORMAT = 2

# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------
# -ftz=false: NumPy and Keras keep float32 subnormals; CuPy's RawModule default (-ftz=true) would
#   flush them, so tiny activations (and their products with weights) would differ from the
#   oracle. Subnormal arithmetic is full speed on FMA units since sm_20 (no penalty).
# --prec-div/--prec-sqrt=true: IEEE-rounded division and sqrt (average pooling, activations).
# --fmad=true: a*b+c contracted to one FMA is more accurate than two roundings, and what every
#   reference GPU library does; the tolerance tests are written for it.
# -DGPUCONV_NVRTC=1: lets a source tell it is built by gpuconv (no toolkit headers available).
_BASE_OPTIONS = (
    "--std=c++17",
    "-ftz=false",
    "--prec-div=true",
    "--prec-sqrt=true",
    "--fmad=true",
    "-DGPUCONV_NVRTC=1",
)


def arch_option(arch):
    """``-arch=sm_XX`` (a cubin) from 80, '80' or 'sm_80'; ``-arch=compute_XX`` (PTX) from 'compute_80'."""
    text = str(arch)
    kind = "sm"
    for prefix in ("sm_", "compute_"):
        if text.startswith(prefix):
            kind = prefix[:-1]
            text = text[len(prefix):]
    if not text.isdigit():
        raise ValueError(f"Invalid value for argument `arch`. Expected e.g. 80, 'sm_90' or 'compute_90'. Received: arch={arch!r}")
    return f"-arch={kind}_{text}"


def emits_ptx(options):
    """Whether ``options`` ask NVRTC for PTX (a ``compute_XX`` target) instead of a cubin."""
    return any(o.startswith("-arch=compute_") for o in options)


def compile_options(arch=None):
    """The compiler options of every gpuconv kernel (see the comment above for each choice)."""
    if arch is None:
        return _BASE_OPTIONS
    return _BASE_OPTIONS + (arch_option(arch),)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------
def _checkout_kernels_dir():
    return pathlib.Path(__file__).resolve().parents[2] / "kernels"


def _package_root():
    """The Traversable of gpuconv.kernels, or None when not installed (a source checkout)."""
    import importlib.resources

    try:
        return importlib.resources.files(KERNEL_PACKAGE)
    except (ModuleNotFoundError, ImportError, TypeError):
        return None


def read_source(filename):
    """Text of ``kernels/<filename>`` from the installed package, else from the checkout."""
    root = _package_root()
    if root is not None:
        res = root.joinpath(filename)
        try:
            if res.is_file():
                return res.read_text(encoding="utf-8")
        except OSError:
            pass
    path = _checkout_kernels_dir() / filename
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise KernelSourceNotFoundError(
        f"CUDA kernel source {filename!r} was not found in the package {KERNEL_PACKAGE!r} "
        f"(nor in the checkout directory {str(path.parent)!r}); the installation is incomplete."
    )


def header_names():
    """Names of every ``.cuh`` the package ships (each may be included by any source)."""
    names = set()
    root = _package_root()
    if root is not None:
        try:
            names.update(r.name for r in root.iterdir() if r.name.endswith(".cuh"))
        except OSError:
            pass
    d = _checkout_kernels_dir()
    if d.is_dir():
        names.update(p.name for p in d.glob("*.cuh"))
    return tuple(sorted(names))


def read_headers():
    """``{name: text}`` of every header, handed to NVRTC as in-memory include files."""
    return {name: read_source(name) for name in header_names()}


# ---------------------------------------------------------------------------------------------
# Type names
# ---------------------------------------------------------------------------------------------
_CTYPES = {np.dtype("float32"): "float", np.dtype("float16"): "gc::half", np.dtype("float64"): "double"}
_INDEX_CTYPES = {"int32": "int", "int64": "long long"}


def cuda_type(dtype):
    dtype = np.dtype(dtype)
    try:
        return _CTYPES[dtype]
    except KeyError:
        raise TypeError(f"No CUDA kernel type for dtype {dtype}; float16, float32 and float64 are supported.") from None


def index_ctype(width):
    try:
        return _INDEX_CTYPES[width]
    except KeyError:
        raise ValueError(f"Invalid index width {width!r}; expected 'int32' or 'int64'.") from None


# ---------------------------------------------------------------------------------------------
# Registry: the instantiations the runtime may request (and CI compiles)
# ---------------------------------------------------------------------------------------------
_registry = {}
_registry_lock = threading.Lock()


def register(filename, name_expressions):
    """Declare instantiations of ``filename``. Idempotent; adding names to a file is allowed."""
    names = tuple(name_expressions)
    if not names:
        raise ValueError(f"register({filename!r}): expected at least one name expression.")
    with _registry_lock:
        known = list(_registry.get(filename, ()))
        known.extend(n for n in names if n not in known)
        _registry[filename] = tuple(known)


def registry():
    with _registry_lock:
        return dict(_registry)


def registered(filename):
    with _registry_lock:
        names = _registry.get(filename)
    if not names:
        raise KeyError(f"No instantiations of {filename!r} are registered; its module must call compiler.register().")
    return names


# ---------------------------------------------------------------------------------------------
# One NVRTC run
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Compiled:
    filename: str
    options: tuple
    cubin: bytes
    lowered: dict  # name expression -> mangled name
    log: str


# Counters tests read (a cold cache must compile each file once per device).
stats = {"nvrtc_compiles": 0, "disk_hits": 0}
_stats_lock = threading.Lock()


def _count(key, filename):
    with _stats_lock:
        stats[key] = stats.get(key, 0) + 1
        per_file = f"{key}:{filename}"
        stats[per_file] = stats.get(per_file, 0) + 1


def _compile_error(filename, name_expressions, options, log, cause):
    names = ", ".join(name_expressions)
    return KernelCompileError(
        f"NVRTC failed to compile kernels/{filename} (instantiations: {names}) with options "
        f"{' '.join(options)}: {cause}\n--- compiler log ---\n{log}",
        source_file=filename, name_expression=names, options=options, log=log,
    )


def nvrtc_compile(filename, name_expressions, options):
    """Compile ``kernels/<filename>`` with every name expression. Raises KernelCompileError."""
    from cupy.cuda import nvrtc

    source = read_source(filename)
    headers = read_headers()
    options = tuple(options)
    names = tuple(name_expressions)
    try:
        prog = nvrtc.createProgram(
            source, filename, [t.encode() for t in headers.values()], [n.encode() for n in headers]
        )
    except Exception as e:
        raise _compile_error(filename, names, options, "", e) from e
    try:
        for ne in names:
            nvrtc.addNameExpression(prog, ne)
        try:
            nvrtc.compileProgram(prog, list(options))
        except Exception as e:
            try:
                log = nvrtc.getProgramLog(prog)
            except Exception:
                log = ""
            raise _compile_error(filename, names, options, log, e) from e
        log = nvrtc.getProgramLog(prog)
        lowered = {ne: nvrtc.getLoweredName(prog, ne) for ne in names}
        # PTX (text) for a device newer than NVRTC knows: the driver JIT-compiles it at load.
        cubin = bytes(nvrtc.getPTX(prog)) if emits_ptx(options) else complete_cubin(nvrtc.getCUBIN(prog))
    finally:
        nvrtc.destroyProgram(prog)
    _count("nvrtc_compiles", filename)
    return Compiled(filename, options, bytes(cubin), lowered, log)


def complete_cubin(cubin):
    """``cubin`` with the bytes CuPy's ``nvrtc.getCUBIN`` cut off put back.

    CuPy strips a trailing NUL from every NVRTC buffer, as for PTX text; a cubin is binary and has
    no terminator, so its last real byte is lost (it is a zero: the high byte of the last
    program/section header's alignment or entry size). In memory nobody notices (a Python bytes
    object ends in a NUL), but the file written to the disk cache is one byte short of its ELF
    headers: nvdisasm rejects it as an invalid ELF and the driver's cuModuleLoad may do the same.
    The extent the ELF64 headers describe (header tables and every section with file contents) is
    restored with zeros; a complete cubin (a CuPy that stops stripping) is returned unchanged.
    """
    data = bytes(cubin)
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2:  # not ELF64: leave it alone
        return data
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    end = max(phoff + phnum * phentsize, shoff + shnum * shentsize)
    data += b"\0" * max(0, end - len(data))
    sht_nobits = 8  # sections with no bytes in the file (.bss, .nv.shared.*)
    for i in range(shnum):
        entry = shoff + i * shentsize
        (sh_type,) = struct.unpack_from("<I", data, entry + 4)
        sh_offset, sh_size = struct.unpack_from("<QQ", data, entry + 24)
        if sh_type != sht_nobits:
            end = max(end, sh_offset + sh_size)
    return data + b"\0" * max(0, end - len(data))


# ---------------------------------------------------------------------------------------------
# Disk cache of cubins (content-addressed, verified on load: disk_cache.py)
# ---------------------------------------------------------------------------------------------
def cache_dir():
    """Where cubins are kept: GPUCONV_CACHE_DIR, '~/.cache/gpuconv/kernels', or a temporary folder ('off')."""
    return disk_cache.root_from_env(CACHE_ENV, "kernels")


def _cache_key(filename, names, options):
    from cupy.cuda import nvrtc

    h = hashlib.sha256()
    h.update(repr((CACHE_FORMAT, filename, tuple(names), tuple(options), nvrtc.getVersion())).encode())
    h.update(read_source(filename).encode())
    for name, text in read_headers().items():
        h.update(name.encode())
        h.update(text.encode())
    return h.hexdigest()[:32]


def _cubin_on_disk(filename, names, options):
    """(cubin path, lowered names): from the disk cache, else compiled now and stored."""
    stem = f"{filename.replace('.', '_')}-{_cache_key(filename, names, options)}"
    suffix = ".ptx" if emits_ptx(options) else ".cubin"
    root = cache_dir()
    hit = disk_cache.load(root, stem, suffix)
    if hit is not None and tuple(hit[1].get("names", ())) == tuple(names) and isinstance(hit[1].get("lowered"), dict):
        _count("disk_hits", filename)
        return hit[0], hit[1]["lowered"]
    compiled = nvrtc_compile(filename, names, options)
    path = disk_cache.store(root, stem, suffix, compiled.cubin, {"names": list(names), "lowered": compiled.lowered})
    return path, compiled.lowered


# ---------------------------------------------------------------------------------------------
# Exactly-once, per-device module cache
# ---------------------------------------------------------------------------------------------
class _Once:
    """A slot filled by the first caller; later callers wait and share its result or error."""

    def __init__(self):
        self.done = threading.Event()
        self.value = None
        self.error = None


_modules = {}
_modules_lock = threading.Lock()


def once(key, build, table=None, lock=None):
    """``build()`` exactly once per ``key`` across threads; waiting threads share its result or
    its exception. A failure is removed from the table, so the next call builds again."""
    table = _modules if table is None else table
    lock = _modules_lock if lock is None else lock
    with lock:
        slot = table.get(key)
        owner = slot is None
        if owner:
            slot = table[key] = _Once()
    if owner:
        try:
            slot.value = build()
        except BaseException as e:
            slot.error = e
            with lock:
                if table.get(key) is slot:
                    del table[key]
            raise
        finally:
            slot.done.set()
        return slot.value
    slot.done.wait()
    if slot.error is not None:
        raise slot.error
    return slot.value


def device_arch(device=None):
    """The target to build for: the device's compute capability as a cubin target when NVRTC knows
    it or an older minor of its generation; PTX of NVRTC's newest architecture (``'compute_XX'``)
    for a device of a newer major generation than NVRTC knows (no cubin NVRTC can emit would load
    there, PTX is JIT-compiled by the driver)."""
    import cupy
    from cupy.cuda import nvrtc

    dev = device if device is not None else cupy.cuda.Device()
    return target_arch(int(dev.compute_capability), [int(a) for a in nvrtc.getSupportedArchs()])


def target_arch(cc, supported):
    """``device_arch``'s rule on plain numbers (unit-tested without a GPU)."""
    usable = [a for a in supported if a <= cc]
    if not usable:
        return cc
    best = max(usable)
    if cc // 10 > best // 10:
        return f"compute_{best}"
    return best


def current_device():
    """(device id, arch) of CuPy's current device (tests monkeypatch this to run without a GPU)."""
    import cupy

    dev = cupy.cuda.Device()
    return dev.id, device_arch(dev)


def kernels_from_cubin(path, lowered, names):
    """{name expression: cupy.RawKernel} loaded on the current device (tests replace this)."""
    import cupy

    module = cupy.RawModule(path=str(path))
    return {ne: module.get_function(lowered[ne]) for ne in names}


def load_module(filename, names, options):
    """{name expression: kernel} from the disk cache or a fresh NVRTC run (the CuPy device's loader)."""
    path, lowered = _cubin_on_disk(filename, names, options)
    return kernels_from_cubin(path, lowered, names)


def _kernels_for(filename):
    """Every registered kernel of ``filename`` on the active device, built exactly once per module key."""
    from . import device

    dev = device.active()
    names = registered(filename)
    return once(dev.module_key(filename, names), lambda: dev.load_kernels(filename, names))


def get_function(filename, name_expression):
    """The ``cupy.RawKernel`` of ``name_expression`` in ``kernels/<filename>`` on the current device."""
    names = registered(filename)
    if name_expression not in names:
        raise KeyError(
            f"{name_expression!r} is not a registered instantiation of {filename!r} "
            f"(registered: {', '.join(names)}); CI compiles only registered ones."
        )
    return _kernels_for(filename)[name_expression]


def clear_cache():
    """Forget loaded modules (tests use it to start from a cold cache)."""
    with _modules_lock:
        _modules.clear()

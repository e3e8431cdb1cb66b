"""Backend selection: 'auto' | 'cuda' | 'cuda-emulator' | 'numpy'.

``import gpuconv`` never touches CUDA: the choice is resolved on first use. 'auto' picks CUDA when
CuPy imports, a device answers and the CUDA engine loads, else NumPy, and logs one line saying
why. 'cuda' that cannot be honoured raises :class:`DeviceUnavailableError` with the probe's reason.
'cuda-emulator' runs the CUDA engine (host code and kernels) on the CPU (``gpuconv/emulator``);
'auto' never picks it (it is a development tool, far slower than the NumPy engine).
The environment variable ``GPUCONV_BACKEND`` sets the initial choice.
"""
import importlib
import logging
import os
import threading

import numpy as np

from .errors import DeviceUnavailableError

BACKENDS = ("auto", "cuda", "cuda-emulator", "numpy")
CUDA_ENGINE_BACKENDS = ("cuda", "cuda-emulator")  # backends that run gpuconv.cuda.engine
ENV_VAR = "GPUCONV_BACKEND"

logger = logging.getLogger("gpuconv")

_lock = threading.Lock()
_requested = None  # None: not set yet -> read ENV_VAR on first use
_resolved = None  # 'cuda' | 'numpy' once resolved
_reason = ""


def _check_name(name):
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"Invalid value for argument `backend`. Expected one of {BACKENDS}. Received: backend={name!r}")
    return name.lower()


DRIVER_LIBRARY = "libcuda.so.1"


def nvidia_driver_present():
    """(present, reason) without importing CuPy: the driver library loads and a device node
    exists. Importing CuPy and asking the runtime costs 1.5-2 s on a machine with CuPy but no
    driver; this answers in microseconds."""
    import ctypes
    import glob

    try:
        ctypes.CDLL(DRIVER_LIBRARY)
    except OSError:
        return False, f"no NVIDIA driver found ({DRIVER_LIBRARY} is not loadable)"
    if os.name == "posix" and os.path.isdir("/dev") and not glob.glob("/dev/nvidia*") and not glob.glob("/dev/dxg"):
        return False, "no NVIDIA driver found (no /dev/nvidia* device node)"
    return True, ""


def probe_cuda():
    """(available, reason). Checks for a driver, imports CuPy and the CUDA engine and asks the
    driver for devices.

    Kept separate (and monkeypatchable) so tests can simulate every outcome without a GPU.
    """
    present, why = nvidia_driver_present()
    if not present:
        return False, why
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install raising at import
        return False, f"CuPy is not importable ({type(e).__name__}: {e})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # cudaErrorNoDevice / InsufficientDriver surface as CUDARuntimeError
        return False, f"no CUDA device answered ({type(e).__name__}: {e})"
    if count < 1:
        return False, "the CUDA driver reports 0 devices"
    try:
        importlib.import_module("gpuconv.cuda.engine")
    except Exception as e:
        return False, f"the gpuconv CUDA engine failed to load ({type(e).__name__}: {e})"
    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    if isinstance(name, bytes):
        name = name.decode()
    return True, f"CuPy {cupy.__version__}, {count} device(s), using {name}"


def probe_emulator():
    """(available, reason) of the cuda-emulator: a host C++ compiler that runs."""
    from .emulator import available

    return available()


def _resolve(requested):
    if requested == "numpy":
        return "numpy", "requested explicitly"
    if requested == "cuda-emulator":
        ok, reason = probe_emulator()
        if not ok:
            raise DeviceUnavailableError(f"backend 'cuda-emulator' is unavailable: {reason}")
        return "cuda-emulator", f"CUDA kernels emulated on the CPU ({reason})"
    ok, reason = probe_cuda()
    if requested == "cuda":
        if not ok:
            raise DeviceUnavailableError(f"backend 'cuda' is unavailable: {reason}")
        return "cuda", reason
    if ok:
        logger.info("gpuconv: backend 'auto' -> cuda (%s)", reason)
        return "cuda", reason
    if reason.startswith("no NVIDIA driver found"):
        logger.warning("gpuconv: no NVIDIA driver found; using the NumPy engine")
    else:
        logger.warning("gpuconv: backend 'auto' -> numpy (%s)", reason)
    return "numpy", reason


def set_backend(name):
    """Select 'auto', 'cuda' or 'numpy'. 'cuda' is checked at once and raises if unavailable."""
    global _requested, _resolved, _reason
    name = _check_name(name)
    with _lock:
        if name in CUDA_ENGINE_BACKENDS:
            _resolved, _reason = _resolve(name)
            from .cuda import device as _device

            _device.use(name)
        else:
            _resolved, _reason = None, ""
        _requested = name


def requested_backend():
    global _requested
    if _requested is None:
        _requested = _check_name(os.environ.get(ENV_VAR, "auto"))
    return _requested


def get_backend():
    """The backend in force: 'cuda', 'cuda-emulator' or 'numpy' (resolving 'auto' on first call)."""
    global _resolved, _reason
    with _lock:
        if _resolved is None:
            _resolved, _reason = _resolve(requested_backend())
        return _resolved


def backend_info():
    """A dict describing the selection: requested, active, reason and library versions."""
    active = get_backend()
    info = {"requested": requested_backend(), "backend": active, "reason": _reason, "numpy": np.__version__}
    if active == "cuda-emulator":
        from .cuda import device as _device

        dev = _device.get("cuda-emulator")
        info.update(device="cuda-emulator (CUDA kernels on the CPU)", emulated=True,
                    compute_capability=dev.compute_capability, check=dev.check, fma_contraction=dev.fma)
    if active == "cuda":
        import cupy

        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info.update(
            cupy=cupy.__version__,
            device=name,
            device_id=dev.id,
            compute_capability=dev.compute_capability,
            driver_version=cupy.cuda.runtime.driverGetVersion(),
            runtime_version=cupy.cuda.runtime.runtimeGetVersion(),
        )
    return info


def engine():
    """The engine module of the active backend (``gpuconv.cpu`` or ``gpuconv.cuda.engine``).

    Both expose the same functions with the same signatures (see ``gpuconv/cpu/__init__.py``).
    'cuda' and 'cuda-emulator' share the CUDA engine; the device seam is pointed at the right one.
    """
    active = get_backend()
    if active in CUDA_ENGINE_BACKENDS:
        from .cuda import device as _device

        _device.use(active)
        return importlib.import_module("gpuconv.cuda.engine")
    return importlib.import_module("gpuconv.cpu.engine")


_named_engines = {}


def engine_named(name):
    """The engine of backend ``name`` for one call, without making it the global choice: the
    backend is probed once (as ``set_backend`` would, raising :class:`DeviceUnavailableError`
    with the reason when it cannot run) and the engine kept."""
    name = _check_name(name)
    engine = _named_engines.get(name)
    if engine is not None:
        return engine
    resolved, _ = _resolve(name)
    if resolved in CUDA_ENGINE_BACKENDS:
        from .cuda.engine import on_device

        engine = on_device(resolved)
    else:
        engine = importlib.import_module("gpuconv.cpu.engine")
    return _named_engines.setdefault(name, engine)


def reset():
    """Forget the selection (tests use this after monkeypatching the probe or ENV_VAR)."""
    global _requested, _resolved, _reason
    with _lock:
        _requested, _resolved, _reason = None, None, ""
        _named_engines.clear()

"""What the numbers were measured on: versions, CPU model, thread count, GPU and driver."""
import os
import platform
import sys

import numpy as np

from .. import _host_malloc
from .blas import CORETYPE_VAR, openblas_core


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_threads():
    """Threads the NumPy engine's BLAS uses: an explicit env setting, else the usable cores."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cuda_version_text(v):
    return f"{v // 1000}.{(v % 1000) // 10}"


def gpu_info():
    """Name, compute capability, L2, SMs, driver and runtime of the current CUDA device."""
    import cupy as cp

    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return {
        "gpu": name,
        "gpu_compute_capability": str(dev.compute_capability),
        "gpu_sms": int(props.get("multiProcessorCount", 0)),
        "gpu_l2_bytes": int(props.get("l2CacheSize", 0)),
        "gpu_memory_bytes": int(props.get("totalGlobalMem", 0)),
        "cuda_driver": _cuda_version_text(cp.cuda.runtime.driverGetVersion()),
        "cuda_runtime": _cuda_version_text(cp.cuda.runtime.runtimeGetVersion()),
        "cupy": cp.__version__,
    }


def collect(backend, torch_version=None):
    """A flat dict of strings and numbers (it goes into the JSON and into every CSV line)."""
    import gpuconv

    env = {
        "gpuconv": gpuconv.__version__,
        "backend": backend,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch_version or "",
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_threads": cpu_threads(),
        "openblas_core": openblas_core() or "",
        "openblas_coretype_env": os.environ.get(CORETYPE_VAR, ""),
        "host_malloc_tuning": _host_malloc.applied(),
        "argv": " ".join(sys.argv),
        "gpu": "",
        "gpu_compute_capability": "",
        "gpu_sms": 0,
        "gpu_l2_bytes": 0,
        "gpu_memory_bytes": 0,
        "cuda_driver": "",
        "cuda_runtime": "",
        "cupy": "",
    }
    if backend == "cuda":
        env.update(gpu_info())
    else:
        try:
            import cupy

            env["cupy"] = cupy.__version__
        except Exception:  # CuPy is optional on the CPU; its version is only informative
            pass
    return env

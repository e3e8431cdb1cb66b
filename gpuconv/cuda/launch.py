"""Launching kernels: grid sizing from device limits, argument marshalling, checked launches.

API (the kernel modules of gpuconv.cuda code against exactly this):

``launch(kernel, grid, block, args, shared_mem=0)``
    Runs ``kernel`` (from ``module_cache.get_function``) on the active device of the seam
    (``gpuconv/cuda/device.py``): CuPy's current stream, or the cuda-emulator. A grid with a zero dimension launches nothing (CUDA rejects it; an empty output has
    nothing to compute). With ``GPUCONV_DEBUG_SYNC=1`` it synchronises the stream after the
    launch and re-raises any CUDA error as :class:`KernelLaunchError` naming the kernel; launch
    errors raised at once (bad configuration) are always re-raised that way.
``device_limits(device=None) -> DeviceLimits``
    max_grid (x, y, z), max_block_threads, sm_count, max_shared_per_block(_optin); cached per device.
``grid_1d(n, block, limits=None, max_blocks=None) -> (gx, 1, 1)``
    ceil(n / block) blocks, capped at MaxGridDimX (and ``max_blocks``); the kernel must then
    grid-stride (``gc::grid_start_x`` / ``gc::grid_step_x`` in common.cuh).
``grid_nd(counts, limits=None) -> (gx, gy, gz)``
    Each of up to three block counts capped at its MaxGridDim; kernels grid-stride on any axis
    whose count may exceed the cap (e.g. batch x channels > 65535 on y).
``index_scalar(value, width)``, ``int32_scalar(value)``, ``acc_scalar(value, dtype)``
    NumPy scalars of the exact C++ parameter types: np.int32/np.int64 per index width (with an
    overflow check), np.float32 for float16/float32 kernels (they accumulate in float), np.float64
    for float64.
"""
import dataclasses
import os
import threading

import numpy as np

DEBUG_SYNC_ENV = "GPUCONV_DEBUG_SYNC"


class KernelLaunchError(RuntimeError):
    """A kernel failed to launch or to run; the message names the kernel."""


# ---------------------------------------------------------------------------------------------
# Device limits
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DeviceLimits:
    max_grid: tuple  # (x, y, z)
    max_block_threads: int
    sm_count: int
    max_shared_per_block: int
    max_shared_per_block_optin: int

    @classmethod
    def from_attributes(cls, attrs):
        """Build from CuPy's ``Device.attributes`` dict (tests pass fake dicts)."""
        return cls(
            max_grid=(int(attrs["MaxGridDimX"]), int(attrs["MaxGridDimY"]), int(attrs["MaxGridDimZ"])),
            max_block_threads=int(attrs.get("MaxThreadsPerBlock", 1024)),
            sm_count=int(attrs.get("MultiProcessorCount", 1)),
            max_shared_per_block=int(attrs.get("MaxSharedMemoryPerBlock", 48 * 1024)),
            max_shared_per_block_optin=int(
                attrs.get("MaxSharedMemoryPerBlockOptin", attrs.get("MaxSharedMemoryPerBlock", 48 * 1024))
            ),
        )


_limits = {}
_limits_lock = threading.Lock()


def device_limits(device=None):
    """Limits of ``device`` (a ``cupy.cuda.Device``) or, by default, of the active device of the seam."""
    if device is None:
        from . import device as _device

        return _device.active().limits()
    return cupy_device_limits(device)


def cupy_device_limits(device=None):
    import cupy

    dev = device if device is not None else cupy.cuda.Device()
    with _limits_lock:
        lim = _limits.get(dev.id)
        if lim is None:
            lim = _limits[dev.id] = DeviceLimits.from_attributes(dev.attributes)
    return lim


def _limits_or_device(limits):
    return limits if limits is not None else device_limits()


def _check_count(name, value):
    if int(value) != value or value < 0:
        raise ValueError(f"Invalid value for argument `{name}`: expected a non-negative int. Received: {name}={value!r}")
    return int(value)


def grid_1d(n, block, limits=None, max_blocks=None):
    n, block = _check_count("n", n), _check_count("block", block)
    if block == 0:
        raise ValueError("Invalid value for argument `block`: expected a positive int. Received: block=0")
    if n == 0:
        return (0, 1, 1)
    lim = _limits_or_device(limits)
    blocks = min(-(-n // block), lim.max_grid[0])
    if max_blocks is not None:
        blocks = min(blocks, max(int(max_blocks), 1))
    return (blocks, 1, 1)


def grid_nd(counts, limits=None):
    counts = tuple(_check_count("counts", c) for c in counts)
    if not 1 <= len(counts) <= 3:
        raise ValueError(f"grid_nd expects 1 to 3 block counts; received {counts}")
    counts = counts + (1,) * (3 - len(counts))
    if 0 in counts:
        return (0, 0, 0)
    lim = _limits_or_device(limits)
    return tuple(min(c, m) for c, m in zip(counts, lim.max_grid))


def waves(blocks, blocks_per_sm, limits=None):
    """How many full-device waves ``blocks`` CTAs make (wave quantisation diagnostics)."""
    lim = _limits_or_device(limits)
    return blocks / float(max(lim.sm_count * blocks_per_sm, 1))


# ---------------------------------------------------------------------------------------------
# Argument marshalling
# ---------------------------------------------------------------------------------------------
_INDEX_RANGES = {"int32": (np.int32, -(2**31), 2**31 - 1), "int64": (np.int64, -(2**63), 2**63 - 1)}


def index_scalar(value, width):
    """``value`` as the kernel's Index type; OverflowError if it does not fit (a selector bug)."""
    try:
        ctype, lo, hi = _INDEX_RANGES[width]
    except KeyError:
        raise ValueError(f"Invalid index width {width!r}; expected 'int32' or 'int64'.") from None
    value = int(value)
    if not lo <= value <= hi:
        raise OverflowError(f"{value} does not fit the {width} index type of this launch")
    return ctype(value)


def int32_scalar(value):
    return index_scalar(value, "int32")


def acc_scalar(value, dtype):
    """A float argument in the kernel's accumulation type (float for half and float, double for double)."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return np.float64(value)
    if dtype in (np.float32, np.float16):
        return np.float32(value)
    raise TypeError(f"No accumulation type for dtype {dtype}")


def optional_pointer(array):
    """A kernel pointer argument that may be null (bias): the array, or a null pointer."""
    if array is None:
        return np.uintp(0)
    return array


# ---------------------------------------------------------------------------------------------
# Launching
# ---------------------------------------------------------------------------------------------
def debug_sync_enabled():
    return os.environ.get(DEBUG_SYNC_ENV, "") not in ("", "0")


def kernel_name(kernel):
    return getattr(kernel, "name", None) or getattr(kernel, "__name__", None) or repr(kernel)


def launch(kernel, grid, block, args, shared_mem=0):
    """Launch on the active device's current stream (see the module docstring)."""
    from . import device as _device

    grid = tuple(int(g) for g in grid)
    block = tuple(int(b) for b in block)
    if any(g == 0 for g in grid) or any(b == 0 for b in block):
        return
    dev = _device.active()
    dev.launch(kernel, grid, block, tuple(args), int(shared_mem))
    if debug_sync_enabled():
        try:
            dev.synchronize()
        except KernelLaunchError as e:
            raise KernelLaunchError(f"{kernel_name(kernel)} (grid={grid} block={block}) failed while running: {e}") from e

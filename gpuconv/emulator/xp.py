"""A CuPy-like array module over the cuda-emulator's device arrays (tests and user code).

    from gpuconv.emulator import xp as cupy      # where ``import cupy`` would be on a GPU
    x = cupy.asarray(host)                        # a DeviceArray in the emulated device's memory
    y = gpuconv.cuda.engine.conv(x, ...)          # runs the real kernels on the CPU
    cupy.asnumpy(y)

What CuPy code needs to run unchanged on the emulator:

- ``ndarray`` is :class:`gpuconv.emulator.runtime.DeviceArray`; ``asarray``, ``array``,
  ``ascontiguousarray``, ``asfortranarray``, ``empty``/``zeros``/``ones``/``full`` (and their
  ``*_like``), ``arange`` allocate through the emulated device (``EmulatorDevice``), so the memory
  pool below counts them and its limit applies; ``asnumpy`` returns a host NumPy copy.
- ``broadcast_to``, ``array_equal``, ``isnan``, ... and every other NumPy name through the module's
  ``__getattr__``: a NumPy function whose arguments hold a device array returns a device array
  where NumPy would have returned a plain ndarray (views keep sharing memory).
- ``get_default_memory_pool()``: ``set_limit(size=)`` (0 or None: no limit), ``get_limit()``,
  ``used_bytes()``, ``total_bytes()``, ``free_all_blocks()``, backed by
  ``EmulatorDevice.set_memory_limit`` / ``bytes_in_use``.
- ``cuda``: ``Stream(non_blocking=...)`` (a context manager; the emulator has one stream and every
  launch completes before it returns, so a stream only synchronises trivially), ``Device()`` with
  id 0 (another id raises, as on a one-GPU machine), ``runtime.getDeviceCount()`` == 1,
  ``get_current_stream()``, ``Device().synchronize()``.

What it is not: a CuPy reimplementation. Elementwise and reduction functions run NumPy on the host
memory that stands in for device memory; only the kernels in ``kernels/*.cu`` are emulated.
"""
import functools
import threading

import numpy as np

from .runtime import DeviceArray

ndarray = DeviceArray


def _device():
    from ..cuda import device

    return device.get("cuda-emulator")


def _shape(shape):
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


# ---------------------------------------------------------------------------------------------
# Creating and moving arrays
# ---------------------------------------------------------------------------------------------
def empty(shape, dtype=float, order="C"):
    if order not in ("C", "F", None):
        raise ValueError(f"order must be 'C' or 'F'. Received: order={order!r}")
    shape = _shape(shape)
    if order == "F":
        return _device().empty(shape[::-1], dtype).T
    return _device().empty(shape, dtype)


def zeros(shape, dtype=float, order="C"):
    out = empty(shape, dtype, order)
    out.fill(0)
    return out


def ones(shape, dtype=float, order="C"):
    out = empty(shape, dtype, order)
    out.fill(1)
    return out


def full(shape, fill_value, dtype=None, order="C"):
    dtype = np.asarray(fill_value).dtype if dtype is None else dtype
    out = empty(shape, dtype, order)
    out.fill(fill_value)
    return out


def _like_dtype(a, dtype):
    return np.asarray(a).dtype if dtype is None else dtype


def empty_like(a, dtype=None, shape=None):
    return empty(np.shape(a) if shape is None else shape, _like_dtype(a, dtype))


def zeros_like(a, dtype=None, shape=None):
    return zeros(np.shape(a) if shape is None else shape, _like_dtype(a, dtype))


def ones_like(a, dtype=None, shape=None):
    return ones(np.shape(a) if shape is None else shape, _like_dtype(a, dtype))


def full_like(a, fill_value, dtype=None, shape=None):
    return full(np.shape(a) if shape is None else shape, fill_value, _like_dtype(a, dtype))


def _host(a, dtype=None):
    """``a`` as an ndarray (no copy where possible) viewing the same memory as a device array."""
    if isinstance(a, DeviceArray):
        a = a.view(np.ndarray)
    return np.asarray(a, dtype=dtype)


def _to_device(host, order="C"):
    out = empty(host.shape, host.dtype, order)
    np.copyto(out, host)
    return out


def asarray(a, dtype=None, order=None):
    """A device array (no copy for a device array of that dtype, as CuPy, strided views included)."""
    if isinstance(a, DeviceArray) and (dtype is None or np.dtype(dtype) == a.dtype) and order is None:
        return a
    host = _host(a, dtype)
    if order == "F":
        return _to_device(host, "F")
    return _device().contiguous(host)


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    host = np.array(_host(obj), dtype=dtype, copy=True, order=order, ndmin=ndmin)
    if not copy and isinstance(obj, DeviceArray) and host.dtype == obj.dtype and host.shape == obj.shape:
        return obj
    return _to_device(host, "F" if host.flags.f_contiguous and not host.flags.c_contiguous else "C")


def ascontiguousarray(a, dtype=None):
    if isinstance(a, DeviceArray) and a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    return _to_device(_host(a, dtype), "C")


def asfortranarray(a, dtype=None):
    if isinstance(a, DeviceArray) and a.flags.f_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    return _to_device(_host(a, dtype), "F")


def asnumpy(a, stream=None, order="C", out=None):
    """A host NumPy copy (a NumPy input is returned as an ndarray, as cupy.asnumpy does)."""
    host = np.array(_host(a), copy=True, order=order)
    if out is not None:
        np.copyto(out, host)
        return out
    return host


def arange(start, stop=None, step=1, dtype=None):
    host = np.arange(start, stop, step, dtype=dtype) if stop is not None else np.arange(start, step=step, dtype=dtype)
    return _device().contiguous(host)


def get_array_module(*args):
    """This module when any argument is a device array, else numpy (cupy.get_array_module)."""
    import sys

    return sys.modules[__name__] if any(isinstance(a, DeviceArray) for a in args) else np


# ---------------------------------------------------------------------------------------------
# A few NumPy functions named explicitly (the rest come through __getattr__)
# ---------------------------------------------------------------------------------------------
def broadcast_to(array, shape):
    """A read-only broadcast view; a device array's view stays a device array."""
    return np.broadcast_to(array, shape, subok=isinstance(array, DeviceArray))


def array_equal(a1, a2, equal_nan=False):
    """Whether shapes and elements are equal, as a Python bool (CuPy returns a 0-d array; both are
    truthy the same way)."""
    return bool(np.array_equal(_host(a1), _host(a2), equal_nan=equal_nan))


isnan = np.isnan
isinf = np.isinf
isfinite = np.isfinite


# ---------------------------------------------------------------------------------------------
# Everything else: NumPy, keeping device arrays device arrays
# ---------------------------------------------------------------------------------------------
def _holds_device_array(values):
    for v in values:
        if isinstance(v, DeviceArray):
            return True
        if isinstance(v, (list, tuple)) and _holds_device_array(v):
            return True
    return False


def _keep_device(result):
    if type(result) is np.ndarray:
        return result.view(DeviceArray)
    if isinstance(result, tuple):
        return tuple(_keep_device(r) for r in result)
    if isinstance(result, list):
        return [_keep_device(r) for r in result]
    return result


def _wrap(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        if _holds_device_array(args) or _holds_device_array(kwargs.values()):
            return _keep_device(result)
        return result

    return wrapper


_wrapped = {}


def __getattr__(name):
    try:
        value = getattr(np, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} (the cuda-emulator's CuPy stand-in) has no attribute {name!r}") from None
    if callable(value) and not isinstance(value, (type, np.ufunc)):
        wrapped = _wrapped.get(name)
        if wrapped is None:
            wrapped = _wrapped[name] = _wrap(value)
        return wrapped
    return value  # dtypes, constants, ufuncs (which keep subclasses by themselves), submodules


# ---------------------------------------------------------------------------------------------
# The memory pool
# ---------------------------------------------------------------------------------------------
class MemoryPool:
    """CuPy's ``MemoryPool`` interface over the emulated device's byte count and limit. The
    emulator frees an array's bytes when the array is garbage collected, so nothing is cached:
    ``free_all_blocks`` has nothing to return and ``total_bytes() == used_bytes()``."""

    def __init__(self):
        self._limit = 0

    def used_bytes(self):
        return _device().bytes_in_use

    def total_bytes(self):
        return self.used_bytes()

    def free_bytes(self):
        return 0

    def n_free_blocks(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def set_limit(self, size=None, fraction=None):
        """Cap the device's bytes in arrays; ``size=0`` (CuPy's default) lifts the cap."""
        if fraction is not None:
            raise ValueError("the cuda-emulator has no device memory size: set_limit(fraction=) is not supported; "
                             "use set_limit(size=)")
        self._limit = int(size or 0)
        _device().set_memory_limit(self._limit or None)

    def get_limit(self):
        return self._limit


_pool = MemoryPool()


def get_default_memory_pool():
    return _pool


# ---------------------------------------------------------------------------------------------
# cupy.cuda
# ---------------------------------------------------------------------------------------------
class _CudaNamespace:
    pass


class CUDARuntimeError(RuntimeError):
    """What CuPy raises for an invalid device ordinal and other runtime errors."""


class Stream:
    """A stream of the emulated device. Launches run to completion when issued, in order, so
    every stream is synchronised at all times; the context manager makes it the current one."""

    _local = threading.local()

    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.null, self.non_blocking, self.ptds = bool(null), bool(non_blocking), bool(ptds)
        self._previous = []

    def synchronize(self):
        pass

    def use(self):
        Stream._local.current = self
        return self

    def done(self):
        return True

    def __enter__(self):
        self._previous.append(getattr(Stream._local, "current", None))
        Stream._local.current = self
        return self

    def __exit__(self, *exc):
        Stream._local.current = self._previous.pop()
        return False


_null_stream = Stream(null=True)


def get_current_stream():
    return getattr(Stream._local, "current", None) or _null_stream


class Device:
    """The one emulated GPU: id 0, compute capability of ``EmulatorDevice``."""

    def __init__(self, device=None):
        device = 0 if device is None else int(device)
        if device != 0:
            raise CUDARuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {device} "
                                   "(the cuda-emulator has one device, 0)")
        self.id = device

    @property
    def compute_capability(self):
        return _device().compute_capability

    def synchronize(self):
        _device().synchronize()

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)


class _Runtime:
    CUDARuntimeError = CUDARuntimeError

    @staticmethod
    def getDeviceCount():
        return 1

    @staticmethod
    def deviceSynchronize():
        _device().synchronize()


cuda = _CudaNamespace()
cuda.Stream = Stream
cuda.Device = Device
cuda.get_current_stream = get_current_stream
cuda.runtime = _Runtime()
cuda.CUDARuntimeError = CUDARuntimeError


__all__ = [
    "ndarray", "empty", "zeros", "ones", "full", "empty_like", "zeros_like", "ones_like", "full_like", "asarray",
    "array", "ascontiguousarray", "asfortranarray", "asnumpy", "arange", "get_array_module", "broadcast_to",
    "array_equal", "isnan", "isinf", "isfinite", "get_default_memory_pool", "MemoryPool", "cuda",
]

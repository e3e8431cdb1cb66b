"""The cuda-emulator's implementation of the device seam (``gpuconv/cuda/device.py``).

Device memory is host memory, typed :class:`~gpuconv.emulator.runtime.DeviceArray` so that a
kernel can tell a device array from a host one; launches are synchronous. The device describes
itself as a small Hopper-class GPU: compute capability 9.0, the launch limits of CUDA, 48 KB of
shared memory per block (227 KB with the opt-in) and ``GPUCONV_EMULATOR_SMS`` multiprocessors
(default 2): the host code sizes persistent grids from that, and a small grid keeps an emulated
launch short while still running more than one block.
"""
import os
import threading
import weakref

import numpy as np

from ..cuda import registry
from ..cuda.launch import DeviceLimits
from . import build, runtime

SMS_ENV = "GPUCONV_EMULATOR_SMS"
CHECK_ENV = "GPUCONV_EMULATOR_CHECK"
FMA_ENV = "GPUCONV_EMULATOR_FMA"
COMPUTE_CAPABILITY = 90


class OutOfDeviceMemoryError(MemoryError):
    """An allocation past the emulated device's memory limit (``set_memory_limit``)."""


def _env_int(name, default, lo, hi):
    text = os.environ.get(name, "")
    if text == "":
        return default
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise ValueError(f"Invalid value for {name}: expected an integer from {lo} to {hi}. Received: {text!r}")
    return int(text)


class EmulatorDevice:
    name = "cuda-emulator"

    def __init__(self, check=None, fma=None):
        self.check = build.check_mode(check if check is not None else (os.environ.get(CHECK_ENV) or "plain"))
        self.fma = bool(fma) if fma is not None else os.environ.get(FMA_ENV, "") not in ("", "0")
        self._limit = None
        self._in_use = 0
        self._lock = threading.Lock()

    # -- kernels -----------------------------------------------------------------------------
    def module_key(self, filename, names):
        return ("cuda-emulator", self.check, self.fma, filename, tuple(names))

    def compile_unit(self, filename, name_expression):
        # The host compiler's cost is mostly per file (parsing the runtime and the headers), and
        # one shared object per file keeps the emulated suite's build count small.
        return registry.registered(filename)

    def load_kernels(self, filename, names):
        library = runtime.Library(build.build(filename, names, self.check, self.fma))
        return {name: library.kernels[name] for name in names}

    def limits(self):
        return DeviceLimits(max_grid=(2**31 - 1, 65535, 65535), max_block_threads=1024,
                            sm_count=_env_int(SMS_ENV, 2, 1, 1024), max_shared_per_block=48 * 1024,
                            max_shared_per_block_optin=227 * 1024)

    @property
    def compute_capability(self):
        return str(COMPUTE_CAPABILITY)

    def launch(self, kernel, grid, block, args, shared_mem):
        kernel.launch(grid, block, args, shared_mem, self.limits())

    def synchronize(self):
        pass  # launches complete (or raise) before they return

    # -- memory ------------------------------------------------------------------------------
    def _allocate(self, shape, dtype):
        nbytes = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
        with self._lock:
            if self._limit is not None and self._in_use + nbytes > self._limit:
                raise OutOfDeviceMemoryError(
                    f"Out of memory allocating {nbytes:,} bytes on the cuda-emulator "
                    f"(limit {self._limit:,} bytes, {self._in_use:,} in use)")
            self._in_use += nbytes
        array = np.empty(shape, dtype=dtype).view(runtime.DeviceArray)
        weakref.finalize(array, self._release, nbytes)
        return array

    def _release(self, nbytes):
        with self._lock:
            self._in_use -= nbytes

    def empty(self, shape, dtype):
        return self._allocate(tuple(int(s) for s in shape), dtype)

    def contiguous(self, array):
        if isinstance(array, runtime.DeviceArray) and array.flags.c_contiguous:
            return array
        host = np.asarray(array)
        out = self._allocate(host.shape, host.dtype)
        np.copyto(out, host)
        return out

    def is_device_array(self, array):
        return isinstance(array, runtime.DeviceArray)

    def to_host(self, array):
        return np.array(array.view(np.ndarray), copy=True)

    def pointer(self, array):
        return int(array.ctypes.data)

    def transpose(self, array, axes):
        return np.transpose(array, axes)

    def view(self, array, index):
        return array[tuple(index)]

    def set_memory_limit(self, nbytes):
        with self._lock:
            self._limit = None if nbytes is None else int(nbytes)

    @property
    def bytes_in_use(self):
        with self._lock:
            return self._in_use

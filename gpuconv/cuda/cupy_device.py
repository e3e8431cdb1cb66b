"""The CuPy implementation of the device seam (``gpuconv/cuda/device.py``): a real NVIDIA GPU.

Kernels come from NVRTC through ``module_cache`` (cubins on disk, loaded with
``cupy.RawModule``), built for the architecture of CuPy's current device; arrays are CuPy arrays
on that device; launches go to CuPy's current stream.
"""
import numpy as np

from . import module_cache, options


def current_device():
    """(device id, arch) of CuPy's current device (tests monkeypatch this to run without a GPU)."""
    import cupy

    dev = cupy.cuda.Device()
    return dev.id, options.device_arch(dev)


class CupyDevice:
    name = "cuda"

    def module_key(self, filename, names):
        dev_id, arch = current_device()
        return ("cuda", dev_id, filename, options.compile_options(arch), tuple(names))

    def compile_unit(self, filename, name_expression):
        # One NVRTC program per instantiation: the first call of a layer pays for its kernel only.
        return (name_expression,)

    def load_kernels(self, filename, names):
        _, arch = current_device()
        return module_cache.load_module(filename, names, options.compile_options(arch))

    def limits(self):
        from . import launch

        return launch.cupy_device_limits()

    def launch(self, kernel, grid, block, args, shared_mem):
        import cupy

        from .launch import KernelLaunchError, kernel_name

        try:
            kernel(grid, block, tuple(args), shared_mem=int(shared_mem))
        except (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError) as e:
            raise KernelLaunchError(
                f"launching {kernel_name(kernel)} with grid={grid} block={block} shared_mem={shared_mem} failed: {e}"
            ) from e

    def synchronize(self):
        import cupy

        from .launch import KernelLaunchError

        try:
            cupy.cuda.get_current_stream().synchronize()
        except (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError) as e:
            raise KernelLaunchError(f"a kernel failed while running: {e}") from e

    def empty(self, shape, dtype):
        import cupy

        return cupy.empty(tuple(int(s) for s in shape), dtype=dtype)

    def contiguous(self, array):
        """Refuses a CuPy array of another GPU (DeviceMismatchError) instead of copying across."""
        import cupy

        from ..errors import DeviceMismatchError

        if isinstance(array, cupy.ndarray):
            current = cupy.cuda.Device().id
            if array.device.id != current:
                raise DeviceMismatchError(
                    f"Array is on GPU {array.device.id} but the current device is GPU {current}; "
                    f"move it with cupy.asarray under `with cupy.cuda.Device({current}):` first."
                )
            return array if array.flags.c_contiguous else cupy.ascontiguousarray(array)
        return cupy.asarray(np.ascontiguousarray(np.asarray(array)))

    def is_device_array(self, array):
        import cupy

        return isinstance(array, cupy.ndarray)

    def to_host(self, array):
        return array.get()

    def pointer(self, array):
        return int(array.data.ptr)

    def transpose(self, array, axes):
        import cupy

        return cupy.transpose(array, axes)

    def view(self, array, index):
        return array[tuple(index)]

    def set_memory_limit(self, nbytes):
        import cupy

        cupy.get_default_memory_pool().set_limit(size=0 if nbytes is None else int(nbytes))

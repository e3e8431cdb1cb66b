"""Host-side helpers shared by the memory-bound op modules (depthwise, separable, pooling,
upsample, locally connected): the 5-D view, the channel-vector width, the activation code the
kernels' epilogues fuse (every fused activation, every dtype: gc::activate_inline in common.cuh),
and grid sizing for persistent kernels.

Pure functions (no CUDA needed) are unit-tested in tests/test_cuda_memory_bound_dispatch.py.
"""
import numpy as np

from .. import geometry as g
from .epilogue import activation_code
from .indexing import index_type
from .tensors import INDEX_WIDTHS, KERNEL_DTYPES, as3d

VECTOR_BYTES = 16  # one 128-bit load/store
THREADS = 256  # block size of every memory-bound kernel (their __launch_bounds__)
SMEM_BUDGET = 48 * 1024  # static per-block limit: no opt-in attribute needed on any device


def view5(shape, channels_last):
    """``(N, C, (D, H, W))`` of an (N, *spatial, C) / (N, C, *spatial) shape; missing leading
    spatial dims are 1 (the kernels are rank-uniform 3-D)."""
    shape = tuple(int(s) for s in shape)
    spatial = shape[1:-1] if channels_last else shape[2:]
    channels = shape[-1] if channels_last else shape[1]
    return shape[0], channels, as3d(spatial, 1)


def pads3d(padding):
    """The ``before`` padding of each dim, padded in front to 3 dims. Only ``before`` reaches a
    kernel: the output extent (from geometry.py) bounds the window, the ``after`` cells are the
    zeros beyond the input's end."""
    return as3d([int(p[0]) for p in padding], 0)


def make_shape(n, channels, spatial, channels_last):
    """geometry.make_shape for the engines' boolean layout flag."""
    return g.make_shape(n, channels, spatial, "channels_last" if channels_last else "channels_first")


def full_vector_width(dtype):
    """Elements of ``dtype`` in one 16-byte vector (float32: 4, float16: 8, float64: 2)."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def vector_width(dtype, channels, channels_last, pointers=()):
    """V for a launch: the full 16-byte width when the tensor is channels_last, the channel count
    is a multiple of it and every base pointer is 16-byte aligned; else 1 (scalar accesses).
    channels_first vectorises nothing along channels (its kernels coalesce along W instead)."""
    if not channels_last:
        return 1
    v = full_vector_width(dtype)
    if channels % v or any(int(p) % VECTOR_BYTES for p in pointers):
        return 1
    return v


def vector_widths(dtype):
    """The V values instantiated for ``dtype``: scalar and full-vector."""
    return (1, full_vector_width(dtype))


def mode_instantiations(kernel_name, modes):
    """``kernel_name(dtype, width, vec, mode)`` for every dtype, index width, vector width and mode
    (the ``template<T, Index, V, MODE>`` instantiations of pooling.cu and upsample.cu)."""
    return [kernel_name(dt, w, v, m) for dt in KERNEL_DTYPES for w in INDEX_WIDTHS for v in vector_widths(dt)
            for m in modes]


def index_width(*arrays_or_shapes, dtype):
    return index_type(*arrays_or_shapes, itemsize=np.dtype(dtype).itemsize)


def kernel_activation(activation):
    """The ``act`` argument of a depthwise / separable / locally connected kernel: the epilogue
    applies every fused activation in registers (0 = linear)."""
    return int32(activation_code(activation))


def persistent_grid(work_items, threads=THREADS, limits=None, blocks_per_sm=None):
    """Blocks for a grid-stride / persistent kernel: at most enough to fill the device a few
    times over, at least one, never more than there is work."""
    from . import launch

    lim = limits if limits is not None else launch.device_limits()
    per_sm = blocks_per_sm if blocks_per_sm is not None else max(1, 2048 // int(threads))
    return (max(1, min(int(work_items), lim.sm_count * per_sm, lim.max_grid[0])), 1, 1)


def pointer(a):
    from . import device

    return device.active().pointer(a)


def int32(value):
    from . import launch

    return launch.int32_scalar(value)

"""The input gradient of UpSampling on the GPU (engine contract ``upsample_backward``),
kernels/upsample_backward.cu: the exact adjoint of kernels/upsample.cu (nearest sums each size
block; bilinear / trilinear return each output's gradient to the cells it read, with the
forward's weights and edge clamp), as a deterministic gather over the input cells.
"""
import numpy as np

from . import module_cache, registry, tensors, upsampling
from . import memory_bound as mb
from .indexing import index_type
from .pooling_backward import check_shape

FILE = "upsample_backward.cu"


def kernel_name(dtype, width, vec, interpolation):
    return registry.template_name("gc::upsample_backward", dtype, width, vec, upsampling.MODES[interpolation])


def instantiations():
    return mb.mode_instantiations(kernel_name, upsampling.MODES)


registry.register(FILE, instantiations())


def plan_upsample_backward(x_shape, size, interpolation, dtype, channels_last, pointers=(), index=None):
    """(instantiation name, vector width, index width); no CUDA needed. The forward's rule
    (``upsampling.plan_upsample``: the interpolations of each rank, the vector and index widths)
    with ``pointers`` the base addresses of dy and dx."""
    _, vec, width, _ = upsampling.plan_upsample(x_shape, size, interpolation, dtype, channels_last, pointers, index)
    return kernel_name(dtype, width, vec, interpolation), vec, width


def upsample_backward(problem, dy):
    """dx of ``problem.input_shape``: the gradient of ``upsample(problem, x)`` for output gradient ``dy``."""
    from . import launch

    check_shape("dy", dy, problem.output_shape)
    dy = tensors.contiguous(dy)
    dx = tensors.output_array(problem.input_shape, problem.dtype)
    channels_last = problem.channels_last
    name, vec, width = plan_upsample_backward(dx.shape, problem.size, problem.interpolation, dy.dtype, channels_last,
                                              pointers=(mb.pointer(dy), mb.pointer(dx)), index=index_type(dy, dx))
    n, channels, in3 = mb.view5(dx.shape, channels_last)
    i32 = mb.int32
    args = (dy, dx, launch.index_scalar(n, width), i32(channels), *[i32(v) for v in in3],
            *[i32(v) for v in mb.as3d(problem.size, 1)], i32(int(channels_last)))
    work = n * int(np.prod(in3)) * (channels // vec)
    launch.launch(module_cache.get_function(FILE, name), mb.persistent_grid(-(-work // mb.THREADS)),
                  (mb.THREADS, 1, 1), args)
    return dx

"""The input gradient of max and average pooling on the GPU (engine contract
``pool_backward``), kernels/pooling_backward.cu.

Why a module of its own: the backward is a gather over the input cells (deterministic, no
atomics), a different work split from the forward's one thread per output, with its own
instantiations (dtype x index width x vector width x mode). Max sends each output's gradient to
the first maximum of its window (row-major, real cells only, a NaN is the maximum); average
divides it by the real cells of the window.
"""
import numpy as np

from . import module_cache, pooling, registry, tensors
from . import memory_bound as mb
from .indexing import index_type

FILE = "pooling_backward.cu"


def kernel_name(dtype, width, vec, mode):
    return registry.template_name("gc::pool_backward", dtype, width, vec, pooling.MODES[mode])


def instantiations():
    return mb.mode_instantiations(kernel_name, pooling.MODES)


registry.register(FILE, instantiations())


def plan_pool_backward(x_shape, dy_shape, dtype, mode, channels_last, pointers=(), index=None):
    """(instantiation name, vector width, index width); no CUDA needed. The forward's rule
    (``pooling.plan_pool``) picks the vector and index widths; ``pointers`` are the base addresses
    of every array the kernel reads or writes (x, dy, dx)."""
    _, vec, width = pooling.plan_pool(x_shape, dy_shape, dtype, mode, channels_last, pointers, index)
    return kernel_name(dtype, width, vec, mode), vec, width


def check_shape(name, array, expected):
    """ValueError naming ``name`` unless ``array`` has the problem's ``expected`` shape."""
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"Invalid shape for argument `{name}`: expected {tuple(expected)} from the problem. "
                         f"Received: {name}.shape={tuple(array.shape)}")


def pool_backward(problem, x, dy):
    """dx of ``problem.input_shape``: the gradient of ``pool(problem, x)`` for output gradient ``dy``."""
    from . import launch

    check_shape("x", x, problem.input_shape)
    check_shape("dy", dy, problem.output_shape)
    x, dy = tensors.contiguous(x), tensors.contiguous(dy)
    dx = tensors.output_array(problem.input_shape, problem.dtype)
    channels_last = problem.channels_last
    name, vec, width = plan_pool_backward(x.shape, dy.shape, x.dtype, problem.mode, channels_last,
                                          pointers=(mb.pointer(x), mb.pointer(dy), mb.pointer(dx)),
                                          index=index_type(x, dy, dx))
    n, channels, in3 = mb.view5(x.shape, channels_last)
    _, _, out3 = mb.view5(dy.shape, channels_last)
    i32 = mb.int32
    args = (x, dy, dx, launch.index_scalar(n, width), i32(channels), *[i32(v) for v in (*in3, *out3)],
            *[i32(v) for v in (*mb.as3d(problem.pool_size, 1), *mb.as3d(problem.strides, 1),
                                *mb.as3d(problem.pad_before, 0))],
            i32(int(channels_last)))
    work = n * int(np.prod(in3)) * (channels // vec)
    launch.launch(module_cache.get_function(FILE, name), mb.persistent_grid(-(-work // mb.THREADS)),
                  (mb.THREADS, 1, 1), args)
    return dx

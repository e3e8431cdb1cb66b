"""The input gradient of a depthwise convolution on the GPU: ``kernels/depthwise_backward_input.cu``.

``depthwise_backward_input(problem, dy, kernel, activation=None, output=None)`` takes the depthwise
problem (kind 'depthwise', or the grouped 'conv' form gradients.py builds: groups = C, one input
channel per group) and the kernel ``(*k, C, dm)`` (or its ``(*k, 1, C*dm)`` view) and returns
``dx`` of ``problem.input_shape``:
``dx[n, i, c] = sum_{t, m: i = o*s + t*d - pad_before} dy[n, o, c*dm + m] * k[t, c, m]``,
with ``dy`` read as ``dy * act'(output)`` for a fused relu / relu6.

Why its own kernel: through the transposed-convolution engine a depthwise input gradient is C
one-channel groups, 1-wide GEMMs that leave most of each tile idle. This is the memory-bound
gather of pooling_backward.cu's shape: one thread per (input cell, channel vector), the taps that
reach the cell, the depth multiplier summed in registers, 16-byte channel vectors for
channels_last. Each dx element is written once by one thread: deterministic, no zero-fill.
"""
import math

import numpy as np

from .. import problems as _problems
from . import launch, module_cache, registry, tensors
from . import conv_backward as cb
from . import memory_bound as mb
from .indexing import index_type

KERNEL_FILE = "depthwise_backward_input.cu"
TEMPLATE = "gc::depthwise_dgrad"


def name_expression(dtype, index_width, vec):
    return registry.template_name(TEMPLATE, dtype, index_width, vec)


def instantiations():
    return [name_expression(dt, w, v) for dt in tensors.KERNEL_DTYPES for w in tensors.INDEX_WIDTHS
            for v in mb.vector_widths(dt)]


registry.register(KERNEL_FILE, instantiations())


def _grouped(problem):
    """``problem`` in the grouped 'conv' form (groups = C, out_channels = C*dm), refusing any other."""
    if getattr(problem, "kind", None) == _problems.DEPTHWISE:
        from .. import gradients  # imports the engines' problems: imported here, not at the top

        problem = gradients._as_dense(problem)
    if getattr(problem, "kind", None) != _problems.CONV or not (problem.groups > 1 and problem.channels_per_group == 1):
        raise ValueError("depthwise_backward_input needs a depthwise problem (kind 'depthwise', or 'conv' with one "
                         f"input channel per group). Received: problem={problem!r}")
    return problem


def _check(problem, dy, kernel):
    taps = math.prod(problem.kernel_size)
    for name, a, count in (("dy", dy, None), ("kernel", kernel, taps * problem.out_channels)):
        if count is None and tuple(a.shape) != tuple(problem.output_shape):
            raise ValueError(f"Invalid shape for argument `{name}`: expected {tuple(problem.output_shape)}. "
                             f"Received: {tuple(a.shape)}")
        if count is not None and (int(a.size) != count or tuple(a.shape[:problem.rank]) != tuple(problem.kernel_size)):
            expected = (*problem.kernel_size, problem.in_channels, problem.filters_per_group)
            raise ValueError(f"Invalid shape for argument `{name}`: expected {expected}. Received: {tuple(a.shape)}")
        if np.dtype(a.dtype) != np.dtype(problem.dtype):
            raise TypeError(f"Invalid dtype for argument `{name}`: expected {np.dtype(problem.dtype)}. "
                            f"Received: {np.dtype(a.dtype)}")


def plan_vector(problem, pointers=()):
    """V of the launch (no CUDA): the 16-byte width for channels_last with C % V == 0 and every base
    pointer (dx, dy, y, kernel) aligned, else 1."""
    return mb.vector_width(problem.dtype, problem.in_channels, problem.channels_last, pointers)


def depthwise_backward_input(problem, dy, kernel, activation=None, output=None):
    """``dx`` of ``problem.input_shape`` in ``problem.dtype`` (see the module docstring)."""
    problem = _grouped(problem)
    _check(problem, dy, kernel)
    dy, kernel = tensors.contiguous(dy), tensors.contiguous(kernel)
    act, y = cb.derivative_arguments(activation, output, dy)
    dx = tensors.output_array(problem.input_shape, problem.dtype)
    vec = plan_vector(problem, (mb.pointer(dx), mb.pointer(dy), mb.pointer(y), mb.pointer(kernel)))
    width = index_type(dx, dy, y, kernel)
    n, channels, in3 = mb.view5(problem.input_shape, problem.channels_last)
    i32 = mb.int32
    geometry = (*in3, *tensors.as3d(problem.out_spatial, 1), *tensors.as3d(problem.kernel_size, 1),
                *tensors.as3d(problem.strides, 1), *tensors.as3d(problem.dilation, 1), *mb.pads3d(problem.padding))
    args = (dy, y, i32(act), kernel, dx, launch.index_scalar(n, width), i32(channels), i32(problem.filters_per_group),
            *(i32(v) for v in geometry), i32(int(problem.channels_last)))
    work = n * math.prod(problem.in_spatial) * (channels // vec)
    fn = module_cache.get_function(KERNEL_FILE, name_expression(problem.dtype, width, vec))
    launch.launch(fn, mb.persistent_grid(-(-work // mb.THREADS)), (mb.THREADS, 1, 1), args)
    return dx

"""Separable convolution on the GPU (engine contract ``separable_conv``), kernels/separable.cu.

:func:`plan_separable` (pure, unit-tested without CUDA) makes the fused-or-not choice explicit:
- ``'fused'``: ``separable_fused`` keeps the depthwise result of a run of P output pixels x all
  M = C*dm mid channels in shared memory and runs the pointwise GEMM from there: the
  intermediate never reaches global memory. Needs P*M accumulators in the shared-memory budget
  with P >= 8 (so M <= 1536 in float32/float16, 768 in float64).
- ``'two_kernel'``: beyond that, depthwise.cu writes the intermediate and ``pointwise_conv``
  reads it back in chunks of KC mid channels. The intermediate is in the accumulation type
  (``depthwise.mid_dtype``: float32 for float16 inputs), as the fused kernel keeps it, so a
  depthwise sum past float16's range stays finite where the fused path and the oracle do.
"""
import dataclasses

import numpy as np

from . import module_cache, registry, tensors
from . import memory_bound as mb
from .tensors import KERNEL_DTYPES

FILE = "separable.cu"
PW_PIXELS = 8  # PW_PIXELS in the .cu


def fused_name(dtype, width):
    return registry.template_name("gc::separable_fused", dtype, width)


def pointwise_name(dtype, width):
    return registry.template_name("gc::pointwise_conv", dtype, width)


def instantiations():
    return [f(dt, w) for dt in KERNEL_DTYPES for w in ("int32", "int64") for f in (fused_name, pointwise_name)]


registry.register(FILE, instantiations())


@dataclasses.dataclass(frozen=True)
class Plan:
    kind: str  # 'fused' | 'two_kernel'
    fch: int  # output channels per pass (threads per pixel group)
    pixels: int  # P, output pixels per CTA
    kc: int  # mid channels per shared-memory chunk (M when fused)
    smem: int


def _filters_chunk(filters):
    """Threads along F: a power of two from 32 (a warp shares its pixels: smem broadcasts) to 256."""
    f = 32
    while f < filters and f < mb.THREADS:
        f *= 2
    return f


def plan_separable(channels, depth_multiplier, filters, dtype, budget=mb.SMEM_BUDGET):
    acc = 8 if np.dtype(dtype) == np.float64 else 4
    mid = int(channels) * int(depth_multiplier)
    for fch in sorted({_filters_chunk(filters), mb.THREADS}):  # wide F chunks mean fewer pixels
        pixels = mb.THREADS // fch * PW_PIXELS
        if pixels * mid * acc <= budget:
            return Plan("fused", fch, pixels, mid, pixels * mid * acc)
    fch = _filters_chunk(filters)
    pixels = mb.THREADS // fch * PW_PIXELS
    kc = max(1, min(mid, budget // (pixels * acc)))
    return Plan("two_kernel", fch, pixels, kc, pixels * kc * acc)


def separable_conv(problem, x, depthwise_kernel, pointwise_kernel, bias):
    from . import depthwise
    from . import launch

    (x, depthwise_kernel, pointwise_kernel, bias), y, _ = tensors.begin_call(
        problem, x, depthwise_kernel, pointwise_kernel, bias)
    dm, filters, mid, channels_last = problem.depth_multiplier, problem.out_channels, problem.mid_channels, \
        problem.channels_last
    strides, dilation, activation = problem.strides, problem.dilation, problem.activation
    n, channels, in3 = mb.view5(x.shape, channels_last)
    ksize = problem.kernel_size
    pw = tensors.contiguous(pointwise_kernel.reshape(mid, filters))
    plan = plan_separable(channels, dm, filters, x.dtype)
    _, _, out3 = mb.view5(y.shape, channels_last)
    pixels_total = n * int(np.prod(out3))
    i32 = mb.int32
    grid = mb.persistent_grid(-(-pixels_total // plan.pixels), blocks_per_sm=max(1, min(8, 200_000 // max(plan.smem, 1))))
    if plan.kind == "fused":
        width = mb.index_width(x, y, dtype=x.dtype)
        args = (x, tensors.contiguous(depthwise_kernel), pw, launch.optional_pointer(bias), y,
                i32(n), i32(channels), i32(dm), i32(filters), *[i32(v) for v in (*in3, *out3)],
                *[i32(v) for v in (*mb.as3d(ksize, 1), *mb.as3d(strides, 1), *mb.as3d(dilation, 1))],
                *[i32(p) for p in mb.as3d(problem.pad_before, 0)], i32(int(channels_last)), i32(plan.fch),
                mb.kernel_activation(activation))
        launch.launch(module_cache.get_function(FILE, fused_name(x.dtype, width)), grid, (mb.THREADS, 1, 1), args,
                      shared_mem=plan.smem)
    else:
        mid_y = tensors.output_array(mb.make_shape(n, mid, problem.out_spatial, channels_last),
                                     depthwise.mid_dtype(x.dtype))
        w = tensors.swapaxes(depthwise_kernel, -1, -2)
        ptrs = [mb.pointer(a) for a in (x, w, mid_y)]
        dplan = depthwise.plan_depthwise(x.shape, depthwise_kernel.shape, x.dtype, strides, problem.padding, dilation,
                                         channels_last, mid_y.shape, pointers=ptrs,
                                         index=mb.index_width(x, mid_y, w, dtype=x.dtype), out_dtype=mid_y.dtype)
        depthwise.launch_depthwise(dplan, problem, x, w, None, mid_y, None)
        width = mb.index_width(mid_y, y, dtype=x.dtype)
        args = (mid_y, pw, launch.optional_pointer(bias), y, launch.index_scalar(pixels_total, width),
                launch.index_scalar(int(np.prod(out3)), width), i32(mid), i32(filters), i32(int(channels_last)),
                i32(plan.fch), i32(plan.kc), mb.kernel_activation(activation))
        launch.launch(module_cache.get_function(FILE, pointwise_name(x.dtype, width)), grid, (mb.THREADS, 1, 1), args,
                      shared_mem=plan.smem)
    return y

"""The NumPy engine: the CPU fallback and the oracle every GPU result is checked against.

Engine contract (``gpuconv.cuda.engine`` implements the same names with the same signatures, so
one test body can run on both). ``gpuconv.ops`` has already validated everything and resolved
the geometry to Python ints; inputs are never empty and never mutated; the output dtype equals
``x.dtype`` (float16 accumulates in float32, float64 is exact enough to be the oracle).
``padding`` is a tuple of ``(before, after)`` zero-padding pairs, one per spatial dim.
``activation`` is None or a name in ``FUSED_ACTIVATIONS`` applied after the bias.

    NAME = "numpy"
    FUSED_ACTIVATIONS: frozenset of activation names the engine applies itself
    asarray(x) -> x on this engine's device (numpy: host copy of a CuPy array; no copy otherwise)
    conv(x, kernel, bias, *, strides, padding, dilation, groups, channels_last, activation)
        kernel (*k, C_in // groups, F); bias (F,) or None; out channel block g sees in block g
    conv_transpose(x, kernel, bias, *, strides, dilation, groups, out_spatial, crop, channels_last, activation)
        kernel (*k, F // groups, C_in); adjoint of conv: full[i*s + t*d] += W[t] x[i] (per group),
        full length (I-1)*s + k_eff; y[o] = full[o + crop] where that index exists, else 0 (+bias)
    depthwise_conv(x, kernel, bias, *, strides, padding, dilation, channels_last, activation)
        kernel (*k, C, dm); out channel c*dm + m; bias (C*dm,)
    separable_conv(x, depthwise_kernel, pointwise_kernel, bias, *, strides, padding, dilation,
                   channels_last, activation)
        pointwise_kernel (1,)*rank + (C*dm, F); bias (F,)
    pool(x, *, mode, pool_size, strides, padding, channels_last)
        mode 'max' (padded cells ignored) | 'average' (divides by the count of real cells)
    locally_connected(x, kernel, bias, *, kernel_size, strides, padding, out_spatial, channels_last, activation)
        kernel (prod(out_spatial), prod(kernel_size) * C, F), patch flattened (*k, C) for
        channels_last and (C, *k) for channels_first, positions row-major; bias (*out_spatial, F)
    upsample(x, *, size, interpolation, channels_last)
        'nearest' repeats; 'bilinear' (2-D) / 'trilinear' (3-D): half-pixel centres, edge clamp

Implementation map (one idea per module): ``_windows`` (padding, sliding-window views, the taps
that can touch real input and the input a piece of the output reads), ``memory`` (the workspace
budget ``GPUCONV_WORKSPACE_MB`` / ``MEMORY_BUDGET_BYTES``, the allocation limit, batch/row
chunking, the reused scratch buffers), ``_pieces`` (every op fills its output piece by piece
under that budget: sizes checked, output allocated once, epilogue per piece), ``_parallel``
(disjoint pieces of memory-bound work on ``GPUCONV_NUM_THREADS`` pinned, fork-safe worker
threads), ``_epilogue`` (bias, fused activation, cast), ``_quiet`` (IEEE results without NumPy
warnings), ``convolution`` (im2col + GEMM), ``transposed`` (GEMM + per-tap strided scatter-add),
``depthwise`` (depthwise and separable: channels_last row blocks), ``depthwise_planes``
(channels_first depthwise over shifted plane copies), ``pooling``, ``unshared`` (locally
connected), ``upsampling``. Every output is a fresh C-contiguous array.
Module names differ from the function names so ``gpuconv.cpu.conv`` is always the function.
"""
from ..backend import to_numpy as asarray
from . import convolution as _convolution
from . import depthwise as _depthwise
from . import pooling as _pooling
from . import transposed as _transposed
from . import unshared as _unshared
from . import upsampling as _upsampling
from ._epilogue import FUSED_ACTIVATIONS
from ._quiet import quiet as _quiet

conv = _quiet(_convolution.conv)
conv_transpose = _quiet(_transposed.conv_transpose)
depthwise_conv = _quiet(_depthwise.depthwise_conv)
separable_conv = _quiet(_depthwise.separable_conv)
pool = _quiet(_pooling.pool)
locally_connected = _quiet(_unshared.locally_connected)
upsample = _quiet(_upsampling.upsample)

NAME = "numpy"

__all__ = [
    "NAME", "FUSED_ACTIVATIONS", "asarray", "conv", "conv_transpose", "depthwise_conv", "separable_conv",
    "pool", "locally_connected", "upsample",
]

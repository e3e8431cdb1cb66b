"""bfloat16 on the kernel families that have no bfloat16 instantiation: a float32 round trip.

Only the tensor-core convolution (``conv_implicit_gemm.cu``) and the optimizer updates
(``optimizer_updates.cu``) are instantiated for bfloat16. Every other kernel (the FFMA tiles,
depthwise, pooling, upsampling, locally connected, the backward kernels) takes float16, float32
and float64 (``tensors.KERNEL_DTYPES``).
A bfloat16 call of those runs as float32: inputs cast to float32 on the device, the float32
kernel, the result rounded to bfloat16 once. The numbers are the library's rule for a 16-bit
float (``gpuconv.dtypes``: accumulate in float32, round once), so they agree with the NumPy
engine's; the cost is two memory-bound passes (the casts) and float32 temporaries twice the size
of the bfloat16 arrays. An optimizer update is not such an op: Keras and the NumPy engine round
each of its operations to the variable's dtype, which a float32 update rounded once does not
reproduce (not even for SGD, whose float32 fma rounds twice on the way to bfloat16), hence its
own bfloat16 kernel.

The engine applies it per op in one place (``engine.py`` wraps its functions with
:func:`through_float32`), so no op module knows about bfloat16; the convolution asks first
whether the algorithm table routes the problem to the tensor cores, which run bfloat16 natively.
"""
import dataclasses
import functools

import numpy as np

from .. import dtypes as _dtypes

_FLOAT32 = np.dtype(np.float32)


def _widened(value):
    return value.astype(_FLOAT32) if _is_bfloat16_array(value) else value


def _narrowed(value, dtype):
    if isinstance(value, tuple):  # the fused backward functions return (dx, dkernel, dbias)
        return tuple(_narrowed(v, dtype) for v in value)
    if value is not None and getattr(value, "dtype", None) == _FLOAT32:
        return value.astype(dtype)
    return value


def _is_bfloat16_array(value):
    dtype = getattr(value, "dtype", None)
    return isinstance(dtype, np.dtype) and _dtypes.is_bfloat16(dtype)


def through_float32(fn, native=None):
    """``fn(problem, *arrays, **options)`` that runs a bfloat16 ``problem`` as float32 (the
    module docstring says how), unless ``native(problem, *arrays)`` says a bfloat16 kernel takes
    it. Problems of other dtypes go to ``fn`` untouched."""

    @functools.wraps(fn)
    def run(problem, *arrays, **options):
        dtype = np.dtype(problem.dtype)
        if not _dtypes.is_bfloat16(dtype) or (native is not None and native(problem, *arrays)):
            return fn(problem, *arrays, **options)
        wide = dataclasses.replace(problem, dtype=_FLOAT32)
        return _narrowed(fn(wide, *(_widened(a) for a in arrays), **options), dtype)

    return run


"""bfloat16 on the kernel families that have no bfloat16 instantiation: a float32 round trip.

Only the tensor-core convolution (``conv_implicit_gemm.cu``) is instantiated for bfloat16. Every
other kernel (the FFMA tiles, depthwise, pooling, upsampling, locally connected, the backward
kernels, the optimizer updates) takes float16, float32 and float64 (``tensors.KERNEL_DTYPES``).
A bfloat16 call of those runs as float32: inputs cast to float32 on the device, the float32
kernel, the result rounded to bfloat16 once. The numbers are the library's rule for a 16-bit
float (``gpuconv.dtypes``: accumulate in float32, round once), so they agree with the NumPy
engine's; the cost is two memory-bound passes (the casts) and float32 temporaries twice the size
of the bfloat16 arrays.

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


def optimizer_update_through_float32(fn):
    """``optimizer_update`` (in place, no problem) with its bfloat16 params and their slots
    updated as float32 copies, written back rounded once; the other params go to ``fn`` as they
    are, in one call."""

    @functools.wraps(fn)
    def run(rule, scalars, params, grads, slots, decays):
        narrow = [i for i, p in enumerate(params) if _is_bfloat16_array(p)]
        if not narrow:
            return fn(rule, scalars, params, grads, slots, decays)
        params, grads, slots = list(params), list(grads), [list(s) for s in slots]
        written_back = []  # (bfloat16 array, its float32 copy)
        for i in narrow:
            wide = params[i].astype(_FLOAT32)
            written_back.append((params[i], wide))
            params[i], grads[i] = wide, _widened(grads[i])
            for j, slot in enumerate(slots[i]):
                if _is_bfloat16_array(slot):
                    slots[i][j] = slot.astype(_FLOAT32)
                    written_back.append((slot, slots[i][j]))
        fn(rule, scalars, params, grads, slots, decays)
        for array, wide in written_back:
            array[...] = wide.astype(array.dtype)

    return run

"""The one rule for the dtype arithmetic is carried out in.

float16 is accumulated (multiplied, summed, resized) in float32 and rounded once at the end, as
GPU GEMMs accumulate half in float and as PyTorch's CPU kernels do; float32 and float64 are
computed in their own dtype. Every engine, layer and gradient that widens float16 asks here, so
the rule (and a future narrow dtype's) is stated once.
"""
import numpy as np


def accumulation_dtype(dtype):
    """The ``np.dtype`` that values of ``dtype`` are accumulated in."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype

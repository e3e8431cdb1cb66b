"""Random operands for a row, on the host, in Keras' layout.

Never zeros (they hide unwritten outputs and can run faster than real data). Inputs are uniform
in [-1, 1); weights are scaled by 1/sqrt(fan-in) so outputs stay O(1) and float16 never
overflows, whatever the channel count.
"""
import math

import numpy as np


def _fan_in(name, shape):
    if name in ("kernel", "depthwise_kernel", "pointwise_kernel"):
        return max(math.prod(shape[:-1]), 1)
    return 1  # the bias


def make_inputs(row, dtype, data_format, rng, batch=None):
    """``{'x': ..., <weight name>: ...}`` as NumPy arrays of ``dtype``."""
    dtype = np.dtype(dtype)
    arrays = {"x": _uniform(rng, row.input_shape(data_format, batch), 1.0, dtype)}
    for name, shape in row.weight_shapes().items():
        arrays[name] = _uniform(rng, shape, 1.0 / math.sqrt(_fan_in(name, shape)), dtype)
    return arrays


def make_output_gradient(row, dtype, data_format, rng):
    """``dy`` of a backward row: uniform in [-1, 1), the output's shape and ``dtype``."""
    return _uniform(rng, row.output_shape(data_format), 1.0, np.dtype(dtype))


def _uniform(rng, shape, scale, dtype):
    # float32 draws: generating float64 first would double the host memory of the largest rows.
    a = rng.random(shape, dtype=np.float32)
    a *= 2.0 * scale
    a -= scale
    return a.astype(dtype, copy=False)

"""The two numbers of every row: floating-point operations and compulsory bytes, and the roofline
bound they give against a device's ceilings.

FLOPs count a multiply-add as 2 and follow bench_suite.md: a transposed conv counts every tap of
the scatter over the *input* (``2 N C K/g I k``), causal and 'same' padding taps are counted as
real work (the kernel window is fixed), and a bias add is one FLOP per output element. Pooling
counts one operation per window cell.

FLOPs are split by the unit that does them on a GPU: ``tensor`` (dense, grouped and transposed
convs and the pointwise half of a separable conv: GEMM-shaped, tensor cores apply in float16) and
``simt`` (depthwise, pooling, bias: per-channel work on the CUDA cores).

Bytes are compulsory traffic: every input and weight read once, the output written once.
"""
import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Flops:
    tensor: int
    simt: int

    @property
    def total(self):
        return self.tensor + self.simt


def _prod(values):
    return math.prod(int(v) for v in values)


def flops(row):
    n, out = row.N, _prod(row.output_spatial())
    taps = _prod(row.kernel_size)
    bias = n * row.K * out if row.bias else 0
    if row.op in ("conv", "dense"):
        return Flops(2 * n * row.K * out * (row.C // row.g) * taps, bias)
    if row.op == "conv_transpose":
        return Flops(2 * n * row.C * _prod(row.spatial) * (row.K // row.g) * taps, bias)
    if row.op == "depthwise":
        return Flops(0, 2 * n * row.mid_channels * out * taps + bias)
    if row.op == "separable":
        depthwise = 2 * n * row.mid_channels * out * taps
        return Flops(2 * n * row.K * out * row.mid_channels, depthwise + bias)
    if row.is_pool:
        return Flops(0, n * row.C * out * taps)
    raise ValueError(f"Unknown op {row.op!r} in row {row.id}")


def bytes_moved(row, dtype):
    """Compulsory bytes: input + weights (+ bias) read once, output written once."""
    itemsize = np.dtype(dtype).itemsize
    elements = _prod(row.input_shape("channels_last")) + _prod(row.output_shape("channels_last"))
    elements += sum(_prod(shape) for shape in row.weight_shapes().values())
    return elements * itemsize


def roofline_seconds(flop, nbytes, ceilings):
    """``max(compute time, memory time)`` and which one bounds it.

    ``ceilings`` has ``tensor_flops``, ``simt_flops`` (FLOP/s for the row's dtype) and
    ``bandwidth`` (B/s); the compute time adds the two units' shares since one kernel does both.
    """
    compute = flop.tensor / ceilings.tensor_flops + flop.simt / ceilings.simt_flops
    memory = nbytes / ceilings.bandwidth
    return (compute, "compute") if compute >= memory else (memory, "memory")

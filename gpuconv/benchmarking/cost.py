"""The two numbers of every row: floating-point operations and compulsory bytes, and the roofline
bound they give against a device's ceilings.

FLOPs count a multiply-add as 2 and follow docs/bench_suite.md: a transposed conv counts every tap of
the scatter over the *input* (``2 N C K/g I k``), causal and 'same' padding taps are counted as
real work (the kernel window is fixed), and a bias add is one FLOP per output element. Pooling
counts one operation per window cell.

FLOPs are split by the unit that does them on a GPU: ``tensor`` (dense, grouped and transposed
convs and the pointwise half of a separable conv: GEMM-shaped, tensor cores apply in float16) and
``simt`` (depthwise, pooling, bias: per-channel work on the CUDA cores).

Bytes are compulsory traffic: every input and weight read once, the output written once.

Backward rows (``--pass backward``) count the input gradient plus the weight gradients: for every
convolution-family op each is a product of the forward's size, so twice the forward's multiply-adds,
and one add per output element for the bias gradient; pooling's backward counts one operation per
window cell, like its forward. Their compulsory bytes: x, the weights and dy read, dx and the
weight gradients written (pooling: x, dy, dx). A separable op's backward recomputes its depthwise
result; that is the library's choice, not counted. ``both`` is the sum of the two passes.
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


def _bias_flops(row):
    return row.N * row.K * _prod(row.output_spatial()) if row.bias else 0


def flops(row):
    n, out = row.N, _prod(row.output_spatial())
    taps = _prod(row.kernel_size)
    bias = _bias_flops(row)
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


def pass_flops(row, pass_name):
    """FLOPs of ``pass_name`` ('forward', 'backward' or 'both') of the row (see the module doc)."""
    forward = flops(row)
    if pass_name == "forward":
        return forward
    if row.is_pool:
        backward = forward
    else:
        bias = _bias_flops(row)
        backward = Flops(2 * forward.tensor, 2 * (forward.simt - bias) + bias)
    if pass_name == "backward":
        return backward
    return Flops(forward.tensor + backward.tensor, forward.simt + backward.simt)


def pass_bytes(row, dtype, pass_name):
    """Compulsory bytes of ``pass_name`` of the row (see the module doc)."""
    forward = bytes_moved(row, dtype)
    if pass_name == "forward":
        return forward
    itemsize = np.dtype(dtype).itemsize
    inputs = _prod(row.input_shape("channels_last")) + sum(_prod(s) for s in row.weight_shapes().values())
    backward = forward + inputs * itemsize  # forward's reads (dy for y) plus dx and the weight gradients
    return backward if pass_name == "backward" else forward + backward


def roofline_seconds(flop, nbytes, ceilings):
    """``max(compute time, memory time)`` and which one bounds it.

    ``ceilings`` has ``tensor_flops``, ``simt_flops`` (FLOP/s for the row's dtype) and
    ``bandwidth`` (B/s); the compute time adds the two units' shares since one kernel does both.
    """
    compute = flop.tensor / ceilings.tensor_flops + flop.simt / ceilings.simt_flops
    memory = nbytes / ceilings.bandwidth
    return (compute, "compute") if compute >= memory else (memory, "memory")

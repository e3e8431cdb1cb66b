"""The backward of every convolution-family op, written once in terms of problems and engines.

Why here, above the engines: the backward of a windowed op is mostly other forward ops of the
same geometry, and the problems already know how to say so. The input gradient of a convolution
is the transposed convolution of ``problem.adjoint()`` (and the input gradient of a transposed
convolution is the convolution of its adjoint), so both engines' existing forward kernels compute
it; what no forward op can compute has its own engine function (``conv_backward_weights``,
``pool_backward``, ``upsample_backward``, ``locally_connected_backward_input`` /
``_backward_weights``). Every engine therefore differentiates every op the same way, and a new
engine gets gradients by implementing those five functions.

Each function takes the engine, the problem the forward op computed (before the planner's routing,
so the gradient does not depend on which engine function ran), the forward inputs the tape kept
and the output gradient ``dy``; it returns one gradient per differentiable input, in the forward
call's argument order, ``None`` for an absent bias and for an input whose gradient the tape does
not need (``input_needed``: the batch fed to a first layer, a frozen weight). The forward's fused
activation is not part of the problem here: under a tape, ops applies it as a recorded op of
its own.
"""
import dataclasses

from . import arrays as _arrays
from . import problems as _problems
from .autodiff.tape import input_needed
from .dtypes import accumulation_dtype


def _channel_sum(dy, axes, dtype):
    """``dy`` summed over ``axes`` in float32 for float16 (one fixed-order reduction)."""
    xp = _arrays.array_module(dy)
    return xp.sum(dy, axis=axes, dtype=accumulation_dtype(dtype)).astype(dtype, copy=False)


def _bias_gradient(problem, dy):
    """Gradient of a per-channel bias: ``dy`` summed over the batch and the spatial axes."""
    channel_axis = dy.ndim - 1 if problem.channels_last else 1
    return _channel_sum(dy, tuple(a for a in range(dy.ndim) if a != channel_axis), problem.dtype)


def _as_dense(problem):
    """A depthwise problem as the grouped convolution it is (one input channel per group); the
    weight layout ``(*k, C, dm)`` is ``(*k, 1, C*dm)`` reshaped."""
    if problem.kind == _problems.CONV:
        return problem
    return dataclasses.replace(problem, kind=_problems.CONV, out_channels=problem.mid_channels,
                               groups=problem.in_channels, depth_multiplier=1, activation=None, has_bias=False)


def conv(engine, problem, x, kernel, dy, need_x=True, need_kernel=True):
    """``(dx, dkernel)`` of a convolution or depthwise convolution (kernel in its own layout);
    None for a gradient not needed."""
    fused = getattr(engine, "conv_backward_fused", None)
    if fused is not None:  # CUDA: the depthwise input gradient has a kernel of its own there
        return fused(problem, x, kernel, dy, None, need_x, need_kernel, False)[:2]
    dense = _as_dense(problem)
    dx = engine.conv_transpose(dense.adjoint(), dy, kernel.reshape(dense.kernel_shape), None) if need_x else None
    dw = engine.conv_backward_weights(dense, x, dy).reshape(kernel.shape) if need_kernel else None
    return dx, dw


def _output_gradient(engine, problem, dy, output, bias, bias_index):
    """``(dy * act'(output), bias gradient or None)`` for an engine without a kernel that applies
    the derivative (``output``: the forward result of a fused relu / relu6, None: no activation,
    ``dy`` itself): the engine's one-pass ``output_gradient`` where it has one (NumPy), else
    the two array passes."""
    need_bias = bias is not None and input_needed(bias_index)
    one_pass = getattr(engine, "output_gradient", None)
    if one_pass is not None:
        return one_pass(problem, dy, output, need_bias)
    if output is not None:
        from .activations import OUTPUT_DERIVATIVES

        dy = OUTPUT_DERIVATIVES[problem.activation](output, dy)
    return dy, _bias_gradient(problem, dy) if need_bias else None


def conv_with_bias(engine, problem, x, kernel, bias, dy, output=None):
    """``output``: the forward result when ``problem.activation`` (relu, relu6) was fused; an
    engine with ``conv_backward_fused`` (CUDA) applies its derivative in the kernels that read
    ``dy``, any other engine multiplies ``dy`` by it first, as ops did before."""
    if getattr(engine, "conv_backward_fused", None) is not None:
        return engine.conv_backward_fused(problem, x, kernel, dy, output, input_needed(0), input_needed(1),
                                          bias is not None and input_needed(2))
    dy, db = _output_gradient(engine, problem, dy, output, bias, 2)
    dx, dw = conv(engine, problem, x, kernel, dy, input_needed(0), input_needed(1))
    return dx, dw, db


conv_with_bias.takes_output = True  # ops hands it the fused activation's output (see _recorded)


def conv_transpose_with_bias(engine, problem, x, kernel, bias, dy, output=None):
    """A transposed convolution is the adjoint of the convolution ``problem.adjoint()``: its input
    gradient is that convolution of ``dy``; its kernel gradient that convolution's, with the roles
    of input and output gradient exchanged. ``output`` as for :func:`conv_with_bias` (CUDA:
    ``conv_transpose_backward_fused``)."""
    if getattr(engine, "conv_transpose_backward_fused", None) is not None:
        return engine.conv_transpose_backward_fused(problem, x, kernel, dy, output, input_needed(0), input_needed(1),
                                                    bias is not None and input_needed(2))
    dy, db = _output_gradient(engine, problem, dy, output, bias, 2)
    forward = problem.adjoint()
    dx = engine.conv(forward, dy, kernel, None) if input_needed(0) else None
    dw = engine.conv_backward_weights(forward, dy, x) if input_needed(1) else None
    return dx, dw, db


conv_transpose_with_bias.takes_output = True


def _pointwise_problem(problem):
    """The separable op's second step: a 1x1, stride-1 convolution over the depthwise result."""
    rank = problem.rank
    return _problems.ConvProblem(
        kind=_problems.CONV, batch=problem.batch, in_channels=problem.mid_channels,
        out_channels=problem.out_channels, in_spatial=problem.out_spatial, out_spatial=problem.out_spatial,
        kernel_size=(1,) * rank, strides=(1,) * rank, dilation=(1,) * rank, pad_before=(0,) * rank,
        channels_last=problem.channels_last, dtype=problem.dtype,
    )


def separable_with_bias(engine, problem, x, depthwise_kernel, pointwise_kernel, bias, dy, output=None):
    """Depthwise then pointwise: the depthwise result is recomputed here rather than kept by the
    tape (it is ``C*dm`` channels at the output's resolution, often the largest tensor of the op).
    ``output`` as for :func:`conv_with_bias`: the pointwise step is the convolution that read
    ``dy``, so on CUDA its ``conv_backward_fused`` applies the derivative."""
    depthwise = dataclasses.replace(problem, kind=_problems.DEPTHWISE, out_channels=problem.mid_channels,
                                    activation=None, has_bias=False)
    mid = engine.depthwise_conv(depthwise, x, depthwise_kernel, None)
    pointwise = _pointwise_problem(problem)
    if getattr(engine, "conv_backward_fused", None) is not None:
        fused = dataclasses.replace(pointwise, activation=problem.activation if output is not None else None)
        d_mid, d_pointwise, db = engine.conv_backward_fused(fused, mid, pointwise_kernel, dy, output, True,
                                                            input_needed(2), bias is not None and input_needed(3))
    else:
        dy, db = _output_gradient(engine, problem, dy, output, bias, 3)
        d_mid = engine.conv_transpose(pointwise.adjoint(), dy, pointwise_kernel, None)
        d_pointwise = engine.conv_backward_weights(pointwise, mid, dy) if input_needed(2) else None
    dx, d_depthwise = conv(engine, depthwise, x, depthwise_kernel, d_mid, input_needed(0), input_needed(1))
    return dx, d_depthwise, d_pointwise, db


separable_with_bias.takes_output = True


def pool(engine, problem, x, dy):
    return (engine.pool_backward(problem, x, dy),)


def upsample(engine, problem, x, dy):
    return (engine.upsample_backward(problem, dy),)


def locally_connected_with_bias(engine, problem, x, kernel, bias, dy):
    """Bias ``(*out_spatial, F)``: ``dy`` summed over the batch, in the bias' own layout."""
    dx = engine.locally_connected_backward_input(problem, dy, kernel) if input_needed(0) else None
    dw = engine.locally_connected_backward_weights(problem, x, dy) if input_needed(1) else None
    if bias is None or not input_needed(2):
        return dx, dw, None
    db = _channel_sum(dy, (0,), problem.dtype)
    if not problem.channels_last:  # (F, *out) -> (*out, F)
        db = _arrays.array_module(db).ascontiguousarray(_arrays.array_module(db).moveaxis(db, 0, -1))
    return dx, dw, db


# The backward of each forward problem kind (ops records the one matching what it ran).
BACKWARD = {
    _problems.CONV: conv_with_bias,
    _problems.DEPTHWISE: conv_with_bias,
    _problems.SEPARABLE: separable_with_bias,
    _problems.CONV_TRANSPOSE: conv_transpose_with_bias,
}

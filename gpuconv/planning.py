"""Which engine function computes a problem: the one place an op is routed into another.

Why here and not in the engines: when the NumPy engine alone sent a grouped convolution with one
input channel per group to its depthwise code, the CUDA engine ran the same layer through its
dense kernel, so the two engines computed one layer two ways (different accumulation orders,
different speed) and nothing said so. The planner decides once, above every engine, and each
engine only computes the problem it is handed.

Routes:
- a convolution with one input channel per group and more than one group is a depthwise
  convolution (its kernel ``(*k, 1, C*m)`` is the depthwise kernel ``(*k, C, m)`` reshaped, no
  copy); the depthwise code is memory-bound where a grouped GEMM would multiply 1-wide blocks.
- a 1x1 convolution needs no route: both engines' dense convolutions already reduce it to one GEMM
  over (batch x pixels, channels) without an im2col copy (the CPU's window view of a 1x1 kernel
  is the input itself; the CUDA tile kernel reads it directly).
"""
from . import problems as _problems

# The engine function of each problem kind (a fixed table: nothing here comes from user data).
ENGINE_FUNCTIONS = {
    _problems.CONV: "conv",
    _problems.DEPTHWISE: "depthwise_conv",
    _problems.SEPARABLE: "separable_conv",
    _problems.CONV_TRANSPOSE: "conv_transpose",
}


def route(problem):
    """The problem an engine should compute for ``problem`` (itself unless a route applies)."""
    if problem.kind == _problems.CONV and problem.groups > 1 and problem.channels_per_group == 1:
        return problem.as_depthwise()
    return problem


def run(engine, problem, x, weights, bias):
    """Route ``problem`` and call the engine function of its kind; ``weights`` are the op's
    kernels in the original problem's layout (reshaped here when the route changes it)."""
    planned = route(problem)
    if planned.kind != problem.kind:
        weights = tuple(w.reshape(planned.kernel_shape) for w in weights)
    return getattr(engine, ENGINE_FUNCTIONS[planned.kind])(planned, x, *weights, bias)

"""The weight gradient of a dense or grouped convolution on the GPU: ``kernels/conv_backward_weights.cu``.

``conv_backward_weights(problem, x, dy)`` returns ``dW`` of ``problem.kernel_shape``:
``dW[t, c, g*Fg + f] = sum_{n, o} x[n, o*s + t*d - pad_before, g*Cg + c] * dy[n, o, g*Fg + f]``.

Why its own kernel: no forward op reduces over the batch and the output pixels. It is an
implicit GEMM on the tile engine (rows = taps x channels of a group, columns = the group's
filters, reduction = batch x output pixels), and a reduction that long must be split to fill the
device. Split deterministically: :func:`plan_slices` (pure, no CUDA) cuts it into a fixed number
of slices from the problem and the SM count, each slice writes a partial plane of a workspace in
the accumulation type (float32 for float16 and float32, float64 for float64), and ``wgrad_sum``
adds the planes in slice order and casts. No atomics, so repeated runs are bitwise identical on
one device.

A fused activation's derivative (relu, relu6: ``gpuconv.activations.OUTPUT_DERIVATIVES``) is
applied by the kernels as they load ``dy``, from the forward output ``y``: ``activation`` and
``output`` of :func:`weights_gradient`, and :func:`conv_backward_fused`, the whole backward
of a convolution or depthwise convolution with such an activation (gradients.py calls it).
"""
import dataclasses
import math

import numpy as np

from . import algorithms, launch, module_cache, registry, tensors, tile_engine
from .epilogue import activation_code
from .indexing import index_type

KERNEL_FILE = "conv_backward_weights.cu"
TEMPLATE = "gc::conv_wgrad"
SUM_TEMPLATE = "gc::wgrad_sum"
THREADS = 256      # both kernels' __launch_bounds__
CHUNK = 16         # positions per reduction chunk: BK of both tiles (tile_fma.cuh TileOf)
CTAS_PER_SM = 4    # two resident CTAs per SM (MinBlocks) and a second wave to even out slices
MIN_CHUNKS_PER_SLICE = 8   # below this a slice's partial tile costs more to write than to compute
MAX_SLICES = 64
MAX_WORKSPACE_BYTES = 256 * 2**20
SUM_BLOCKS_PER_SM = 8


@dataclasses.dataclass(frozen=True)
class SlicePlan:
    """How the reduction of ``chunks`` chunks is cut: ``slices`` slices of ``chunks_per_slice``
    chunks (the last may be shorter, none is empty)."""

    slices: int
    chunks_per_slice: int
    chunks: int


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Invalid value for argument `{name}`: expected a positive int. Received: {name}={value!r}")
    return int(value)


def plan_slices(positions, output_tiles, sm_count, plane_bytes, chunk=CHUNK):
    """The slice plan of a reduction over ``positions`` (batch x output pixels) whose output is
    ``output_tiles`` CTAs per slice, on a device of ``sm_count`` SMs, one workspace plane being
    ``plane_bytes``. Enough slices to give every SM ``CTAS_PER_SM`` CTAs, but no slice shorter
    than ``MIN_CHUNKS_PER_SLICE`` chunks, at most ``MAX_SLICES`` and a workspace within
    ``MAX_WORKSPACE_BYTES``. A pure function of its arguments: the same problem on the same
    device always sums in the same order."""
    positions, output_tiles = _positive("positions", positions), _positive("output_tiles", output_tiles)
    sm_count, plane_bytes = _positive("sm_count", sm_count), _positive("plane_bytes", plane_bytes)
    chunks = -(-positions // _positive("chunk", chunk))
    wanted = -(-sm_count * CTAS_PER_SM // output_tiles)
    slices = max(1, min(wanted, chunks // MIN_CHUNKS_PER_SLICE, MAX_SLICES, MAX_WORKSPACE_BYTES // plane_bytes))
    per = -(-chunks // slices)
    return SlicePlan(slices=-(-chunks // per), chunks_per_slice=per, chunks=chunks)


def choose_tile(problem, dtype, index_width):
    """The forward convolution's rule (algorithms._narrow_fits): the narrow tile (16 columns)
    for <= 16 filters per group where it is instantiated, else the wide one."""
    if algorithms.TILE_NARROW in algorithms.tiles_for(dtype, index_width) and problem.filters_per_group <= 16:
        return algorithms.TILE_NARROW
    return algorithms.TILE_WIDE


def acc_dtype(dtype):
    """The workspace's dtype: the kernels' accumulation type."""
    return np.dtype("float64") if np.dtype(dtype) == np.float64 else np.dtype("float32")


def gemm_rows(problem):
    """Rows of the per-group GEMM: taps x input channels of a group (the kernel's row order)."""
    return math.prod(problem.kernel_size) * problem.channels_per_group


def output_tiles(problem, tile):
    rows, cols = algorithms.TILE_SHAPES[tile]
    return -(-gemm_rows(problem) // rows) * tile_engine.channel_tiles(problem, cols)


def name_expression(dtype, channels_last, index_width, tile):
    return tensors.name_expression(TEMPLATE, dtype, channels_last, index_width, tile)


def sum_name(dtype, index_width):
    return registry.template_name(SUM_TEMPLATE, dtype, index_width)


def instantiations():
    return tensors.tiled_instantiations(TEMPLATE) + [
        sum_name(dtype, width) for dtype in tensors.KERNEL_DTYPES for width in tensors.INDEX_WIDTHS]


registry.register(KERNEL_FILE, instantiations())


def _check(problem, x, dy):
    if getattr(problem, "kind", None) != "conv":
        raise ValueError(f"conv_backward_weights needs a 'conv' problem; received kind="
                         f"{getattr(problem, 'kind', None)!r}")
    for name, a, shape in (("x", x, problem.input_shape), ("dy", dy, problem.output_shape)):
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"Invalid shape for argument `{name}`: expected {tuple(shape)}. "
                             f"Received: {tuple(a.shape)}")
        if np.dtype(a.dtype) != np.dtype(problem.dtype):
            raise TypeError(f"Invalid dtype for argument `{name}`: expected {np.dtype(problem.dtype)}. "
                            f"Received: {np.dtype(a.dtype)}")


def plan_launch(problem, width, sm_count):
    """``(tile, SlicePlan)`` of ``problem`` at index width ``width`` on ``sm_count`` SMs (no CUDA)."""
    tile = choose_tile(problem, problem.dtype, width)
    plane = gemm_rows(problem) * problem.out_channels * acc_dtype(problem.dtype).itemsize
    return tile, plan_slices(problem.output_pixels, output_tiles(problem, tile), sm_count, plane)


# The activations whose derivative the backward kernels take from the forward output.
OUTPUT_DERIVATIVE_ACTIVATIONS = ("relu", "relu6")


def derivative_arguments(activation, output, dy):
    """``(code, y)`` for a kernel's ``act, y`` arguments: the activation's code and the contiguous
    forward output (its shape and dtype those of ``dy``), or ``(0, dy)`` without an activation
    (the kernels then never read ``y``)."""
    if activation is None:
        return 0, dy
    if activation not in OUTPUT_DERIVATIVE_ACTIVATIONS:
        raise ValueError(f"Invalid value for argument `activation`: the backward kernels apply the derivative of "
                         f"{OUTPUT_DERIVATIVE_ACTIVATIONS} from the output. Received: activation={activation!r}")
    if output is None or tuple(output.shape) != tuple(dy.shape) or np.dtype(output.dtype) != np.dtype(dy.dtype):
        raise ValueError(f"Invalid value for argument `output`: expected the forward output, shape {tuple(dy.shape)} "
                         f"and dtype {np.dtype(dy.dtype)}. Received: "
                         f"{None if output is None else (tuple(output.shape), np.dtype(output.dtype))}")
    return activation_code(activation), tensors.contiguous(output)


def conv_backward_weights(problem, x, dy):
    """``dW`` of ``problem.kernel_shape`` in ``problem.dtype`` (see the module docstring)."""
    return weights_gradient(problem, x, dy)


def weights_gradient(problem, x, dy, activation=None, output=None, x_activation=None, x_output=None):
    """conv_backward_weights (the engine contract's signature) with a fused ``activation`` (relu,
    relu6): the gradient of ``act(conv(x))`` whose value was ``output``, ``dy`` read as
    ``dy * act'(output)``. ``x_activation`` / ``x_output`` do the same for ``x`` (a transposed
    convolution's kernel gradient, where ``x`` is that op's output gradient; dense kernels only)."""
    _check(problem, x, dy)
    from . import depthwise_backward  # imports this module: imported here, not at the top

    if depthwise_backward.is_depthwise(problem):  # 1-wide GEMMs on the tile engine: a reduction instead
        if x_activation is not None:
            raise ValueError("Invalid value for argument `x_activation`: the depthwise kernel gradient applies a "
                             f"derivative to dy only. Received: x_activation={x_activation!r}")
        return depthwise_backward.depthwise_backward_weights(problem, x, dy, activation, output)
    x, dy = tensors.contiguous(x), tensors.contiguous(dy)
    act, y = derivative_arguments(activation, output, dy)
    x_act, x_out = derivative_arguments(x_activation, x_output, x)
    dw = tensors.output_array(problem.kernel_shape, problem.dtype)
    sm_count = launch.device_limits().sm_count
    acc = acc_dtype(problem.dtype)
    width = index_type(x, dy, dw)
    tile, plan = plan_launch(problem, width, sm_count)
    elements = gemm_rows(problem) * problem.out_channels
    # The workspace is addressed with the same index type: widen (and re-plan) if it needs 64 bits.
    if index_type((plan.slices, elements), itemsize=acc.itemsize) == "int64" and width == "int32":
        width = "int64"
        tile, plan = plan_launch(problem, width, sm_count)
    ws = tensors.output_array((plan.slices, elements), acc)

    rows, cols = algorithms.TILE_SHAPES[tile]
    grid = launch.grid_nd((-(-gemm_rows(problem) // rows), tile_engine.channel_tiles(problem, cols), plan.slices))
    fn = module_cache.get_function(KERNEL_FILE, name_expression(problem.dtype, problem.channels_last, width, tile))
    sizes = (*tile_engine.window_sizes(problem), plan.slices, plan.chunks_per_slice)
    launch.launch(fn, grid, (THREADS, 1, 1),
                  (x, x_out, launch.int32_scalar(x_act), dy, y, launch.int32_scalar(act), ws,
                   *(launch.index_scalar(v, width) for v in sizes)))

    sum_slices(ws, dw, elements, plan.slices, width, sm_count)
    return dw


def sum_slices(ws, dw, elements, slices, width, sm_count):
    """``dw`` (``elements`` values) <- the sum of the ``slices`` workspace planes of ``ws``, in
    slice order (``wgrad_sum``); shared with the depthwise weight gradient, whose workspace has
    the same layout."""
    total = module_cache.get_function(KERNEL_FILE, sum_name(dw.dtype, width))
    launch.launch(total, launch.grid_1d(elements, THREADS, max_blocks=sm_count * SUM_BLOCKS_PER_SM), (THREADS, 1, 1),
                  (ws, dw, launch.index_scalar(elements, width), launch.index_scalar(slices, width)))


def _through_derivative(run, run_with_derivative, on_tensor_cores, problem, dy, kernel, activation, act):
    """The input gradient ``run(problem, dy * act'(y), kernel)`` of a backward pass (``act``:
    ``derivative_arguments``' pair; no activation: ``dy`` itself). The FFMA tiles apply the
    derivative as their loader reads ``dy`` (``run_with_derivative``), with no pass of its own;
    the tensor-core loader copies ``dy`` by cp.async and cannot, so where the table sends the
    problem there (16-bit floats, ``on_tensor_cores``) it gets a masked copy of ``dy`` first: one
    memory-bound pass (read y and dy, write) against a GEMM that runs ~15x faster there than on
    FFMA."""
    if activation is None:
        return run(problem, dy, kernel, None)
    if on_tensor_cores(problem, dy, kernel):
        from ..activations import OUTPUT_DERIVATIVES

        return run(problem, OUTPUT_DERIVATIVES[activation](act[1], tensors.contiguous(dy)), kernel, None)
    return run_with_derivative(problem, dy, kernel, None, act)


def conv_backward_fused(problem, x, kernel, dy, output, need_x=True, need_kernel=True, need_bias=False):
    """``(dx, dkernel, dbias)`` of a convolution or depthwise convolution ``problem`` (the forward
    problem, kernel in its own layout); None for a gradient not needed. ``output``: the forward
    result when ``problem.activation`` (relu or relu6) was fused, else None. Every kernel that
    reads ``dy`` then applies ``dy * act'(output)`` as it loads it, so no masked copy of ``dy``
    is made: the depthwise input gradient (depthwise_backward_input.cu, which every depthwise
    input gradient takes), the dense input gradient (the transposed-convolution engine, whose
    FFMA loader takes the derivative of its input; the tensor-core one, 16-bit floats, gets a
    masked copy of dy: ``_through_derivative``), both weight gradients and the bias reduction
    (``bias_grad``, deterministic, also without an activation)."""
    from .. import gradients  # gradients imports the engines' problems: imported here, not at the top
    from . import conv_transpose, depthwise_backward, depthwise_backward_input

    activation = problem.activation if output is not None else None
    act = derivative_arguments(activation, output, dy)  # refuses another activation before any launch
    dense = gradients._as_dense(problem)
    dx = None
    if need_x and depthwise_backward.is_depthwise(dense):
        dx = depthwise_backward_input.depthwise_backward_input(dense, dy, kernel, activation, output)
    elif need_x:
        adjoint = dense.adjoint()
        dx = _through_derivative(conv_transpose.conv_transpose, conv_transpose.conv_transpose_with_input_derivative,
                                 conv_transpose.on_tensor_cores, adjoint, dy, kernel.reshape(dense.kernel_shape),
                                 activation, act)
    dw = weights_gradient(dense, x, dy, activation, output).reshape(kernel.shape) if need_kernel else None
    # The bias reduction is the same kernel with or without a derivative to apply, so a fused relu
    # and a separately recorded one give bitwise the same bias gradient.
    db = depthwise_backward.bias_backward(dense, dy, activation, output) if need_bias else None
    return dx, dw, db


def conv_transpose_backward_fused(problem, x, kernel, dy, output, need_x=True, need_kernel=True, need_bias=False):
    """``(dx, dkernel, dbias)`` of a transposed convolution ``problem`` with a fused relu / relu6
    whose result was ``output`` (None: no activation). Its input gradient is the convolution
    ``problem.adjoint()`` of ``dy * act'(output)``, its kernel gradient that convolution's kernel
    gradient with the roles exchanged (``dy`` in the place of the input), and the derivative is
    applied wherever a kernel loads ``dy``: the conv engine's FFMA input loader (the tensor-core
    one gets a masked copy, ``_through_derivative``), the x operand of conv_wgrad, the bias
    reduction."""
    from . import conv, depthwise_backward

    activation = problem.activation if output is not None else None
    act = derivative_arguments(activation, output, dy)
    forward = problem.adjoint()
    dx = None
    if need_x:
        dx = _through_derivative(conv.conv, conv.conv_with_input_derivative, conv.on_tensor_cores, forward, dy,
                                 kernel, activation, act)
    dw = None
    if need_kernel and activation is not None and depthwise_backward.is_depthwise(forward):
        # One output channel per group: the depthwise reduction, which applies a derivative to
        # its dy operand only, gets a masked copy of this one.
        from .. import activations

        dw = weights_gradient(forward, activations.OUTPUT_DERIVATIVES[activation](output, dy), x)
    elif need_kernel:
        dw = weights_gradient(forward, dy, x, x_activation=activation, x_output=output)
    db = depthwise_backward.bias_backward(problem, dy, activation, output) if need_bias else None
    return dx, dw, db

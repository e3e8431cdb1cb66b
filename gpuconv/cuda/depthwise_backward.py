"""The kernel gradient of a depthwise convolution on the GPU: ``kernels/depthwise_backward_weights.cu``.

``depthwise_backward_weights(problem, x, dy)`` takes the depthwise problem in the grouped form
gradients.py gives conv_backward_weights (a 'conv' problem with ``groups == C`` and one input
channel per group, kernel ``(*k, 1, C*dm)``) and returns
``dW[t, 0, c*dm + m] = sum_{n, o} x[n, o*s + t*d - pad_before, c] * dy[n, o, c*dm + m]``.

Why its own kernel: on the tile engine every group is a GEMM one column wide, so most of each
tile is idle; the reduction is memory-bound and wants x and dy read once, in 16-byte channel
vectors for channels_last. Deterministic as the dense weight gradient is: :func:`plan_slices`
(pure, no CUDA) fixes the slice count from the problem and the SM count, each slice writes its
partial sums to its own plane of a workspace in the accumulation type, and
conv_backward_weights.cu's ``wgrad_sum`` (whose workspace layout, (slices, kernel elements), this
one shares) adds the planes in slice order. No atomics.

With a fused activation (relu, relu6) the kernel reads ``dy * act'(y)`` from ``dy`` and the forward
output ``y`` as it loads them. :func:`bias_backward` is the same per-channel reduction with one
tap and no input: the bias gradient, derivative fused likewise (``bias_grad`` in the same file).
"""
import dataclasses
import math

from . import launch, module_cache, registry, tensors
from . import conv_backward as cb
from . import memory_bound as mb
from .indexing import index_type

KERNEL_FILE = "depthwise_backward_weights.cu"
TEMPLATE = "gc::depthwise_wgrad"
BIAS_TEMPLATE = "gc::bias_grad"
WARP = 32
WAVES = 2                    # resident threads per SM (two 256-thread CTAs, the launch bounds) x 2
MIN_POSITIONS_PER_SLICE = 16  # below this a slice's partial sums cost more to write than to compute
MAX_SLICES = 256
MAX_WORKSPACE_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class SlicePlan:
    """``slices`` interleaved slices of the ``positions`` reduction (slice z sums positions
    z, z + slices, ...; none is empty) and the vector width ``vec`` of the launch."""

    slices: int
    positions: int
    vec: int


def plan_slices(positions, work_items, sm_count, plane_bytes, channels_last):
    """The slice count of a reduction over ``positions`` (batch x output pixels) with
    ``work_items`` threads per slice (taps x channel vectors) on ``sm_count`` SMs, one workspace
    plane being ``plane_bytes``: enough slices to give every SM ``WAVES`` x 512 threads, but none
    shorter than ``MIN_POSITIONS_PER_SLICE`` positions, at most ``MAX_SLICES`` and a workspace
    within ``MAX_WORKSPACE_BYTES``. channels_first takes a multiple of the warp where it takes 32
    or more, so a warp's lanes read 32 consecutive positions. Pure: the same problem on the same
    device always sums in the same order."""
    positive = cb._positive
    positions, work_items = positive("positions", positions), positive("work_items", work_items)
    sm_count, plane_bytes = positive("sm_count", sm_count), positive("plane_bytes", plane_bytes)
    wanted = -(-sm_count * WAVES * 2 * mb.THREADS // work_items)
    slices = max(1, min(wanted, positions // MIN_POSITIONS_PER_SLICE, MAX_SLICES, MAX_WORKSPACE_BYTES // plane_bytes))
    if not channels_last and slices >= WARP:
        slices -= slices % WARP
    return slices


def name_expression(dtype, index_width, vec):
    return registry.template_name(TEMPLATE, dtype, index_width, vec)


def bias_name_expression(dtype, index_width, vec):
    return registry.template_name(BIAS_TEMPLATE, dtype, index_width, vec)


def instantiations():
    return [fmt(dt, w, v) for fmt in (name_expression, bias_name_expression) for dt in tensors.KERNEL_DTYPES
            for w in tensors.INDEX_WIDTHS for v in mb.vector_widths(dt)]


registry.register(KERNEL_FILE, instantiations())


def is_depthwise(problem):
    """True for a 'conv' problem that is a depthwise conv in grouped form (one input channel per group)."""
    return problem.groups > 1 and problem.channels_per_group == 1


def kernel_elements(problem):
    """Elements of the kernel gradient (taps x 1 x C*dm): one workspace plane."""
    return math.prod(problem.kernel_size) * problem.out_channels


def plan_launch(problem, sm_count, pointers=()):
    """The :class:`SlicePlan` of ``problem`` on ``sm_count`` SMs with base ``pointers`` (no CUDA)."""
    vec = mb.vector_width(problem.dtype, problem.out_channels, problem.channels_last, pointers)
    work = math.prod(problem.kernel_size) * (problem.out_channels // vec)
    plane = kernel_elements(problem) * cb.acc_dtype(problem.dtype).itemsize
    slices = plan_slices(problem.output_pixels, work, sm_count, plane, problem.channels_last)
    return SlicePlan(slices=slices, positions=problem.output_pixels, vec=vec)


def depthwise_backward_weights(problem, x, dy, activation=None, output=None):
    """``dW`` of ``problem.kernel_shape`` ``(*k, 1, C*dm)`` in ``problem.dtype`` (module docstring);
    with ``activation`` (relu, relu6) the gradient of ``act(depthwise(x))`` whose value was ``output``."""
    cb._check(problem, x, dy)
    if not is_depthwise(problem):
        raise ValueError(f"depthwise_backward_weights needs one input channel per group (groups > 1); received "
                         f"groups={problem.groups}, channels_per_group={problem.channels_per_group}")
    x, dy = tensors.contiguous(x), tensors.contiguous(dy)
    act, y = cb.derivative_arguments(activation, output, dy)
    dw = tensors.output_array(problem.kernel_shape, problem.dtype)
    sm_count = launch.device_limits().sm_count
    acc = cb.acc_dtype(problem.dtype)
    plan = plan_launch(problem, sm_count, pointers=(mb.pointer(x), mb.pointer(dy), mb.pointer(y)))
    elements = kernel_elements(problem)
    # The workspace is addressed with the same index type as the tensors.
    width = index_type(x, dy, dw)
    if index_type((plan.slices, elements), itemsize=acc.itemsize) == "int64":
        width = "int64"
    ws = tensors.output_array((plan.slices, elements), acc)

    n, channels, in3 = mb.view5(problem.input_shape, problem.channels_last)
    dm = problem.filters_per_group
    i32 = mb.int32
    geometry = (*in3, *tensors.as3d(problem.out_spatial, 1), *tensors.as3d(problem.kernel_size, 1),
                *tensors.as3d(problem.strides, 1), *tensors.as3d(problem.dilation, 1), *mb.pads3d(problem.padding))
    args = (x, dy, y, i32(act), ws, launch.index_scalar(n, width), i32(channels), i32(dm), *(i32(v) for v in geometry),
            i32(int(problem.channels_last)), launch.index_scalar(plan.slices, width))
    work = plan.slices * (elements // plan.vec)
    fn = module_cache.get_function(KERNEL_FILE, name_expression(problem.dtype, width, plan.vec))
    launch.launch(fn, mb.persistent_grid(-(-work // mb.THREADS)), (mb.THREADS, 1, 1), args)
    cb.sum_slices(ws, dw, elements, plan.slices, width, sm_count)
    return dw


def plan_bias(problem, sm_count, pointers=()):
    """The :class:`SlicePlan` of the bias gradient of ``problem`` (its ``out_channels`` channels)."""
    vec = mb.vector_width(problem.dtype, problem.out_channels, problem.channels_last, pointers)
    plane = problem.out_channels * cb.acc_dtype(problem.dtype).itemsize
    slices = plan_slices(problem.output_pixels, problem.out_channels // vec, sm_count, plane, problem.channels_last)
    return SlicePlan(slices=slices, positions=problem.output_pixels, vec=vec)


def bias_backward(problem, dy, activation=None, output=None):
    """``db`` of shape ``(F,)`` in ``problem.dtype``: ``dy`` (times ``act'(output)`` with a fused
    relu / relu6) summed over the batch and the output pixels, deterministically (module docstring)."""
    if tuple(dy.shape) != tuple(problem.output_shape):
        raise ValueError(f"Invalid shape for argument `dy`: expected {tuple(problem.output_shape)}. "
                         f"Received: {tuple(dy.shape)}")
    dy = tensors.contiguous(dy)
    act, y = cb.derivative_arguments(activation, output, dy)
    channels = problem.out_channels
    db = tensors.output_array((channels,), problem.dtype)
    sm_count = launch.device_limits().sm_count
    acc = cb.acc_dtype(problem.dtype)
    plan = plan_bias(problem, sm_count, pointers=(mb.pointer(dy), mb.pointer(y)))
    width = index_type(dy, y, db)
    if index_type((plan.slices, channels), itemsize=acc.itemsize) == "int64":
        width = "int64"
    ws = tensors.output_array((plan.slices, channels), acc)
    args = (dy, y, mb.int32(act), ws, launch.index_scalar(problem.batch, width), mb.int32(channels),
            launch.index_scalar(math.prod(problem.out_spatial), width), mb.int32(int(problem.channels_last)),
            launch.index_scalar(plan.slices, width))
    work = plan.slices * (channels // plan.vec)
    fn = module_cache.get_function(KERNEL_FILE, bias_name_expression(problem.dtype, width, plan.vec))
    launch.launch(fn, mb.persistent_grid(-(-work // mb.THREADS)), (mb.THREADS, 1, 1), args)
    cb.sum_slices(ws, db, channels, plan.slices, width, sm_count)
    return db


from . import depthwise_backward_input  # noqa: E402,F401  (registers its kernels with this family's)

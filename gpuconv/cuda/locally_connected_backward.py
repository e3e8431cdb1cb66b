"""The input and weight gradients of locally connected on the GPU (engine contract
``locally_connected_backward_input`` / ``locally_connected_backward_weights``),
kernels/locally_connected_backward.cu. Kernel ``(positions, prod(k)*C, F)``, patches flattened
``(*k, C)`` channels_last and ``(C, *k)`` channels_first, as the forward
(kernels/locally_connected.cu). ``dy`` is the gradient of the pre-activation output; bias and
activation gradients are the caller's. Both kernels are gathers (one thread per gradient
element, a fixed summation order): deterministic, no atomics.
"""
from . import module_cache, registry, tensors
from . import memory_bound as mb
from .indexing import index_type
from .pooling_backward import check_shape
from .tensors import INDEX_WIDTHS, KERNEL_DTYPES

FILE = "locally_connected_backward.cu"
GRADIENTS = ("input", "weights")  # the kernel's GRAD: LC_GRAD_INPUT = 0, LC_GRAD_WEIGHTS = 1
INT32_MAX = 2**31 - 1


def kernel_name(gradient, dtype, width):
    if gradient not in GRADIENTS:
        raise ValueError(f"Invalid value for argument `gradient`. Expected one of {GRADIENTS}. "
                         f"Received: gradient={gradient!r}")
    return registry.template_name("gc::locally_connected_backward", dtype, width, GRADIENTS.index(gradient))


def instantiations():
    return [kernel_name(gr, dt, w) for gr in GRADIENTS for dt in KERNEL_DTYPES for w in INDEX_WIDTHS]


registry.register(FILE, instantiations())


def plan_work(problem, gradient):
    """Threads of work for ``gradient``: one per element of dx (input) or of the kernel (weights).
    The kernels keep a patch index and a position in int: refuse problems where they overflow."""
    if problem.patch_size > INT32_MAX or problem.output_positions > INT32_MAX:
        raise ValueError(f"locally connected backward: patch size {problem.patch_size} or positions "
                         f"{problem.output_positions} exceed the kernels' 32-bit counters")
    shape = problem.input_shape if gradient == "input" else problem.kernel_shape
    work = 1
    for s in shape:
        work *= int(s)
    return work


def _geometry_args(problem):
    _, channels, in3 = mb.view5(problem.input_shape, problem.channels_last)
    _, _, out3 = mb.view5(problem.output_shape, problem.channels_last)
    i32 = mb.int32
    return (i32(channels), i32(problem.out_channels), *[i32(v) for v in (*in3, *out3)],
            *[i32(v) for v in (*mb.as3d(problem.kernel_size, 1), *mb.as3d(problem.strides, 1),
                                *mb.as3d(problem.pad_before, 0))],
            i32(int(problem.channels_last)))


def _run(problem, gradient, inputs, out_shape):
    from . import launch

    out = tensors.output_array(out_shape, problem.dtype)
    width = index_type(*inputs, out)
    work = plan_work(problem, gradient)
    args = (*inputs, out, launch.index_scalar(problem.batch, width), *_geometry_args(problem))
    launch.launch(module_cache.get_function(FILE, kernel_name(gradient, problem.dtype, width)),
                  mb.persistent_grid(-(-work // mb.THREADS)), (mb.THREADS, 1, 1), args)
    return out


def locally_connected_backward_input(problem, dy, kernel):
    """dx of ``problem.input_shape`` for output gradient ``dy`` and weights ``kernel``."""
    check_shape("dy", dy, problem.output_shape)
    check_shape("kernel", kernel, problem.kernel_shape)
    return _run(problem, "input", (tensors.contiguous(dy), tensors.contiguous(kernel)), problem.input_shape)


def locally_connected_backward_weights(problem, x, dy):
    """The kernel gradient, ``problem.kernel_shape``, for input ``x`` and output gradient ``dy``."""
    check_shape("x", x, problem.input_shape)
    check_shape("dy", dy, problem.output_shape)
    return _run(problem, "weights", (tensors.contiguous(x), tensors.contiguous(dy)), problem.kernel_shape)

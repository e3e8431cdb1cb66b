"""The tensor-core convolution: ``kernels/conv_implicit_gemm.cu`` (implicit GEMM on mma.sync).

``conv(problem, x, kernel, bias)`` follows the engine contract, like ``conv.conv``; ``conv.conv``
calls it when the algorithm table (``algorithms.py``) picks the ``implicit_gemm`` row: float16,
channels_last, 32-bit indices, a device of compute capability 8.0 or newer.

Instantiations: ``gc::conv_implicit_gemm<T, VEC_A, VEC_B>``, T the 16-bit storage type,
VEC_A / VEC_B whether the input / weight rows are loaded as 16-byte vectors (channels, resp.
filters, per group a multiple of 8), else element by element. The float16 ones are registered
(the runtime may request them; the CI audit compiles them). The bfloat16 ones
(``gc::bfloat16``) compile too but gpuconv has no bfloat16 dtype yet, so nothing can route to
them: they are not registered (the instantiation suite launches every registered name) and
:func:`bfloat16_instantiations` lists them for the audit of ``tests/test_cuda_implicit_gemm.py``.

One CTA tile: 64 pixels x 64 filters x 32 of the reduction, 128 threads (4 warps), 3 cp.async
stages, 24 KB of static shared memory (the .cu file says why).
"""
from . import epilogue, launch, module_cache, registry, tensors, tile_engine

KERNEL_FILE = "conv_implicit_gemm.cu"
TEMPLATE = "gc::conv_implicit_gemm"
THREADS = 128
TILE = (64, 64)  # (pixels, filters) per CTA
STAGES = 3
K_TILE = 32
VECTOR = 8  # 16-bit elements per 16-byte load
BFLOAT16_CTYPE = "gc::bfloat16"


def vector_flags(problem):
    """(VEC_A, VEC_B): 16-byte loads of input channels / filters need whole vectors per group."""
    return problem.channels_per_group % VECTOR == 0, problem.filters_per_group % VECTOR == 0


def name_expression(dtype, vec_a, vec_b):
    return registry.template_name(TEMPLATE, dtype, bool(vec_a), bool(vec_b))


def instantiations():
    return [name_expression("float16", a, b) for a in (True, False) for b in (True, False)]


def bfloat16_instantiations():
    return [registry.template_name(TEMPLATE, BFLOAT16_CTYPE, bool(a), bool(b)) for a in (True, False) for b in (True, False)]


registry.register(KERNEL_FILE, instantiations())


def grid(problem):
    pixels, filters = TILE
    return -(-problem.output_pixels // pixels), tile_engine.channel_tiles(problem, filters)


def conv(problem, x, kernel, bias):
    if not problem.channels_last:
        raise ValueError(f"the implicit-GEMM kernel takes channels_last inputs only. Received: "
                         f"channels_last={problem.channels_last!r}")
    (x, kernel, bias), y, width = tensors.begin_call(problem, x, kernel, bias)
    if y.size == 0:
        return y
    if width != "int32":
        raise ValueError(f"the implicit-GEMM kernel takes 32-bit indices only. Received: index width {width!r}")
    fn = module_cache.get_function(KERNEL_FILE, name_expression(x.dtype, *vector_flags(problem)))
    args = (x, kernel, launch.optional_pointer(bias), y,
            *(launch.index_scalar(v, width) for v in tile_engine.window_sizes(problem)),
            launch.int32_scalar(epilogue.activation_code(problem.activation)))
    launch.launch(fn, launch.grid_nd(grid(problem)), (THREADS, 1, 1), args)
    return y

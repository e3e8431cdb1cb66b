"""The tensor-core convolution: ``kernels/conv_implicit_gemm.cu`` (implicit GEMM on mma.sync).

``conv(problem, x, kernel, bias, tile)`` follows the engine contract, like ``conv.conv``;
``conv.conv`` calls it with the row's tile when the algorithm table (``algorithms.py``) picks an
``implicit_gemm`` row: 16-bit floats, 32-bit indices, a device of compute capability 8.0 or newer.
``run(problem, x, kernel, bias, y, tile, placement)`` is its launch into a given output, the
GEMM's pixels stored where an :class:`OutputPlacement` says: the transposed convolution's stride
phases (``conv_transpose_implicit_gemm.py``) store into every s-th pixel of theirs.

Instantiations: ``gc::conv_implicit_gemm<T, VEC_A, VEC_B>`` (``_128``: the 128 x 128 tile), T
the 16-bit storage type, VEC_A / VEC_B whether the input / weight rows are loaded as 16-byte
vectors (channels, resp. filters, per group a multiple of 8), else element by element;
split-K's two kernels below.
:func:`instantiations` lists them for one storage type (float16 by default),
:func:`bfloat16_instantiations` for ``gc::bfloat16``; both sets are registered (the runtime may
request them; the CI audit compiles them).

Two CTA tile configs (``TILES``, by the table's row: ``implicit_gemm`` / ``implicit_gemm_128``):
64 pixels x 64 filters x 32 of the reduction, 128 threads (4 warps), 3 cp.async stages, 24 KB
of static shared memory; and 128 x 128 x 32, 256 threads (8 warps of 64 x 32), 3 stages, 48 KB,
for layers that fill a wave of SMs with such tiles (the .cu file says why).

Split-K: where :func:`split_plan` cuts the reduction into S > 1 slices (the table's
``algorithms.split_k_slices`` of the output tiles, the SM count and the k tiles; or
``GPUCONV_SPLIT_K``), ``gc::conv_implicit_gemm_partial<T, VEC_A, VEC_B>`` (grid z = S) writes
each slice's f32 partial sums to a workspace of (S, M * F) float32 from the engine's allocator,
and ``gc::conv_implicit_gemm_sum<T>`` adds the slices in order and applies bias, activation and
the cast. No atomics: the same problem on the same device is bitwise repeatable.
"""
import dataclasses
import math

import numpy as np

from . import algorithms, epilogue, launch, module_cache, registry, tensors, tile_engine

KERNEL_FILE = "conv_implicit_gemm.cu"
TEMPLATE = "gc::conv_implicit_gemm"                   # the 64 x 64 tile
TEMPLATE_128 = "gc::conv_implicit_gemm_128"           # the 128 x 128 tile
PARTIAL_TEMPLATE = "gc::conv_implicit_gemm_partial"  # split-K pass 1
SUM_TEMPLATE = "gc::conv_implicit_gemm_sum"          # split-K pass 2
THREADS = 128
SUM_THREADS = 256  # conv_implicit_gemm_sum's __launch_bounds__
SUM_BLOCKS_PER_SM = 8
WORKSPACE_DTYPE = np.dtype("float32")
MAX_WORKSPACE_BYTES = 256 * 2**20
MAX_WORKSPACE_ELEMENTS = 2**31 - 1  # the kernels' 32-bit indices
STAGES = 3
K_TILE = 32
VECTOR = 8  # 16-bit elements per 16-byte load
BFLOAT16_CTYPE = "gc::bfloat16"


@dataclasses.dataclass(frozen=True)
class TileConfig:
    """One CTA tile config (kernels/conv_implicit_gemm.cu ``IgemmConfig``) and its kernel template."""

    pixels: int
    filters: int
    warps_m: int  # warps along the pixels, each a (pixels / warps_m) x (filters / warps_n) block
    warps_n: int
    template: str

    @property
    def threads(self):
        return 32 * self.warps_m * self.warps_n


# By the algorithm table's tile: kernels/conv_implicit_gemm.cu IgemmTileOf.
TILES = {algorithms.TILE_MMA: TileConfig(64, 64, 2, 2, TEMPLATE),
         algorithms.TILE_MMA_128: TileConfig(128, 128, 2, 4, TEMPLATE_128)}


def vector_flags(problem):
    """(VEC_A, VEC_B): 16-byte loads of input channels / filters need whole vectors per group."""
    return problem.channels_per_group % VECTOR == 0, problem.filters_per_group % VECTOR == 0


def name_expression(dtype, vec_a, vec_b, tile=algorithms.TILE_MMA):
    return registry.template_name(TILES[tile].template, dtype, bool(vec_a), bool(vec_b))


def partial_name(dtype, vec_a, vec_b):
    return registry.template_name(PARTIAL_TEMPLATE, dtype, bool(vec_a), bool(vec_b))


def sum_name(dtype):
    return registry.template_name(SUM_TEMPLATE, dtype)


def instantiations(dtype="float16"):
    """Every kernel of the file for one storage type (a dtype, or a C++ type such as
    ``BFLOAT16_CTYPE``): the one-pass kernel per load path and tile config, split-K pass 1 per
    load path, and pass 2."""
    flags = [(a, b) for a in (True, False) for b in (True, False)]
    return ([name_expression(dtype, a, b, tile) for tile in TILES for a, b in flags]
            + [partial_name(dtype, a, b) for a, b in flags] + [sum_name(dtype)])


def bfloat16_instantiations():
    return instantiations(BFLOAT16_CTYPE)


registry.register(KERNEL_FILE, instantiations() + bfloat16_instantiations())


def grid(problem, tile=algorithms.TILE_MMA):
    config = TILES[tile]
    return -(-problem.output_pixels // config.pixels), tile_engine.channel_tiles(problem, config.filters)


def k_tiles(problem):
    """k tiles of the flat reduction (taps x channels of a group, in tiles of ``K_TILE``)."""
    return -(-math.prod(problem.kernel_size) * problem.channels_per_group // K_TILE)


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """The reduction's ``k_tiles`` cut into ``slices`` slices of ``k_tiles_per_slice`` (the last
    may be shorter, none is empty); ``slices == 1``: the one-pass kernel."""

    slices: int
    k_tiles_per_slice: int
    k_tiles: int

    def workspace_shape(self, problem):
        """(slices, M * F) f32 partial sums; () when not split."""
        return (self.slices, problem.output_pixels * problem.out_channels) if self.slices > 1 else ()

    def workspace_bytes(self, problem):
        return math.prod(self.workspace_shape(problem)) * WORKSPACE_DTYPE.itemsize if self.slices > 1 else 0


def _workspace_slices(problem):
    """The most slices a workspace of (slices, M, F) f32 within MAX_WORKSPACE_BYTES and 32-bit
    indices holds."""
    plane = problem.output_pixels * problem.out_channels
    return max(1, min(MAX_WORKSPACE_BYTES // (plane * WORKSPACE_DTYPE.itemsize), MAX_WORKSPACE_ELEMENTS // plane))


def split_plan(problem, sm_count):
    """The :class:`SplitPlan` of ``problem`` on a device of ``sm_count`` SMs (no CUDA): the
    table's ``algorithms.split_k_slices`` of its output tiles and k tiles, within the workspace
    limits, or the count ``GPUCONV_SPLIT_K`` forces (a ValueError if that passes the limits);
    then evened out so that no slice is empty."""
    tiles, kt = math.prod(grid(problem)), k_tiles(problem)
    if kt == 0:  # no taps (a transposed convolution's phase that no tap reaches): nothing to split
        return SplitPlan(slices=1, k_tiles_per_slice=0, k_tiles=0)
    limit = _workspace_slices(problem)
    forced = algorithms.forced_slices()
    if forced is not None and forced > limit:
        raise ValueError(f"{algorithms.SPLIT_ENV}={forced} needs a workspace past {MAX_WORKSPACE_BYTES} bytes or "
                         f"32-bit indices for this problem (at most {limit} slices of {problem.output_pixels} x "
                         f"{problem.out_channels}).")
    slices = forced if forced is not None else min(algorithms.split_k_slices(tiles, sm_count, kt), limit)
    per = -(-kt // slices)
    return SplitPlan(slices=-(-kt // per), k_tiles_per_slice=per, k_tiles=kt)


@dataclasses.dataclass(frozen=True)
class OutputPlacement:
    """Where the GEMM's output pixel m lies in y (kernels/conv_implicit_gemm.cu OutputPlacement):
    m itself (``DENSE``, a convolution), or, for one stride phase of a transposed convolution,
    pixel ``n * YN + Y0 + od * YD + oh * YH + ow * YW`` of the wider output, so that each phase
    stores its pixels of y in place."""

    strided: bool = False
    pixel_strides: tuple = (0, 0, 0, 0)  # (YN, YD, YH, YW)
    first_pixel: int = 0                  # Y0

    def arguments(self):
        return tuple(launch.int32_scalar(v) for v in (int(self.strided), *self.pixel_strides, self.first_pixel))


DENSE = OutputPlacement()


def begin_call(problem, x, kernel, bias):
    """``tensors.begin_call`` for these kernels, which read channels_last with 32-bit indices
    (a ValueError otherwise; the table routes nothing else here): ``(x, kernel, bias), y, width``."""
    if not problem.channels_last:
        raise ValueError(f"the implicit-GEMM kernel takes channels_last inputs only. Received: "
                         f"channels_last={problem.channels_last!r}")
    arrays, y, width = tensors.begin_call(problem, x, kernel, bias)
    if y.size and width != "int32":
        raise ValueError(f"the implicit-GEMM kernel takes 32-bit indices only. Received: index width {width!r}")
    return arrays, y, width


def conv(problem, x, kernel, bias, tile=algorithms.TILE_MMA):
    """The engine contract on one tile config (a key of ``TILES``: the table's row's tile)."""
    (x, kernel, bias), y, _ = begin_call(problem, x, kernel, bias)
    if y.size:
        run(problem, x, kernel, bias, y, tile)
    return y


def run(problem, x, kernel, bias, y, tile, placement=DENSE):
    """Launch ``problem`` (channels_last, 32-bit indices) on C-contiguous device arrays, its
    output pixels stored to ``y`` where ``placement`` says: the one-pass kernel of ``tile``, or
    split-K's two passes where :func:`split_plan` cuts the reduction (64 x 64 tile only)."""
    if tile not in TILES:
        raise ValueError(f"Invalid value for argument `tile`: expected one of {sorted(TILES)}. Received: tile={tile!r}")
    sizes = tuple(launch.int32_scalar(v) for v in tile_engine.window_sizes(problem))
    act = launch.int32_scalar(epilogue.activation_code(problem.activation))
    sm_count = launch.device_limits().sm_count
    plan = split_plan(problem, sm_count) if tile == algorithms.TILE_MMA else None
    if plan is None or plan.slices == 1:
        fn = module_cache.get_function(KERNEL_FILE, name_expression(x.dtype, *vector_flags(problem), tile))
        launch.launch(fn, launch.grid_nd(grid(problem, tile)), (TILES[tile].threads, 1, 1),
                      (x, kernel, launch.optional_pointer(bias), y, *sizes, act, *placement.arguments()))
        return
    # Split-K: pass 1 writes every slice's plane in full (each slice covers every tile), so the
    # workspace needs no zero fill; pass 2 adds the planes in slice order.
    ws = tensors.output_array(plan.workspace_shape(problem), WORKSPACE_DTYPE)
    partial = module_cache.get_function(KERNEL_FILE, partial_name(x.dtype, *vector_flags(problem)))
    launch.launch(partial, launch.grid_nd((*grid(problem), plan.slices)), (THREADS, 1, 1),
                  (x, kernel, ws, *sizes, launch.int32_scalar(plan.k_tiles_per_slice)))
    elements = ws.shape[1]
    grid_sizes = tensors.as3d(problem.out_spatial, 1)
    total = module_cache.get_function(KERNEL_FILE, sum_name(x.dtype))
    launch.launch(total, launch.grid_1d(elements, SUM_THREADS, max_blocks=sm_count * SUM_BLOCKS_PER_SM),
                  (SUM_THREADS, 1, 1),
                  (ws, launch.optional_pointer(bias), y, launch.int32_scalar(elements),
                   launch.int32_scalar(problem.out_channels), launch.int32_scalar(plan.slices), act,
                   *(launch.int32_scalar(v) for v in grid_sizes), *placement.arguments()))

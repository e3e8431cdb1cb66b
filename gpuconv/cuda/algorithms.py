"""Which algorithm (kernel family and tile shape) runs a given layer.

Table-driven: each op has an ordered table of :class:`Algorithm` rows; the first row whose
``applies(geometry, dtype, device)`` holds wins. A new algorithm (e.g. an implicit GEMM on tensor
cores) joins by adding a row in front of the rows it should beat, with the predicate describing
where it is known to be faster; nothing else changes.

``choose_conv_algorithm(geometry, dtype, device=None, index_width='int32') -> Algorithm``
``choose_conv_transpose_algorithm(geometry, dtype, device=None, index_width='int32') -> Algorithm``

``geometry`` is the op's :class:`gpuconv.problems.ConvProblem` (the same object every engine
gets); ``device`` is anything with ``compute_capability`` (a ``cupy.cuda.Device``) or None; no
row needs CUDA to decide, so the choice is unit-testable. A row that needs a feature of the
device (the tensor-core rows: compute capability 8.0) does not apply to ``device=None``.

Override (tests, benchmarks): ``GPUCONV_ALGORITHM="conv=NAME"`` (comma-separated ``op=NAME``
items; ``conv_transpose`` is read the same way) makes the chooser return row NAME of that op's
table for every problem the row can run (its ``supports`` predicate), and raises ValueError for
a problem it cannot run or a name the table does not have: a forced run never silently measures
another kernel.
"""
import dataclasses
import math
import os

import numpy as np

from ..dtypes import is_16bit_float

# Tile shapes of kernels/tile_fma.cuh (enum gc::TileShape): (pixels, channels) per CTA.
TILE_WIDE = 0     # 64 x 64
TILE_NARROW = 1   # 256 x 16
TILE_SHAPES = {TILE_WIDE: (64, 64), TILE_NARROW: (256, 16)}  # (pixels, channels) per CTA
TILE_MMA = 2      # kernels/conv_implicit_gemm.cu: 64 x 64 x 32, 3 stages (not a tile_fma.cuh shape)
TILE_MMA_128 = 3  # kernels/conv_implicit_gemm.cu: 128 x 128 x 32, 3 stages, 8 warps

OVERRIDE_ENV = "GPUCONV_ALGORITHM"


@dataclasses.dataclass(frozen=True)
class Algorithm:
    name: str
    kernel_file: str
    tile: int
    applies: object  # callable(geometry, dtype, device, index_width) -> bool: where the row wins
    why: str
    supports: object = None  # callable(...) -> bool: where the row can run at all (None: everywhere)

    def can_run(self, geometry, dtype, device, index_width):
        return self.supports is None or self.supports(geometry, dtype, device, index_width)


def _narrow_fits(geometry, dtype, device, index_width):
    # 16 output channels per group or fewer: a 64-wide tile would multiply mostly zeros
    # (ResNeXt g=32 has 16 per group). Only where it is instantiated (see tiles_for).
    return TILE_NARROW in tiles_for(dtype, index_width) and geometry.filters_per_group <= 16


def _narrow_instantiated(geometry, dtype, device, index_width):
    return TILE_NARROW in tiles_for(dtype, index_width)


def _always(geometry, dtype, device, index_width):
    return True


def compute_capability(device):
    """The device's compute capability as an int (90 from '90' or '9.0'); None for no device."""
    if device is None:
        return None
    cc = str(device.compute_capability).replace(".", "")
    return int(cc)


def _mma_supports(geometry, dtype, device, index_width):
    # What kernels/conv_implicit_gemm.cu is instantiated for: 16-bit float inputs (float16,
    # bfloat16), 32-bit indices, mma.sync (sm_80+). It reads channels_last; cuda/conv.py runs a
    # channels_first problem through two layout copies.
    cc = compute_capability(device)
    return (is_16bit_float(dtype) and index_width == "int32"
            and cc is not None and cc >= 80)


def _mma_applies(geometry, dtype, device, index_width):
    # Tensor cores: ~990 dense fp16 TFLOP/s on an H100 against 67 of FFMA. Grouped layers of
    # <= 16 filters per group (ResNeXt) stay on the narrow FFMA tile: there a 64-wide filter tile
    # is at least three quarters zeros, and which wins is for a GPU to measure. No GPU has timed
    # this row yet; everything else it can run goes to it.
    return _mma_supports(geometry, dtype, device, index_width) and geometry.filters_per_group > 16


# The 128 x 128 tile: one resident CTA per SM (IgemmMinBlocks: ~200 registers x 256 threads).
IGEMM_128_CTAS_PER_SM = 1
DEFAULT_SM_COUNT = 132  # H100 / H200 SXM, for a device that does not say


def device_sm_count(device):
    """The SM count of ``device``: its ``sm_count``, its ``limits().sm_count`` (the seam's devices)
    or CuPy's ``attributes['MultiProcessorCount']``; ``DEFAULT_SM_COUNT`` where none says."""
    count = getattr(device, "sm_count", None)
    if count is None and callable(getattr(device, "limits", None)):
        count = device.limits().sm_count
    if count is None:
        count = (getattr(device, "attributes", None) or {}).get("MultiProcessorCount")
    return DEFAULT_SM_COUNT if count is None else int(count)


def _mma_128_applies(geometry, dtype, device, index_width):
    # The 128 x 128 tile reads half the operand bytes per FLOP of the 64 x 64 one (the plan shows
    # the 64 x 64 tile shared-memory and global bound), but holds one CTA of 8 warps per SM: where
    # its tiles fill at least a wave of the SMs and a group has >= 128 filters (no half-empty
    # filter tile). Elsewhere (late stages, small batches, grouped layers) the 64 x 64 tile, and
    # split-K where even those are too few. Not timed on a GPU.
    if not _mma_applies(geometry, dtype, device, index_width) or geometry.filters_per_group < 128:
        return False
    tiles = -(-geometry.output_pixels // 128) * geometry.groups * -(-geometry.filters_per_group // 128)
    return tiles >= device_sm_count(device) * IGEMM_128_CTAS_PER_SM


def _mma_phases_apply(geometry, dtype, device, index_width):
    # A transposed convolution on tensor cores launches its stride phases in turn, each a GEMM of
    # 1 / (s_d s_h s_w) of the work. Phases too small to give every SM a CTA, even split, leave the
    # GPU idle and pay a launch each (bench_suite T3, HiFi-GAN: 8 phases of 512 pixels, 64 CTAs):
    # there the FFMA kernel's single launch over all phases (grid z) is estimated faster (the plan
    # report: 33 against 52 us on an H200). Not timed on a GPU.
    if not _mma_applies(geometry, dtype, device, index_width):
        return False
    if all(s == 1 for s in geometry.strides):
        return True  # one phase: the convolution itself
    pixels = geometry.batch * math.prod(-(-o // s) for o, s in zip(geometry.out_spatial, geometry.strides))
    tiles = -(-pixels // 64) * geometry.groups * -(-geometry.filters_per_group // 64)
    taps = math.prod(-(-k // s) for k, s in zip(geometry.kernel_size, geometry.strides))
    k_tiles = max(1, -(-taps * geometry.channels_per_group // 32))
    sms = device_sm_count(device)
    return tiles * split_k_slices(tiles, sms, k_tiles) >= sms


def implicit_gemm_tile(geometry, dtype, device, index_width="int32"):
    """The tensor-core tile of a convolution the table's predicates give (the 128 x 128 one where
    it applies, else the 64 x 64 one), without the override: each stride phase of a transposed
    convolution on tensor cores takes the tile of its own geometry."""
    return TILE_MMA_128 if _mma_128_applies(geometry, dtype, device, index_width) else TILE_MMA


CONV_ALGORITHMS = (
    Algorithm("implicit_gemm_128", "conv_implicit_gemm.cu", TILE_MMA_128, _mma_128_applies,
              "float16 or bfloat16 on sm_80+, a wave or more of 128 x 128 tiles, >= 128 filters per group: tensor cores, "
              "128 x 128 x 32 CTA tile (8 warps of 64 x 32), 3 cp.async stages", supports=_mma_supports),
    Algorithm("implicit_gemm", "conv_implicit_gemm.cu", TILE_MMA, _mma_applies,
              "float16 or bfloat16 on sm_80+ (channels_first through layout copies): tensor cores (mma.sync m16n8k16, f32 accumulation), "
              "64 x 64 x 32 CTA tile, 3 cp.async stages", supports=_mma_supports),
    Algorithm("direct_tiled_narrow", "conv_direct.cu", TILE_NARROW, _narrow_fits,
              "<= 16 filters per group: 256 pixels x 16 channels per CTA", supports=_narrow_instantiated),
    Algorithm("direct_tiled", "conv_direct.cu", TILE_WIDE, _always,
              "default: 64 pixels x 64 channels per CTA, 4x4 register tile per thread"),
)

CONV_TRANSPOSE_ALGORITHMS = (
    Algorithm("phase_implicit_gemm", "conv_implicit_gemm.cu", TILE_MMA, _mma_phases_apply,
              "float16 or bfloat16 on sm_80+ (channels_first through layout copies), phases that give every SM a CTA: "
              "each stride phase a stride-1 convolution on the tensor-core kernels (its own tile, split-K where its "
              "tiles are few), stored in place",
              supports=_mma_supports),
    Algorithm("phase_tiled_narrow", "conv_transpose.cu", TILE_NARROW, _narrow_fits,
              "<= 16 filters per group: 256 pixels x 16 channels per CTA"),
    Algorithm("phase_tiled", "conv_transpose.cu", TILE_WIDE, _always,
              "default: stride-phase gather, 64 x 64 tile"),
)


# Split-K of the implicit GEMM (kernels/conv_implicit_gemm.cu: conv_implicit_gemm_partial writes
# each slice's f32 partial tiles, conv_implicit_gemm_sum adds them in slice order; the host's
# plan is conv_implicit_gemm.split_plan). Few output tiles and a long reduction leave SMs idle:
# bench_suite D7 at N = 32 (M = 1,568, F = 512, K = 4,608) has 200 tiles of 64 x 64 against
# 132 SMs x 4 resident CTAs.
SPLIT_ENV = "GPUCONV_SPLIT_K"   # a positive int: force that many slices (tests, benchmarks)
IGEMM_CTAS_PER_SM = 4           # resident 64 x 64 CTAs per SM (IgemmMinBlocks with vector A loads)
MIN_K_TILES_PER_SLICE = 16      # 512 of k: a slice then reads 128 KB of operand tiles per 16 KB partial it writes
MAX_SLICES = 16


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Invalid value for argument `{name}`: expected a positive int. Received: {name}={value!r}")
    return int(value)


def split_k_slices(output_tiles, sm_count, k_tiles):
    """Slices of the reduction for an implicit GEMM of ``output_tiles`` CTA tiles and ``k_tiles``
    k tiles on ``sm_count`` SMs: 1 once the tiles fill a wave of ``sm_count * IGEMM_CTAS_PER_SM``
    resident CTAs; else as many as that wave holds (rounded down: a second, partial wave would
    cost a whole one), no slice shorter than ``MIN_K_TILES_PER_SLICE``, at most ``MAX_SLICES``.
    A pure function: the same problem on the same device always sums in the same order."""
    output_tiles, sm_count = _positive_int("output_tiles", output_tiles), _positive_int("sm_count", sm_count)
    k_tiles = _positive_int("k_tiles", k_tiles)
    wave = sm_count * IGEMM_CTAS_PER_SM
    if output_tiles >= wave:
        return 1
    return max(1, min(wave // output_tiles, k_tiles // MIN_K_TILES_PER_SLICE, MAX_SLICES))


def forced_slices(text=None):
    """The slice count ``GPUCONV_SPLIT_K`` (or ``text``) forces, or None when it is unset or empty."""
    text = os.environ.get(SPLIT_ENV, "") if text is None else text
    if not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"Invalid value for {SPLIT_ENV}: expected a positive int (the slice count). "
                         f"Received: {SPLIT_ENV}={text!r}")
    return value


def overrides(text=None):
    """``{op: name}`` from ``GPUCONV_ALGORITHM`` (or ``text``): ``"conv=implicit_gemm,conv_transpose=phase_tiled"``."""
    text = os.environ.get(OVERRIDE_ENV, "") if text is None else text
    forced = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        op, sep, name = (piece.strip() for piece in item.partition("="))
        if not sep or not op or not name:
            raise ValueError(f"Invalid value for {OVERRIDE_ENV}: expected comma-separated op=NAME items. "
                             f"Received: {OVERRIDE_ENV}={text!r}")
        forced[op] = name
    return forced


def _forced(op, table, geometry, dtype, device, index_width):
    name = overrides().get(op)
    if name is None:
        return None
    rows = {algo.name: algo for algo in table}
    if name not in rows:
        raise ValueError(f"Invalid value for {OVERRIDE_ENV}: {op} has no algorithm {name!r} "
                         f"(it has {', '.join(rows)}). Received: {OVERRIDE_ENV}={os.environ.get(OVERRIDE_ENV)!r}")
    algo = rows[name]
    if not algo.can_run(geometry, dtype, device, index_width):
        raise ValueError(f"{OVERRIDE_ENV} forces {op}={name}, which cannot run this problem "
                         f"({np.dtype(dtype)}, channels_last={geometry.channels_last}, index width {index_width}, "
                         f"compute capability {compute_capability(device)}).")
    return algo


def _choose(table, geometry, dtype, device, index_width, op=None):
    forced = _forced(op, table, geometry, dtype, device, index_width) if op else None
    if forced is not None:
        return forced
    for algo in table:
        if algo.applies(geometry, dtype, device, index_width):
            return algo
    raise LookupError(f"no algorithm applies to {geometry} ({np.dtype(dtype)})")


# The rows whose loader can multiply its input by an activation's derivative as it loads it
# (tile_fma.cuh LoaderBase): a backward pass's convolution of an output gradient.
_CONV_ALGORITHMS_WITH_INPUT_DERIVATIVE = tuple(a for a in CONV_ALGORITHMS if a.kernel_file == "conv_direct.cu")


def choose_conv_algorithm(geometry, dtype, device=None, index_width="int32", input_derivative=False):
    """The conv row for ``geometry``; with ``input_derivative`` only among the rows that take one
    (a ``GPUCONV_ALGORITHM`` override naming another row is then not applied)."""
    if input_derivative:
        return _choose_among(_CONV_ALGORITHMS_WITH_INPUT_DERIVATIVE, "conv", geometry, dtype, device, index_width)
    return _choose(CONV_ALGORITHMS, geometry, dtype, device, index_width, op="conv")


_CONV_TRANSPOSE_FFMA_ALGORITHMS = tuple(a for a in CONV_TRANSPOSE_ALGORITHMS if a.kernel_file == "conv_transpose.cu")


def _choose_among(table, op, geometry, dtype, device, index_width):
    """The first row of ``table`` (a part of op's table) that applies; an override applied only
    when it names a row of ``table``."""
    return _choose(table, geometry, dtype, device, index_width,
                   op=op if overrides().get(op) in {a.name for a in table} else None)


def choose_conv_transpose_algorithm(geometry, dtype, device=None, index_width="int32", ffma_only=False):
    """The conv_transpose row for ``geometry``; with ``ffma_only`` among the rows of
    kernels/conv_transpose.cu (whose loader takes an input derivative; a ``GPUCONV_ALGORITHM``
    override naming another row is then not applied)."""
    if ffma_only:
        return _choose_among(_CONV_TRANSPOSE_FFMA_ALGORITHMS, "conv_transpose", geometry, dtype, device, index_width)
    return _choose(CONV_TRANSPOSE_ALGORITHMS, geometry, dtype, device, index_width, op="conv_transpose")


def tiles_for(dtype, index_width):
    """Tile shapes instantiated for (dtype, index width); the registry and the choosers agree.

    The narrow tile is a speed variant: not for double (its shared memory would pass 48 KB) and
    not for 64-bit indices (tensors past 2 GiB are rare; fewer instantiations keep the CI
    compile check short).
    """
    if np.dtype(dtype) == np.float64 or index_width != "int32":
        return (TILE_WIDE,)
    return (TILE_WIDE, TILE_NARROW)

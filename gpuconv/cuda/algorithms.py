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
import os

import numpy as np

# Tile shapes of kernels/tile_fma.cuh (enum gc::TileShape): (pixels, channels) per CTA.
TILE_WIDE = 0     # 64 x 64
TILE_NARROW = 1   # 256 x 16
TILE_SHAPES = {TILE_WIDE: (64, 64), TILE_NARROW: (256, 16)}  # (pixels, channels) per CTA
TILE_MMA = 2      # kernels/conv_implicit_gemm.cu: 64 x 64 x 32, 3 stages (not a tile_fma.cuh shape)

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
    # What kernels/conv_implicit_gemm.cu is instantiated for: 16-bit float inputs (bfloat16's
    # instantiations wait for the dtype), channels_last, 32-bit indices, mma.sync (sm_80+).
    cc = compute_capability(device)
    return (np.dtype(dtype) == np.float16 and geometry.channels_last and index_width == "int32"
            and cc is not None and cc >= 80)


def _mma_applies(geometry, dtype, device, index_width):
    # Tensor cores: ~990 dense fp16 TFLOP/s on an H100 against 67 of FFMA. Grouped layers of
    # <= 16 filters per group (ResNeXt) stay on the narrow FFMA tile: there a 64-wide filter tile
    # is at least three quarters zeros, and which wins is for a GPU to measure. No GPU has timed
    # this row yet; everything else it can run goes to it.
    return _mma_supports(geometry, dtype, device, index_width) and geometry.filters_per_group > 16


CONV_ALGORITHMS = (
    Algorithm("implicit_gemm", "conv_implicit_gemm.cu", TILE_MMA, _mma_applies,
              "float16 channels_last on sm_80+: tensor cores (mma.sync m16n8k16, f32 accumulation), "
              "64 x 64 x 32 CTA tile, 3 cp.async stages", supports=_mma_supports),
    Algorithm("direct_tiled_narrow", "conv_direct.cu", TILE_NARROW, _narrow_fits,
              "<= 16 filters per group: 256 pixels x 16 channels per CTA", supports=_narrow_instantiated),
    Algorithm("direct_tiled", "conv_direct.cu", TILE_WIDE, _always,
              "default: 64 pixels x 64 channels per CTA, 4x4 register tile per thread"),
)

CONV_TRANSPOSE_ALGORITHMS = (
    Algorithm("phase_tiled_narrow", "conv_transpose.cu", TILE_NARROW, _narrow_fits,
              "<= 16 filters per group: 256 pixels x 16 channels per CTA"),
    Algorithm("phase_tiled", "conv_transpose.cu", TILE_WIDE, _always,
              "default: stride-phase gather, 64 x 64 tile"),
)


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
        table = _CONV_ALGORITHMS_WITH_INPUT_DERIVATIVE
        forced = overrides().get("conv")
        return _choose(table, geometry, dtype, device, index_width,
                       op="conv" if forced in {a.name for a in table} else None)
    return _choose(CONV_ALGORITHMS, geometry, dtype, device, index_width, op="conv")


def choose_conv_transpose_algorithm(geometry, dtype, device=None, index_width="int32"):
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

"""Which algorithm (kernel family and tile shape) runs a given layer.

Table-driven: each op has an ordered table of :class:`Algorithm` rows; the first row whose
``applies(geometry, dtype, device)`` holds wins. A new algorithm (e.g. an implicit GEMM on tensor
cores) joins by adding a row in front of the rows it should beat, with the predicate describing
where it is known to be faster; nothing else changes.

``choose_conv_algorithm(geometry, dtype, device=None, index_width='int32') -> Algorithm``
``choose_conv_transpose_algorithm(geometry, dtype, device=None, index_width='int32') -> Algorithm``

``geometry`` is the op's :class:`gpuconv.problems.ConvProblem` (the same object every engine
gets); ``device`` is anything with ``compute_capability`` (a ``cupy.cuda.Device``) or None; no
row needs CUDA to decide, so the choice is unit-testable.
"""
import dataclasses

import numpy as np

# Tile shapes of kernels/tile_fma.cuh (enum gc::TileShape): (pixels, channels) per CTA.
TILE_WIDE = 0     # 64 x 64
TILE_NARROW = 1   # 256 x 16
TILE_SHAPES = {TILE_WIDE: (64, 64), TILE_NARROW: (256, 16)}  # (pixels, channels) per CTA


@dataclasses.dataclass(frozen=True)
class Algorithm:
    name: str
    kernel_file: str
    tile: int
    applies: object  # callable(geometry, dtype, device, index_width) -> bool
    why: str


def _narrow_fits(geometry, dtype, device, index_width):
    # 16 output channels per group or fewer: a 64-wide tile would multiply mostly zeros
    # (ResNeXt g=32 has 16 per group). Only where it is instantiated (see tiles_for).
    return TILE_NARROW in tiles_for(dtype, index_width) and geometry.filters_per_group <= 16


def _always(geometry, dtype, device, index_width):
    return True


CONV_ALGORITHMS = (
    Algorithm("direct_tiled_narrow", "conv_direct.cu", TILE_NARROW, _narrow_fits,
              "<= 16 filters per group: 256 pixels x 16 channels per CTA"),
    Algorithm("direct_tiled", "conv_direct.cu", TILE_WIDE, _always,
              "default: 64 pixels x 64 channels per CTA, 4x4 register tile per thread"),
)

CONV_TRANSPOSE_ALGORITHMS = (
    Algorithm("phase_tiled_narrow", "conv_transpose.cu", TILE_NARROW, _narrow_fits,
              "<= 16 filters per group: 256 pixels x 16 channels per CTA"),
    Algorithm("phase_tiled", "conv_transpose.cu", TILE_WIDE, _always,
              "default: stride-phase gather, 64 x 64 tile"),
)


def _choose(table, geometry, dtype, device, index_width):
    for algo in table:
        if algo.applies(geometry, dtype, device, index_width):
            return algo
    raise LookupError(f"no algorithm applies to {geometry} ({np.dtype(dtype)})")


def choose_conv_algorithm(geometry, dtype, device=None, index_width="int32"):
    return _choose(CONV_ALGORITHMS, geometry, dtype, device, index_width)


def choose_conv_transpose_algorithm(geometry, dtype, device=None, index_width="int32"):
    return _choose(CONV_TRANSPOSE_ALGORITHMS, geometry, dtype, device, index_width)


def tiles_for(dtype, index_width):
    """Tile shapes instantiated for (dtype, index width); the registry and the choosers agree.

    The narrow tile is a speed variant: not for double (its shared memory would pass 48 KB) and
    not for 64-bit indices (tensors past 2 GiB are rare; fewer instantiations keep the CI
    compile check short).
    """
    if np.dtype(dtype) == np.float64 or index_width != "int32":
        return (TILE_WIDE,)
    return (TILE_WIDE, TILE_NARROW)

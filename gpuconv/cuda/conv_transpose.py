"""Transposed (grouped, strided, dilated) N-d convolution on the GPU: ``kernels/conv_transpose.cu``.

``conv_transpose(problem, x, kernel, bias)`` follows the engine contract (``gpuconv.engines``):
kernel ``(*k, F // groups, C_in)``, ``y[o] = full[o + crop]`` of the scatter result. The kernel
gathers per stride phase (see the .cu file): grid z is the phase, x the phase's output pixels,
so there are no atomics and two runs are bitwise identical. The launch is the tile engine's
(``tile_engine.py``).
"""
import math

from . import algorithms, tile_engine


def phase_grid_pixels(problem):
    """Output pixels of the largest stride phase (the grid's x extent, in pixels)."""
    return problem.batch * math.prod(-(-o // s) for o, s in zip(problem.out_spatial, problem.strides))


def _grid(problem, tile):
    pixels, channels = tile
    return (-(-phase_grid_pixels(problem) // pixels), tile_engine.channel_tiles(problem, channels),
            math.prod(problem.strides))


KERNEL = tile_engine.TileKernel("conv_transpose.cu", "gc::conv_transpose",
                                algorithms.choose_conv_transpose_algorithm, _grid).register()
KERNEL_FILE, TEMPLATE, THREADS = KERNEL.kernel_file, KERNEL.template, tile_engine.THREADS
name_expression, instantiations = KERNEL.name_expression, KERNEL.instantiations


def conv_transpose(problem, x, kernel, bias):
    return KERNEL.run(problem, x, kernel, bias)


def conv_transpose_with_input_derivative(problem, x, kernel, bias, input_derivative):
    """``conv_transpose`` of ``x * act'(y)``, the derivative applied as the loader reads ``x``
    (see ``tile_engine.TileKernel.run``): the input gradient of a convolution with a fused relu /
    relu6 is this transposed convolution of its ``dy``."""
    return KERNEL.run(problem, x, kernel, bias, input_derivative)

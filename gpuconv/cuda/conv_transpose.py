"""Transposed (grouped, strided, dilated) N-d convolution on the GPU: ``kernels/conv_transpose.cu``.

``conv_transpose(problem, x, kernel, bias)`` follows the engine contract (``gpuconv.engines``):
kernel ``(*k, F // groups, C_in)``, ``y[o] = full[o + crop]`` of the scatter result. The kernel
gathers per stride phase (see the .cu file): grid z is the phase, x the phase's output pixels,
so there are no atomics and two runs are bitwise identical. The launch is the tile engine's
(``tile_engine.py``). Where the algorithm table picks the tensor-core row
(``phase_implicit_gemm``), ``conv_transpose_implicit_gemm.conv_transpose`` runs instead (each
stride phase a convolution on ``kernels/conv_implicit_gemm.cu``; a channels_first problem
through two layout copies).
"""
import math

from . import algorithms, conv_implicit_gemm, conv_transpose_implicit_gemm, indexing, tensors, tile_engine


def phase_grid_pixels(problem):
    """Output pixels of the largest stride phase (the grid's x extent, in pixels)."""
    return problem.batch * math.prod(-(-o // s) for o, s in zip(problem.out_spatial, problem.strides))


def _grid(problem, tile):
    pixels, channels = tile
    return (-(-phase_grid_pixels(problem) // pixels), tile_engine.channel_tiles(problem, channels),
            math.prod(problem.strides))


def _choose_ffma(problem, dtype, device=None, index_width="int32"):
    # The rows of this file's kernel (the tile engine's launch), for a call the tensor-core row
    # did not take.
    return algorithms.choose_conv_transpose_algorithm(problem, dtype, device, index_width, ffma_only=True)


KERNEL = tile_engine.TileKernel("conv_transpose.cu", "gc::conv_transpose", _choose_ffma, _grid).register()
KERNEL_FILE, TEMPLATE, THREADS = KERNEL.kernel_file, KERNEL.template, tile_engine.THREADS
name_expression, instantiations = KERNEL.name_expression, KERNEL.instantiations


def choose(problem, dtype, device=None, index_width="int32"):
    from .conv import active_device_info  # conv imports this module's neighbours: imported here

    return algorithms.choose_conv_transpose_algorithm(
        problem, dtype, device if device is not None else active_device_info(), index_width)


def on_tensor_cores(problem, x, kernel):
    """Whether the table sends this call to the tensor-core phases (the call's index width)."""
    algo = choose(problem, problem.dtype, index_width=indexing.call_width(problem, x, kernel))
    return algo.kernel_file == conv_implicit_gemm.KERNEL_FILE


def conv_transpose(problem, x, kernel, bias):
    if on_tensor_cores(problem, x, kernel):
        return tensors.through_channels_last(conv_transpose_implicit_gemm.conv_transpose, problem, x, kernel, bias)
    return KERNEL.run(problem, x, kernel, bias)


def conv_transpose_with_input_derivative(problem, x, kernel, bias, input_derivative):
    """``conv_transpose`` of ``x * act'(y)``, the derivative applied as the loader reads ``x``
    (see ``tile_engine.TileKernel.run``): the input gradient of a convolution with a fused relu /
    relu6 is this transposed convolution of its ``dy``."""
    return KERNEL.run(problem, x, kernel, bias, input_derivative)

"""Dense (grouped, strided, dilated) N-d convolution on the GPU: ``kernels/conv_direct.cu``.

``conv(problem, x, kernel, bias)`` follows the engine contract (``gpuconv.engines``). Every
instantiation it can request is registered at import (``registry.py``), and the CI check compiles
exactly that list. The launch is the tile engine's (``tile_engine.py``): one CTA per tile of
output pixels x filters of one group.
"""
from . import algorithms, tile_engine


def _grid(problem, tile):
    pixels, channels = tile
    return -(-problem.output_pixels // pixels), tile_engine.channel_tiles(problem, channels)


KERNEL = tile_engine.TileKernel("conv_direct.cu", "gc::conv_direct", algorithms.choose_conv_algorithm,
                                _grid).register()
KERNEL_FILE, TEMPLATE, THREADS = KERNEL.kernel_file, KERNEL.template, tile_engine.THREADS
name_expression, instantiations = KERNEL.name_expression, KERNEL.instantiations


def conv(problem, x, kernel, bias):
    return KERNEL.run(problem, x, kernel, bias)

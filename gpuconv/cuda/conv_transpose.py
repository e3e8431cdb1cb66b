"""Transposed (grouped, strided, dilated) N-d convolution on the GPU: ``kernels/conv_transpose.cu``.

``conv_transpose(x, kernel, bias, *, strides, dilation, groups, out_spatial, crop, channels_last,
activation)`` follows the engine contract (gpuconv/cpu/__init__.py): kernel ``(*k, F // groups,
C_in)``, ``y[o] = full[o + crop]`` of the scatter result. The kernel gathers per stride phase
(see the .cu file), so there are no atomics and two runs are bitwise identical.
"""
import numpy as np

from . import algorithms, compiler, epilogue, launch, tensors
from .indexing import index_type

KERNEL_FILE = "conv_transpose.cu"
TEMPLATE = "gc::conv_transpose"
THREADS = 256


def name_expression(dtype, channels_last, index_width, tile):
    return tensors.name_expression(TEMPLATE, dtype, channels_last, index_width, tile)


def instantiations():
    return tensors.tiled_instantiations(TEMPLATE)


compiler.register(KERNEL_FILE, instantiations())


def transpose_geometry(x_shape, kernel_shape, groups, out_spatial, channels_last):
    rank = len(kernel_shape) - 2
    return algorithms.ConvGeometry(
        batch=int(x_shape[0]), in_channels=int(tensors.channels_of(x_shape, channels_last)),
        out_channels=int(kernel_shape[-2]) * int(groups), groups=int(groups),
        in_spatial=tensors.as3d(tensors.spatial_of(x_shape, channels_last), 1),
        out_spatial=tensors.as3d(out_spatial, 1),
        kernel_size=tensors.as3d(kernel_shape[:rank], 1), channels_last=bool(channels_last),
    )


def phase_grid_pixels(geo, strides3):
    """Output pixels of the largest stride phase (the grid's x extent, in pixels)."""
    return geo.batch * int(np.prod([-(-o // s) for o, s in zip(geo.out_spatial, strides3)]))


def conv_transpose(x, kernel, bias, *, strides, dilation, groups, out_spatial, crop, channels_last, activation):
    x, kernel, bias = tensors.contiguous(x), tensors.contiguous(kernel), tensors.contiguous(bias)
    geo = transpose_geometry(x.shape, kernel.shape, groups, out_spatial, channels_last)
    from ..geometry import make_shape

    y = tensors.output_array(
        make_shape(geo.batch, geo.out_channels, out_spatial, "channels_last" if channels_last else "channels_first"),
        x.dtype,
    )
    if y.size == 0:
        return y
    strides3 = tensors.as3d(strides, 1)
    width = index_type(x, kernel, y)
    algo = algorithms.choose_conv_transpose_algorithm(geo, x.dtype, index_width=width)
    fn = compiler.get_function(KERNEL_FILE, name_expression(x.dtype, channels_last, width, algo.tile))
    pixels, channels = algorithms.TILE_SHAPES[algo.tile]
    grid = launch.grid_nd((
        -(-phase_grid_pixels(geo, strides3) // pixels),
        geo.groups * -(-geo.filters_per_group // channels),
        int(np.prod(strides3)),
    ))
    sizes = (
        geo.batch, geo.in_channels, geo.out_channels, geo.groups,
        *geo.in_spatial, *geo.out_spatial, *geo.kernel_size,
        *strides3, *tensors.as3d(dilation, 1), *tensors.as3d(crop, 0),
    )
    args = (x, kernel, launch.optional_pointer(bias), y,
            *(launch.index_scalar(v, width) for v in sizes), launch.int32_scalar(epilogue.activation_code(activation)))
    launch.launch(fn, grid, (THREADS, 1, 1), args)
    return y

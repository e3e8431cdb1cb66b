"""Dense (grouped, strided, dilated) N-d convolution on the GPU: ``kernels/conv_direct.cu``.

``conv(x, kernel, bias, *, strides, padding, dilation, groups, channels_last, activation)``
follows the engine contract (gpuconv/cpu/__init__.py). ``instantiations()`` lists every
instantiation this module can request; it is registered with the compiler at import, and the CI
check compiles exactly that list.
"""
from . import algorithms, compiler, epilogue, launch, tensors
from .indexing import index_type

KERNEL_FILE = "conv_direct.cu"
TEMPLATE = "gc::conv_direct"
THREADS = 256


def name_expression(dtype, channels_last, index_width, tile):
    return tensors.name_expression(TEMPLATE, dtype, channels_last, index_width, tile)


def instantiations():
    return tensors.tiled_instantiations(TEMPLATE)


compiler.register(KERNEL_FILE, instantiations())


def conv_geometry(x_shape, kernel_shape, strides, padding, dilation, groups, channels_last):
    """(ConvGeometry, 3-D kernel size, strides, dilation, leading pads) for a forward conv."""
    from ..geometry import padded_output_spatial

    rank = len(kernel_shape) - 2
    spatial = tensors.spatial_of(x_shape, channels_last)
    out = padded_output_spatial(spatial, kernel_shape[:rank], strides, padding, dilation)
    geo = algorithms.ConvGeometry(
        batch=int(x_shape[0]), in_channels=int(tensors.channels_of(x_shape, channels_last)),
        out_channels=int(kernel_shape[-1]), groups=int(groups),
        in_spatial=tensors.as3d(spatial, 1), out_spatial=tensors.as3d(out, 1),
        kernel_size=tensors.as3d(kernel_shape[:rank], 1), channels_last=bool(channels_last),
    )
    return geo, out


def conv(x, kernel, bias, *, strides, padding, dilation, groups, channels_last, activation):
    x, kernel, bias = tensors.contiguous(x), tensors.contiguous(kernel), tensors.contiguous(bias)
    geo, out_spatial = conv_geometry(x.shape, kernel.shape, strides, padding, dilation, groups, channels_last)
    from ..geometry import make_shape

    y = tensors.output_array(
        make_shape(geo.batch, geo.out_channels, out_spatial, "channels_last" if channels_last else "channels_first"),
        x.dtype,
    )
    if y.size == 0 or x.size == 0:
        return y
    width = index_type(x, kernel, y)
    algo = algorithms.choose_conv_algorithm(geo, x.dtype, index_width=width)
    fn = compiler.get_function(KERNEL_FILE, name_expression(x.dtype, channels_last, width, algo.tile))
    pixels, channels = algorithms.TILE_SHAPES[algo.tile]
    grid = launch.grid_nd((-(-geo.output_pixels // pixels), geo.groups * -(-geo.filters_per_group // channels)))
    sizes = (
        geo.batch, geo.in_channels, geo.out_channels, geo.groups,
        *geo.in_spatial, *geo.out_spatial, *geo.kernel_size,
        *tensors.as3d(strides, 1), *tensors.as3d(dilation, 1), *tensors.as3d([p[0] for p in padding], 0),
    )
    args = (x, kernel, launch.optional_pointer(bias), y,
            *(launch.index_scalar(v, width) for v in sizes), launch.int32_scalar(epilogue.activation_code(activation)))
    launch.launch(fn, grid, (THREADS, 1, 1), args)
    return y

"""The host side of the tile engine (``kernels/tile_fma.cuh``), shared by the two kernel files
built on it: ``conv_direct.cu`` (convolution) and ``conv_transpose.cu`` (its adjoint).

Why one module: both kernels take the same arguments in the same order, come in the same
instantiations (dtype x layout x index width x tile shape) and are launched the same way; only
the algorithm table and the grid differ. A :class:`TileKernel` names one of them; ``run`` is the
whole launch (inputs made contiguous, output allocated, algorithm chosen, arguments marshalled).
"""
import dataclasses

from . import algorithms, epilogue, launch, module_cache, registry, tensors

THREADS = 256  # the kernels' __launch_bounds__


@dataclasses.dataclass(frozen=True)
class TileKernel:
    kernel_file: str
    template: str
    choose: object  # algorithms.choose_*_algorithm
    grid: object  # callable(problem, (pixels, channels) per CTA) -> grid extents

    def name_expression(self, dtype, channels_last, index_width, tile):
        return tensors.name_expression(self.template, dtype, channels_last, index_width, tile)

    def instantiations(self):
        return tensors.tiled_instantiations(self.template)

    def register(self):
        registry.register(self.kernel_file, self.instantiations())
        return self

    def run(self, problem, x, kernel, bias, input_derivative=None, choose=None):
        """The launch. ``input_derivative``: None, or ``(code, y)`` from
        ``conv_backward.derivative_arguments`` when ``x`` is an output gradient whose forward op
        fused that activation (``y`` its output, shaped like ``x``): the loader then reads
        ``x * act'(y)``. ``choose``: the algorithm chooser, when not the kernel's own."""
        (x, kernel, bias), y, width = tensors.begin_call(problem, x, kernel, bias)
        if y.size == 0:
            return y
        algo = (choose or self.choose)(problem, x.dtype, index_width=width)
        fn = module_cache.get_function(self.kernel_file,
                                       self.name_expression(x.dtype, problem.channels_last, width, algo.tile))
        grid = launch.grid_nd(self.grid(problem, algorithms.TILE_SHAPES[algo.tile]))
        x_act, x_out = (0, x) if input_derivative is None else input_derivative
        args = (x, kernel, launch.optional_pointer(bias), y,
                *(launch.index_scalar(v, width) for v in window_sizes(problem)),
                launch.int32_scalar(epilogue.activation_code(problem.activation)),
                x_out, launch.int32_scalar(x_act))
        launch.launch(fn, grid, (THREADS, 1, 1), args)
        return y


def channel_tiles(problem, channels_per_cta):
    """The grid's y extent: every group's filters in tiles of ``channels_per_cta``."""
    return problem.groups * -(-problem.filters_per_group // channels_per_cta)


def window_sizes(problem):
    """The size arguments of both kernels, in their order, 3-D: N, C, F, groups, input, output
    and kernel extents, strides, dilation and the leading padding (a transposed convolution's
    crop)."""
    as3d = tensors.as3d
    return (
        problem.batch, problem.in_channels, problem.out_channels, problem.groups,
        *as3d(problem.in_spatial, 1), *as3d(problem.out_spatial, 1), *as3d(problem.kernel_size, 1),
        *as3d(problem.strides, 1), *as3d(problem.dilation, 1), *as3d(problem.pad_before, 0),
    )

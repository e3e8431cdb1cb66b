"""Dense (grouped, strided, dilated) N-d convolution on the GPU: ``kernels/conv_direct.cu``.

``conv(problem, x, kernel, bias)`` follows the engine contract (``gpuconv.engines``). Every
instantiation it can request is registered at import (``registry.py``), and the CI check compiles
exactly that list. The launch is the tile engine's (``tile_engine.py``): one CTA per tile of
output pixels x filters of one group. Where the algorithm table picks the tensor-core row
(``implicit_gemm``, ``implicit_gemm_128``), ``conv_implicit_gemm.conv`` runs instead with the
row's tile (a channels_first problem through two layout copies); the table sees the active device
(its compute capability decides whether mma.sync exists).
"""
import functools

from . import algorithms, conv_implicit_gemm, indexing, tensors, tile_engine


def _grid(problem, tile):
    pixels, channels = tile
    return -(-problem.output_pixels // pixels), tile_engine.channel_tiles(problem, channels)


def active_device_info():
    """What the table asks of the active device (``compute_capability``): the seam's device when
    it says (the emulator, the dry run), CuPy's current device behind the CuPy seam, else None
    (a device that does not say: the rows that need no device feature)."""
    from . import device

    dev = device.active()
    if hasattr(dev, "compute_capability"):
        return dev
    if getattr(dev, "name", None) == "cuda":
        import cupy

        return cupy.cuda.Device()
    return None


def choose(problem, dtype, device=None, index_width="int32"):
    return algorithms.choose_conv_algorithm(problem, dtype, device if device is not None else active_device_info(),
                                            index_width)


KERNEL = tile_engine.TileKernel("conv_direct.cu", "gc::conv_direct", choose, _grid).register()
KERNEL_FILE, TEMPLATE, THREADS = KERNEL.kernel_file, KERNEL.template, tile_engine.THREADS
name_expression, instantiations = KERNEL.name_expression, KERNEL.instantiations


def choose_with_input_derivative(problem, dtype, device=None, index_width="int32"):
    """The table's choice among the rows whose loader applies an input derivative (the FFMA
    tiles of tile_fma.cuh; the tensor-core loader does not)."""
    return algorithms.choose_conv_algorithm(problem, dtype, device if device is not None else active_device_info(),
                                            index_width, input_derivative=True)


def conv_with_input_derivative(problem, x, kernel, bias, input_derivative):
    """``conv`` of ``x * act'(y)``, the derivative applied as the loader reads ``x`` (see
    ``tile_engine.TileKernel.run``): the input gradient of a transposed convolution with a fused
    relu / relu6 is this convolution of its ``dy``."""
    return KERNEL.run(problem, x, kernel, bias, input_derivative, choose=choose_with_input_derivative)


def tensor_core_tile(problem, x, kernel):
    """The tensor-core tile (``conv_implicit_gemm.TILES``) the table picks for this call, or None
    where it picks an FFMA row (the index width that of the call, ``indexing.call_width``)."""
    algo = choose(problem, problem.dtype, index_width=indexing.call_width(problem, x, kernel))
    return algo.tile if algo.kernel_file == conv_implicit_gemm.KERNEL_FILE else None


def on_tensor_cores(problem, x, kernel):
    return tensor_core_tile(problem, x, kernel) is not None


def conv(problem, x, kernel, bias):
    tile = tensor_core_tile(problem, x, kernel)
    if tile is None:
        return KERNEL.run(problem, x, kernel, bias)
    # channels_first through two layout copies (tensors.through_channels_last says why)
    return tensors.through_channels_last(functools.partial(conv_implicit_gemm.conv, tile=tile), problem, x, kernel,
                                         bias)

"""Dense (grouped, strided, dilated) N-d convolution on the GPU: ``kernels/conv_direct.cu``.

``conv(problem, x, kernel, bias)`` follows the engine contract (``gpuconv.engines``). Every
instantiation it can request is registered at import (``registry.py``), and the CI check compiles
exactly that list. The launch is the tile engine's (``tile_engine.py``): one CTA per tile of
output pixels x filters of one group. Where the algorithm table picks the tensor-core row
(``implicit_gemm``), ``conv_implicit_gemm.conv`` runs instead (a channels_first problem through
two layout copies); the table sees the active device (its compute capability decides whether
mma.sync exists).
"""
import dataclasses

import numpy as np

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


def conv(problem, x, kernel, bias):
    # The index width begin_call will find (the contiguous copies' spans), so the table sees it.
    width = indexing.index_type(tuple(x.shape), tuple(kernel.shape), tuple(problem.output_shape),
                                itemsize=np.dtype(problem.dtype).itemsize)
    if choose(problem, problem.dtype, index_width=width).kernel_file == conv_implicit_gemm.KERNEL_FILE:
        if problem.channels_last:
            return conv_implicit_gemm.conv(problem, x, kernel, bias)
        return _tensor_cores_through_channels_last(problem, x, kernel, bias)
    return KERNEL.run(problem, x, kernel, bias)


def _tensor_cores_through_channels_last(problem, x, kernel, bias):
    """A channels_first problem on the tensor-core kernel: x re-laid to channels_last, the
    kernel run there, its output re-laid back (the kernel's layout: Keras' weights do not
    depend on data_format).

    Why copies rather than a loader that reads NCHW: the kernel's 16-byte cp.async rows run
    along channels, which NCHW strides by the pixel count; a transposing loader needs another
    shared-memory layout and ldmatrix.trans for both operands. The two copies are memory-bound
    passes over x and y (4 bytes moved per element of each at fp16: read + write), against a
    compute-bound GEMM that tensor cores run ~15x faster than the FFMA kernel that would
    otherwise take channels_first float16 (the README's plan table has the estimates).
    """
    x_last = tensors.relaid(tensors.contiguous(x), channels_last=False)
    y_last = conv_implicit_gemm.conv(dataclasses.replace(problem, channels_last=True), x_last, kernel, bias)
    return tensors.relaid(y_last, channels_last=True)

"""Array and geometry helpers shared by the CUDA op modules.

``contiguous(a)``             a C-contiguous array on the active device (None passes through);
                              views with gaps, negative or zero strides are copied, never handed
                              to a kernel (robustness items 16-19).
``spatial_of(shape, channels_last)``, ``channels_of(shape, channels_last)``
``as3d(values, fill)``        rank-1/2/3 tuples padded in front to 3 dims (kernels are 3-D; unused
                              leading dims have size 1, stride 1, dilation 1, padding 0).
``KERNEL_DTYPES``             the dtypes every kernel family is instantiated for.
``name_expression(template, dtype, channels_last, index_width, *extra)``
                              ``'gc::conv_direct<float, 0, int, 1>'``: the C++ name of one
                              instantiation; layout 0 = channels_last, 1 = channels_first
                              (gc::Layout), index 'int32' -> int, 'int64' -> long long
                              (spelled by ``registry.template_name``).
``tiled_instantiations(template)``
                              every instantiation of a tile-engine kernel (conv_direct.cu,
                              conv_transpose.cu): dtype x layout x index width x its tiles.
``output_array(shape, dtype)`` an uninitialised output on the active device.
``transposed(a, axes)``       a contiguous device copy with its axes permuted.
``swapaxes(a, i, j)``         a contiguous device copy with two axes swapped.
``relaid(a, channels_last)``  a contiguous device copy of an activation tensor in the other layout.
``view(a, index)``            the device view ``a[index]`` (slices).
``through_channels_last(run, problem, x, ...)``  a channels_last-only kernel run on either layout.
"""
import dataclasses

import numpy as np

from . import algorithms, registry

KERNEL_DTYPES = (np.dtype("float32"), np.dtype("float16"), np.dtype("float64"))
INDEX_WIDTHS = ("int32", "int64")
LAYOUT_CHANNELS_LAST = 0
LAYOUT_CHANNELS_FIRST = 1


def contiguous(a):
    if a is None:
        return None
    from . import device

    return device.active().contiguous(a)


def layout_code(channels_last):
    return LAYOUT_CHANNELS_LAST if channels_last else LAYOUT_CHANNELS_FIRST


def spatial_of(shape, channels_last):
    return tuple(shape[1:-1]) if channels_last else tuple(shape[2:])


def channels_of(shape, channels_last):
    return shape[-1] if channels_last else shape[1]


def as3d(values, fill):
    # Every op has 1 to 3 spatial dims: an empty tuple (a lost rank) must not pass as a 1x1x1 one.
    values = tuple(int(v) for v in values)
    if not 1 <= len(values) <= 3:
        raise ValueError(f"kernels handle 1 to 3 spatial dims; received {values}")
    return (fill,) * (3 - len(values)) + values


def name_expression(template, dtype, channels_last, index_width, *extra):
    return registry.template_name(template, dtype, layout_code(channels_last), index_width, *extra)


def tiled_instantiations(template):
    return [
        name_expression(template, dtype, cl, width, tile)
        for dtype in KERNEL_DTYPES
        for cl in (True, False)
        for width in INDEX_WIDTHS
        for tile in algorithms.tiles_for(dtype, width)
    ]


def output_array(shape, dtype):
    from . import device

    return device.active().empty(tuple(int(s) for s in shape), dtype)


def transposed(a, axes):
    """A contiguous device copy of ``a`` with its axes permuted as ``axes`` says."""
    from . import device

    dev = device.active()
    return dev.contiguous(dev.transpose(a, tuple(axes)))


def swapaxes(a, axis1, axis2):
    """A contiguous copy of ``a`` with two axes swapped (weight re-layouts)."""
    axes = list(range(a.ndim))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return transposed(a, axes)


def view(a, index):
    """The device view ``a[index]`` (a tuple of slices; not a copy)."""
    from . import device

    return device.active().view(a, tuple(index))


def through_channels_last(run, problem, x, *operands):
    """``run(problem, x, *operands)`` of a kernel that reads and writes channels_last only: a
    channels_first problem goes through two layout copies, x re-laid to channels_last, the kernel
    run there, its output re-laid back (the weights do not depend on data_format in Keras).

    Why copies rather than a loader that reads NCHW (the tensor-core kernels): their 16-byte
    cp.async rows run along channels, which NCHW strides by the pixel count; a transposing loader
    needs another shared-memory layout and ldmatrix.trans for both operands. The two copies are
    memory-bound passes over x and y (4 bytes moved per element of each at fp16: read + write),
    against a compute-bound GEMM that tensor cores run ~15x faster than the FFMA kernel that would
    otherwise take channels_first float16 (the README's plan table has the estimates).
    """
    if problem.channels_last:
        return run(problem, x, *operands)
    x_last = relaid(contiguous(x), channels_last=False)
    y_last = run(dataclasses.replace(problem, channels_last=True), x_last, *operands)
    return relaid(y_last, channels_last=True)


def relaid(a, channels_last):
    """A contiguous copy of the activation tensor ``a`` in the other layout: ``channels_last``
    is the layout of ``a``; (N, *spatial, C) <-> (N, C, *spatial)."""
    return transposed(a, _relayout_axes(a.ndim, channels_last))


def _relayout_axes(ndim, channels_last):
    if channels_last:  # (N, *spatial, C) -> (N, C, *spatial)
        return (0, ndim - 1, *range(1, ndim - 1))
    return (0, *range(2, ndim), 1)  # (N, C, *spatial) -> (N, *spatial, C)


def begin_call(problem, *arrays):
    """The first steps of every CUDA op: its inputs C-contiguous on the active device (None, an
    absent bias, passes through), the output allocated at ``problem.output_shape`` in the
    problem's dtype, and the index width that addresses all of them
    (``'int32'``/``'int64'``, ``indexing.index_type``). Returns ``(arrays, output, width)``."""
    from .indexing import index_type

    arrays = tuple(contiguous(a) for a in arrays)
    y = output_array(problem.output_shape, problem.dtype)
    return arrays, y, index_type(*[a for a in arrays if a is not None], y)

"""Choosing the index width of a launch: 32-bit offsets where they cannot overflow, else 64-bit.

``index_type(*arrays_or_shapes, itemsize=8) -> 'int32' | 'int64'``
    'int64' as soon as any argument can reach a byte offset of 2**31 or more. An argument is an
    array (anything with ``shape``, ``strides`` and ``itemsize``: NumPy or CuPy, views included)
    or a plain shape tuple, taken as a C-contiguous array of ``itemsize``-byte elements.

The measure is CuPy's: the byte span ``itemsize + sum((n - 1) * |stride|)`` of each array, so
negative strides count by magnitude and an empty array spans nothing. Byte (not element) offsets
keep a margin: every element index, and every intermediate product a kernel forms from sizes of
these arrays (``(n*C + c)*H*W + p``), is then below 2**31 too. No memory is touched, so tests can
ask about terabyte views built with ``numpy.lib.stride_tricks.as_strided``.

Debug setting ``GPUCONV_FORCE_INDEX_WIDTH``: ``int64`` makes every launch take its 64-bit
instantiation, so those can be run (and checked, e.g. on the cuda-emulator) on small tensors;
``int32`` (or unset) is the normal choice, which still answers 'int64' where 32-bit offsets would
overflow. Anything else is refused when a width is chosen (ValueError).
"""
import os

import numpy as np

INT32_LIMIT = 2**31
FORCE_ENV = "GPUCONV_FORCE_INDEX_WIDTH"
FORCE_CHOICES = ("int32", "int64")


def forced_width():
    """The value of GPUCONV_FORCE_INDEX_WIDTH ('int32' / 'int64'), None when unset or empty."""
    text = os.environ.get(FORCE_ENV, "")
    if text == "":
        return None
    if text not in FORCE_CHOICES:
        raise ValueError(f"Invalid value for {FORCE_ENV}: expected one of {FORCE_CHOICES} or unset. Received: {text!r}")
    return text


def byte_span(shape, strides, itemsize):
    """Bytes from the lowest to one past the highest element an array can address."""
    shape = tuple(int(n) for n in shape)
    if any(n == 0 for n in shape):
        return 0
    return int(itemsize) + sum((n - 1) * abs(int(s)) for n, s in zip(shape, strides))


def contiguous_strides(shape, itemsize):
    strides, step = [], int(itemsize)
    for n in reversed(tuple(shape)):
        strides.append(step)
        step *= max(int(n), 1)
    return tuple(reversed(strides))


def _span_of(obj, itemsize):
    if hasattr(obj, "shape") and hasattr(obj, "strides") and hasattr(obj, "itemsize"):
        return byte_span(obj.shape, obj.strides, obj.itemsize)
    try:
        shape = tuple(int(n) for n in obj)
    except TypeError:
        raise TypeError(f"index_type expects arrays or shape tuples; received {type(obj).__name__}: {obj!r}") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"index_type: negative dimension in shape {shape}")
    return byte_span(shape, contiguous_strides(shape, itemsize), itemsize)


def index_type(*arrays_or_shapes, itemsize=8):
    """'int32' if every byte span is below 2**31, else 'int64' (always 'int64' with
    GPUCONV_FORCE_INDEX_WIDTH=int64)."""
    if not arrays_or_shapes:
        raise TypeError("index_type needs at least one array or shape")
    forced = forced_width()
    span = max(_span_of(a, itemsize) for a in arrays_or_shapes)
    if forced == "int64" or span >= INT32_LIMIT:
        return "int64"
    return "int32"


def call_width(problem, x, kernel):
    """The index width a call of ``problem`` on ``x`` and ``kernel`` will run at (the spans of the
    contiguous copies and of the output ``tensors.begin_call`` makes), for the algorithm table to
    see before the call."""
    return index_type(tuple(x.shape), tuple(kernel.shape), tuple(problem.output_shape),
                      itemsize=np.dtype(problem.dtype).itemsize)


def numpy_index_dtype(width):
    """np.int32 / np.int64 for 'int32' / 'int64'."""
    return {"int32": np.int32, "int64": np.int64}[width]

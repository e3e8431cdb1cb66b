"""Issue 8, section 3: sizes are checked before any work, in Python ints.

- Every size argument (kernel size, strides, dilation, pool size, output padding, upsampling
  size, cropping/padding amounts, filters, groups) is range-checked: past ``geometry.MAX_SIZE``
  it is a ValueError naming the argument and echoing the value, never NumPy's OverflowError or
  "array is too big"; so are derived extents (a dilated kernel, a transposed conv's output).
- A request whose output needs more memory than the process can get is refused before anything
  is allocated, with ``AllocationTooLargeError`` (a MemoryError and a ValueError) naming the
  shape and the bytes (checklist item 9).
- The work is bounded by the taps that can touch real input: a 10**7-cell pooling window over 8
  cells and a transposed conv with a 10**6-tap kernel finish at once, with the results (and the
  NaN/Inf semantics) of the float64 reference.
- A transposed conv whose output length is 0 raises Keras' "Computed output size would be zero
  or negative", as conv and pooling do (one rule for all).
"""
import math
import time
import tracemalloc

import numpy as np
import pytest

import gpuconv
from gpuconv import errors, layers, ops
from gpuconv import geometry as g
from gpuconv.cpu import memory

import reference as ref
from conftest import assert_close

BIG = (2**31, 2**40, 2**59, 2**63, 2**100)
CL, CF = "channels_last", "channels_first"


@pytest.fixture(autouse=True)
def numpy_engine(restore_backend):
    gpuconv.set_backend("numpy")


def x1(length=8, channels=2, n=1):
    return np.random.default_rng(0).standard_normal((n, length, channels))


def x2(size=5, channels=2):
    return np.random.default_rng(1).standard_normal((1, size, size, channels))


# --------------------------------------------------------------------------------------------
# Every size argument is range-checked, naming the argument and echoing the value
# --------------------------------------------------------------------------------------------
def _op_calls(v):
    """(argument name, zero-argument call) with the size argument set to ``v``."""
    x, k, kt = x1(), np.ones((3, 2, 2)), np.ones((3, 2, 2))
    return [
        ("strides", lambda: ops.conv(x, k, strides=v)),
        ("dilation_rate", lambda: ops.conv(x, k, dilation_rate=v, padding="same")),
        ("strides", lambda: ops.conv_transpose(x, kt, strides=v)),
        ("dilation_rate", lambda: ops.conv_transpose(x, kt, dilation_rate=v)),
        ("output_padding", lambda: ops.conv_transpose(x, kt, strides=2, output_padding=v)),
        ("dilation_rate", lambda: ops.depthwise_conv(x, np.ones((3, 2, 1)), dilation_rate=v, padding="same")),
        ("strides", lambda: ops.separable_conv(x, np.ones((3, 2, 1)), np.ones((1, 2, 2)), strides=v)),
        ("pool_size", lambda: ops.max_pool(x, v, strides=1, padding="same")),
        ("strides", lambda: ops.average_pool(x, 2, strides=v)),
        ("size", lambda: ops.upsampling_core(x, (v,), "nearest", CL)),
        ("groups", lambda: ops.conv_transpose_core(x, kt, groups=v)),
        ("kernel_size", lambda: ops.locally_connected_core(x, np.ones((6, 6, 2)), kernel_size=v)),
        ("strides", lambda: ops.locally_connected_core(x, np.ones((6, 6, 2)), kernel_size=3, strides=v)),
    ]


@pytest.mark.parametrize("value", BIG)
@pytest.mark.parametrize("index", range(len(_op_calls(1))))
def test_an_out_of_range_size_argument_is_a_value_error_naming_it(index, value):
    name, call = _op_calls(value)[index]
    with pytest.raises(ValueError) as info:
        call()
    text = str(info.value)
    assert f"`{name}`" in text and str(value) in text, text
    assert type(info.value) is ValueError  # not an OverflowError, not NumPy's "array is too big"


@pytest.mark.parametrize("make", [
    lambda v: layers.Conv2D(2, v),
    lambda v: layers.Conv2D(2, 3, strides=v),
    lambda v: layers.Conv1DTranspose(2, 3, dilation_rate=v),
    lambda v: layers.MaxPooling2D(v),
    lambda v: layers.UpSampling2D(v),
    lambda v: layers.Cropping2D(((v, 0), (0, 0))),
    lambda v: layers.ZeroPadding2D(((0, v), (0, 0))),
    lambda v: layers.Conv2D(v, 3),
    lambda v: layers.Conv2D(4, 3, groups=v),
])
def test_layer_constructors_refuse_out_of_range_sizes(make):
    with pytest.raises(ValueError, match=str(2**40)):
        make(2**40)


def test_the_largest_size_is_accepted_where_it_makes_sense():
    """MAX_SIZE itself passes: a stride of 2**31 - 1 over 8 cells is one output."""
    x = x1()
    y = ops.conv(x, np.ones((3, 2, 2)), strides=g.MAX_SIZE)
    np.testing.assert_allclose(y, ref.conv(x, np.ones((3, 2, 2)), strides=g.MAX_SIZE))


def test_a_dilated_kernel_longer_than_the_largest_size_is_refused():
    with pytest.raises(ValueError, match=r"dilated kernel extent.*2147483649.*dilation_rate=\(1073741824,\)"):
        ops.conv(x1(), np.ones((3, 2, 2)), dilation_rate=2**30, padding="same")


@pytest.mark.parametrize("call,what", [
    (lambda: ops.conv_transpose(x1(4), np.ones((2, 2, 2)), strides=2**30), "transposed convolution"),
    (lambda: ops.upsampling_core(x1(4), (2**30,), "nearest", CL), "upsampling"),
])
def test_an_output_longer_than_the_largest_size_is_refused(call, what):
    with pytest.raises(ValueError, match=f"Computed output size 4294967296 of the {what}"):
        call()


# --------------------------------------------------------------------------------------------
# Requests that would need terabytes: refused before allocating, naming the shape and the bytes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call,shape", [
    (lambda: ops.upsampling_core(x2(4), (2**28, 2**28), "nearest", CL), (1, 2**30, 2**30, 2)),
    (lambda: ops.conv_transpose(x2(4), np.ones((2, 2, 3, 2)), strides=2**20), (1, 2**22, 2**22, 3)),
    (lambda: ops.upsampling_core(x2(4, 1), (2**28, 2**28), "bilinear", CL), (1, 2**30, 2**30, 1)),
])
def test_a_terabyte_output_is_refused_before_anything_is_allocated(call, shape):
    nbytes = math.prod(shape) * 8
    tracemalloc.start()
    try:
        with pytest.raises(errors.AllocationTooLargeError) as info:
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(info.value, MemoryError) and isinstance(info.value, ValueError)
    assert f"shape {shape}" in str(info.value) and f"needs {nbytes} bytes" in str(info.value), str(info.value)
    assert peak < 2**20, f"{peak} bytes were allocated before the refusal"


def test_the_limit_is_the_memory_the_process_can_get(monkeypatch):
    """Just above the limit: refused, with the limit in the message; at it: computed."""
    x = x2(8)
    w = np.ones((3, 3, 2, 4))
    out_bytes = 8 * 8 * 4 * 8
    monkeypatch.setattr(memory, "ALLOCATION_LIMIT_BYTES", out_bytes - 1)
    with pytest.raises(errors.AllocationTooLargeError, match=f"more than the {out_bytes - 1} bytes"):
        ops.conv(x, w, padding="same")
    monkeypatch.setattr(memory, "ALLOCATION_LIMIT_BYTES", out_bytes + 10**6)
    assert_close(ops.conv(x, w, padding="same"), ref.conv(x, w, padding="same"), "float64")
    assert memory.allocation_limit() == out_bytes + 10**6


def test_the_default_limit_is_the_machines_memory():
    limit = memory.allocation_limit()
    assert limit is None or 2**26 < limit < 2**60


def test_an_empty_input_with_a_huge_output_is_refused_too():
    """Zero input channels give the bias broadcast over the output: that output is checked too."""
    x = np.zeros((1, 4, 4, 0))
    with pytest.raises(errors.AllocationTooLargeError, match=r"shape \(1, 2097152, 2097152, 1048576\)"):
        ops.conv_transpose_core(x, np.zeros((2, 2, 2**20, 0)), strides=2**19)


# --------------------------------------------------------------------------------------------
# The work is bounded by the taps that can touch real input
# --------------------------------------------------------------------------------------------
def _timed(call):
    """The call completes (in milliseconds now; the assertions are on values, not on time, and
    the bound is generous for a loaded CI machine: before issue 8 these took 20 s and more)."""
    start = time.perf_counter()
    y = call()
    assert time.perf_counter() - start < 10.0
    return y


@pytest.mark.parametrize("mode", ["max", "average"])
def test_a_ten_million_cell_pooling_window_over_eight_cells(mode):
    """The issue's case (23 s before): every window covers the whole input."""
    x = x1()
    x[0, 3, 1] = np.nan
    y = _timed(lambda: ops.pool_core(x, mode, 10**7, strides=1, padding="same"))
    assert_close(y, ref.pool(x, mode, 10**7, strides=1, padding="same"), "float64")
    assert np.isnan(y[0, :, 1]).all() and not np.isnan(y[0, :, 0]).any()


@pytest.mark.parametrize("mode", ["max", "average"])
@pytest.mark.parametrize("data_format", [CL, CF])
@pytest.mark.parametrize("pool_size,strides", [((9, 1), (1, 1)), ((40, 7), (3, 2)), ((5, 30), (4, 1)),
                                               ((6, 6), (6, 6))])
def test_pooling_windows_larger_than_the_input_equal_the_reference(mode, data_format, pool_size, strides):
    x = np.random.default_rng(2).standard_normal((2, 5, 4, 3))
    x[0, 1, 2, 0], x[1, 4, 0, 2] = np.inf, -np.inf
    x = x if data_format == CL else np.moveaxis(x, -1, 1)
    for padding in ("same", "valid"):
        kwargs = dict(pool_size=pool_size, strides=strides, padding=padding, data_format=data_format)
        if any(ref.pool_geometry(L, p, s, padding)[0] <= 0 for L, p, s in zip((5, 4), pool_size, strides)):
            continue
        assert_close(ops.pool_core(x, mode, **kwargs), ref.pool(x, mode, **kwargs), "float64")


def test_a_transposed_conv_with_a_million_tap_kernel():
    """The issue's case (22 s before): 'same' over 4 inputs keeps the 7 taps that land in the output."""
    x = x1(4)
    w = np.random.default_rng(3).standard_normal((10**6, 2, 2))
    y = _timed(lambda: ops.conv_transpose(x, w, padding="same"))
    out_len, crop = ref.transpose_geometry(4, 10**6, 1, 1, "same", None)
    # y[o] = sum_i W[o + crop - i] @ x[i] (the scatter definition, written out for stride 1)
    want = np.zeros((1, out_len, 2))
    for o in range(out_len):
        for i in range(4):
            want[0, o] += w[o + crop - i] @ x[0, i]
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("data_format", [CL, CF])
@pytest.mark.parametrize("strides,dilation,padding,output_padding", [
    (1, 1, "same", None), (2, 1, "same", None), (1, 3, "same", None), (3, 1, "same", 2), (1, 2, "valid", 0),
])
def test_transposed_taps_landing_only_on_cropped_cells_are_left_out_exactly(data_format, strides, dilation, padding,
                                                                            output_padding):
    """A long kernel over a short input, with Inf and NaN on taps that land only on cropped
    cells (they must not poison the output) and on taps that land inside (they must)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 2))
    w = rng.standard_normal((21, 3, 2))
    w[0, 0, 0], w[20, 1, 1], w[10, 2, 0] = np.inf, np.nan, -np.inf
    x = x if data_format == CL else np.moveaxis(x, -1, 1)
    kwargs = dict(strides=strides, padding=padding, output_padding=output_padding, data_format=data_format,
                  dilation_rate=dilation)
    want = ref.conv_transpose(x, w, **kwargs)
    assert_close(ops.conv_transpose(x, w, **kwargs), want, "float64")
    assert np.isfinite(want).any() and not np.isfinite(want).all()


@pytest.mark.parametrize("op", ["conv", "depthwise", "separable"])
@pytest.mark.parametrize("data_format", [CL, CF])
def test_taps_reading_only_padding_keep_their_nan(op, data_format):
    """3 taps, dilation 7, 'same' over 5 cells: taps 0 and 2 read only padding, at every output.
    An Inf there still gives 0 * Inf = NaN everywhere for the channels it feeds, as the zero
    padding of the reference says."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 3))
    x = x if data_format == CL else np.moveaxis(x, -1, 1)
    kwargs = dict(padding="same", dilation_rate=7, data_format=data_format)
    if op == "conv":
        w = rng.standard_normal((3, 3, 4))
        w[0, 1, 2] = np.inf  # filter 2 is NaN everywhere
        got, want = ops.conv(x, w, **kwargs), ref.conv(x, w, **kwargs)
    elif op == "depthwise":
        w = rng.standard_normal((3, 3, 2))
        w[2, 1, 0] = np.nan  # output channel 1*2 + 0 is NaN everywhere
        got, want = ops.depthwise_conv(x, w, **kwargs), ref.depthwise_conv(x, w, **kwargs)
    else:
        w = rng.standard_normal((3, 3, 1))
        w[0, 0, 0] = -np.inf
        p = rng.standard_normal((1, 3, 2))
        got, want = ops.separable_conv(x, w, p, **kwargs), ref.separable_conv(x, w, p, **kwargs)
    assert np.isnan(want).any() and (op == "separable" or not np.isnan(want).all())  # pointwise mixes all
    assert_close(got, want, "float64")


@pytest.mark.parametrize("op", ["conv", "depthwise", "max", "average"])
def test_a_huge_dilation_under_same_reads_only_the_centre(op):
    """dilation 2**29 'same' over 8 cells (a 2**30-cell padding before): only the centre tap reads
    the input; it finishes at once and equals that tap alone (the reference cannot pad that far;
    its small twin, dilation 9, is compared with it)."""
    x = x1()
    if op in ("max", "average"):
        y = _timed(lambda: ops.pool_core(x, op, 2**29, strides=1, padding="same"))
        assert_close(y, ref.pool(x, op, 2**29, strides=1, padding="same"), "float64")
        return
    w = np.random.default_rng(6).standard_normal((3, 2, 2) if op == "conv" else (3, 2, 1))
    call = ops.conv if op == "conv" else ops.depthwise_conv
    oracle = ref.conv if op == "conv" else ref.depthwise_conv
    y = _timed(lambda: call(x, w, dilation_rate=2**29, padding="same"))
    assert_close(y, oracle(x, w, dilation_rate=9, padding="same"), "float64")
    assert_close(y, oracle(x, w[1:2], padding="same"), "float64")


def test_a_kernel_that_reads_only_padding_everywhere():
    """Every tap of every output falls in the padding (1 cell, 2 taps 5 apart): the output is the
    0 * w sums of the reference: 0, or NaN where a weight is not finite."""
    x = np.random.default_rng(7).standard_normal((1, 1, 2))
    w = np.ones((2, 2, 3))
    w[1, 0, 2] = np.inf
    for call, oracle, kernel in ((ops.conv, ref.conv, w), (ops.depthwise_conv, ref.depthwise_conv, w[:, :, :1])):
        want = oracle(x, kernel, dilation_rate=5, padding="same")
        assert_close(call(x, kernel, dilation_rate=5, padding="same"), want, "float64")


# --------------------------------------------------------------------------------------------
# One rule for all: an empty output is refused
# --------------------------------------------------------------------------------------------
ZERO_TEXT = "Computed output size would be zero or negative"


@pytest.mark.parametrize("data_format", [CL, CF])
def test_a_transposed_conv_of_output_length_zero_raises_like_conv_and_pooling(data_format):
    x = np.ones((1, 1, 1, 2)) if data_format == CL else np.ones((1, 2, 1, 1))
    with pytest.raises(ValueError, match=ZERO_TEXT):
        ops.conv_transpose(x, np.ones((2, 2, 3, 2)), padding="same", output_padding=0, data_format=data_format)
    layer = layers.Conv2DTranspose(3, 2, padding="same", output_padding=0, data_format=data_format)
    with pytest.raises(ValueError, match=ZERO_TEXT):
        layer.compute_output_shape(x.shape)
    with pytest.raises(ValueError, match=ZERO_TEXT):
        layer(x.astype(np.float32))
    # and the same text as conv and pooling
    with pytest.raises(ValueError, match=ZERO_TEXT):
        ops.conv(x, np.ones((3, 3, 2, 1)), data_format=data_format)
    with pytest.raises(ValueError, match=ZERO_TEXT):
        ops.max_pool(x, 3, data_format=data_format)


def test_unknown_sizes_still_give_unknown_transposed_outputs():
    layer = layers.Conv2DTranspose(3, 2, padding="same", output_padding=0)
    assert layer.compute_output_shape((None, None, 4, 2)) == [None, None, 3, 3]


def test_locally_connected_with_an_empty_output_raises():
    with pytest.raises(ValueError, match=ZERO_TEXT):
        ops.locally_connected_core(x1(2), np.ones((1, 6, 2)), kernel_size=3)


@pytest.mark.parametrize("layer", ["ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
                                   "Cropping3D"])
def test_an_int_padding_or_cropping_past_the_largest_size_is_refused_naming_it(layer):
    from gpuconv import layers

    name = "padding" if layer.startswith("Zero") else "cropping"
    with pytest.raises(ValueError, match=f"`{name}`") as e:
        getattr(layers, layer)(2**40)
    assert str(2**40) in str(e.value) and str(2**31 - 1) in str(e.value)

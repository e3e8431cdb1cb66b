"""Bad input, edge cases and layouts at the ops level: every item of
/work/shared/robustness_checklist.md that applies without a GPU (numbers in the test names/docs).

Rules exercised: argument problems raise ValueError/TypeError naming the argument and echoing
the value; empty inputs return empty outputs of the right shape; inputs are never mutated; any
memory layout gives the contiguous result; NaN/Inf land where the float64 reference puts them.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import ops

import reference as ref
from conftest import assert_close, random_array

CL, CF = "channels_last", "channels_first"


def host(y):
    return gpuconv.to_numpy(y)


# --------------------------------------------------------------------------------------------
# A small catalogue of calls, one per op, used by the layout / mutation / empty tests.
# Each entry: name -> (build(rng, integers) -> arrays, call(arrays) -> output, reference(arrays)).
# --------------------------------------------------------------------------------------------
def _conv_arrays(rng, integers, n=2):
    return [random_array(rng, (n, 7, 6, 4), integers=integers), random_array(rng, (3, 2, 2, 6), integers=integers),
            random_array(rng, (6,), integers=integers)]


def _transpose_arrays(rng, integers, n=2):
    return [random_array(rng, (n, 4, 3, 4), integers=integers), random_array(rng, (3, 2, 3, 4), integers=integers),
            random_array(rng, (6,), integers=integers)]


def _depthwise_arrays(rng, integers, n=2):
    return [random_array(rng, (n, 7, 6, 4), integers=integers), random_array(rng, (3, 2, 4, 2), integers=integers),
            random_array(rng, (8,), integers=integers)]


def _separable_arrays(rng, integers, n=2):
    return [random_array(rng, (n, 7, 6, 4), integers=integers), random_array(rng, (3, 2, 4, 2), integers=integers),
            random_array(rng, (1, 1, 8, 5), integers=integers), random_array(rng, (5,), integers=integers)]


def _pool_arrays(rng, integers, n=2):
    return [random_array(rng, (n, 7, 6, 4), integers=integers)]


def _lc_arrays(rng, integers, n=2):
    # 7x6 input, kernel 2x2, 'same' -> 7x6 positions
    return [random_array(rng, (n, 7, 6, 4), integers=integers), random_array(rng, (42, 16, 3), integers=integers),
            random_array(rng, (7, 6, 3), integers=integers)]


def _upsample_arrays(rng, integers, n=2):
    return [random_array(rng, (n, 3, 4, 2), integers=integers)]


CATALOGUE = {
    "conv": (_conv_arrays,
             lambda a: ops.conv_core(a[0], a[1], a[2], strides=(2, 1), padding="same", data_format=CL),
             lambda a: ref.conv(a[0], a[1], a[2], strides=(2, 1), padding="same")),
    "conv_transpose": (_transpose_arrays,
                       lambda a: ops.conv_transpose_core(a[0], a[1], a[2], strides=2, padding="same", groups=2,
                                                         data_format=CL),
                       lambda a: ref.conv_transpose(a[0], a[1], a[2], strides=2, padding="same", groups=2)),
    "depthwise_conv": (_depthwise_arrays,
                       lambda a: ops.depthwise_conv_core(a[0], a[1], a[2], padding="same", dilation_rate=2,
                                                         data_format=CL),
                       lambda a: ref.depthwise_conv(a[0], a[1], a[2], padding="same", dilation_rate=2)),
    "separable_conv": (_separable_arrays,
                       lambda a: ops.separable_conv_core(a[0], a[1], a[2], a[3], strides=2, padding="same",
                                                         data_format=CL),
                       lambda a: ref.separable_conv(a[0], a[1], a[2], a[3], strides=2, padding="same")),
    "max_pool": (_pool_arrays,
                 lambda a: ops.max_pool(a[0], 3, 2, "same", CL),
                 lambda a: ref.max_pool(a[0], 3, 2, "same")),
    "average_pool": (_pool_arrays,
                     lambda a: ops.average_pool(a[0], 3, 2, "same", CL),
                     lambda a: ref.average_pool(a[0], 3, 2, "same")),
    "locally_connected": (_lc_arrays,
                          lambda a: ops.locally_connected_core(a[0], a[1], a[2], kernel_size=(2, 2), padding="same",
                                                               data_format=CL),
                          lambda a: ref.locally_connected(a[0], a[1], a[2], kernel_size=(2, 2), padding="same")),
    "upsampling": (_upsample_arrays,
                   lambda a: ops.upsampling_core(a[0], (2, 2), "bilinear", CL),
                   lambda a: ref.upsample(a[0], (2, 2), "bilinear")),
}
OP_NAMES = list(CATALOGUE)


# --------------------------------------------------------------------------------------------
# 7, 11: wrong rank
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape", [(8, 4), (1, 8, 8, 8, 4), (4,)])
def test_conv_wrong_input_rank(backend_name, x_shape):
    with pytest.raises(ValueError, match=r"inputs.*" + str(x_shape).replace("(", r"\(").replace(")", r"\)")):
        ops.conv(np.ones(x_shape), np.ones((3, 3, 4, 2)))


def test_kernel_rank_not_1_to_3(backend_name):
    with pytest.raises(ValueError, match="kernel"):
        ops.conv(np.ones((1, 8, 4)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="kernel"):
        ops.conv(np.ones((1, 2, 2, 2, 2, 4)), np.ones((1, 1, 1, 1, 4, 2)))


@pytest.mark.parametrize("call", [
    lambda: ops.conv_transpose(np.ones((1, 8, 4)), np.ones((3, 3, 2, 4))),
    lambda: ops.depthwise_conv(np.ones((1, 8, 8, 4)), np.ones((3, 4, 1))),
    lambda: ops.separable_conv(np.ones((1, 8, 4)), np.ones((3, 3, 4, 1)), np.ones((1, 1, 4, 2))),
    lambda: ops.max_pool(np.ones((8, 4)), 2),
    lambda: ops.average_pool(np.ones((1, 2, 2, 2, 2, 4)), 2),
    lambda: ops.upsampling_core(np.ones((1, 8, 4)), (2, 2)),
    lambda: ops.locally_connected_core(np.ones((1, 8, 4)), np.ones((49, 16, 2)), kernel_size=(2, 2)),
], ids=["conv_transpose", "depthwise", "separable", "max_pool", "average_pool", "upsampling", "locally_connected"])
def test_wrong_rank_other_ops(backend_name, call):
    with pytest.raises(ValueError, match="inputs|rank"):
        call()


# --------------------------------------------------------------------------------------------
# 8: channel mismatch (both shapes and the data_format in the message)
# --------------------------------------------------------------------------------------------
def test_conv_channel_mismatch(backend_name):
    with pytest.raises(ValueError, match=r"input channels=3.*kernel input channels=4.*channels_last"):
        ops.conv(np.ones((1, 8, 8, 3)), np.ones((3, 3, 4, 2)))
    # channels_first reads the channel axis 1: (1, 8, 8, 3) has 8 channels there
    with pytest.raises(ValueError, match=r"input channels=8.*channels_first"):
        ops.conv(np.ones((1, 8, 8, 3)), np.ones((3, 3, 3, 2)), data_format=CF)


def test_conv_groups_must_divide(backend_name):
    # 6 input channels, kernel 4 per group: 6 % 4 != 0
    with pytest.raises(ValueError, match="input channels"):
        ops.conv(np.ones((1, 8, 6)), np.ones((3, 4, 2)))
    # 6 channels, 2 per group -> 3 groups, but 4 filters are not divisible by 3
    with pytest.raises(ValueError, match="input channels"):
        ops.conv(np.ones((1, 8, 6)), np.ones((3, 2, 4)))


def test_other_channel_mismatches(backend_name):
    with pytest.raises(ValueError, match="input channels"):
        ops.conv_transpose(np.ones((1, 8, 3)), np.ones((3, 2, 4)))
    with pytest.raises(ValueError, match="groups"):
        ops.conv_transpose_core(np.ones((1, 8, 3)), np.ones((3, 2, 3)), groups=2)
    with pytest.raises(ValueError, match="input channels"):
        ops.depthwise_conv(np.ones((1, 8, 3)), np.ones((3, 4, 1)))
    with pytest.raises(ValueError, match="input channels"):
        ops.separable_conv(np.ones((1, 8, 3)), np.ones((3, 4, 1)), np.ones((1, 4, 2)))
    with pytest.raises(ValueError, match="pointwise_kernel"):
        ops.separable_conv(np.ones((1, 8, 3)), np.ones((3, 3, 2)), np.ones((1, 5, 2)))
    with pytest.raises(ValueError, match="pointwise_kernel"):
        ops.separable_conv(np.ones((1, 8, 3)), np.ones((3, 3, 2)), np.ones((2, 6, 2)))
    with pytest.raises(ValueError, match="kernel"):  # 7 positions x (2*3) rows expected
        ops.locally_connected_core(np.ones((1, 8, 3)), np.ones((7, 5, 2)), kernel_size=(2,))


# --------------------------------------------------------------------------------------------
# 9: kernel larger than the input, and the exact fit (output size 1)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, d", [(3, 1), (5, 1), (3, 2), (2, 4)])
@pytest.mark.parametrize("op_name", ["conv", "depthwise_conv", "separable_conv"])
def test_kernel_larger_than_input_and_exact_fit(backend_name, rng, op_name, k, d):
    k_eff = (k - 1) * d + 1

    def call(length):
        x = random_array(rng, (2, length, 3))
        arrays = [random_array(rng, (k, 3, 2))]  # conv: (k, C, F); depthwise: (k, C, dm)
        if op_name == "separable_conv":
            arrays.append(random_array(rng, (1, 6, 2)))
        return x, arrays, getattr(ops, op_name)(x, *arrays, dilation_rate=d)

    with pytest.raises(ValueError, match="Computed output size would be zero or negative"):
        call(k_eff - 1)
    x, arrays, y = call(k_eff)
    assert host(y).shape[1] == 1
    assert_close(y, getattr(ref, op_name)(x, *arrays, dilation_rate=d), "float64")
    # 'same' never shrinks to zero, even for a kernel larger than the input
    x = random_array(rng, (1, 2, 3))
    y = getattr(ops, op_name)(x, *arrays, padding="same", dilation_rate=d)
    assert_close(y, getattr(ref, op_name)(x, *arrays, padding="same", dilation_rate=d), "float64")


def test_pool_larger_than_input(backend_name, rng):
    with pytest.raises(ValueError, match="zero or negative"):
        ops.max_pool(np.ones((1, 2, 2, 3)), 3)
    x = random_array(rng, (1, 3, 3, 2))
    assert_close(ops.average_pool(x, 3), ref.average_pool(x, 3), "float64")  # exact fit
    assert_close(ops.max_pool(x, 5, 1, "same"), ref.max_pool(x, 5, 1, "same"), "float64")


def test_zero_spatial_size_is_refused(backend_name):
    with pytest.raises(ValueError, match="zero or negative"):
        ops.conv(np.ones((1, 0, 3)), np.ones((1, 3, 2)))


# --------------------------------------------------------------------------------------------
# 10: bias shape
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda b: ops.conv_core(np.ones((1, 5, 3)), np.ones((3, 3, 4)), b),
    lambda b: ops.conv_transpose_core(np.ones((1, 5, 3)), np.ones((3, 4, 3)), b),
    lambda b: ops.depthwise_conv_core(np.ones((1, 5, 2)), np.ones((3, 2, 2)), b),
    lambda b: ops.separable_conv_core(np.ones((1, 5, 2)), np.ones((3, 2, 1)), np.ones((1, 2, 4)), b),
], ids=["conv", "conv_transpose", "depthwise", "separable"])
@pytest.mark.parametrize("bias_shape", [(5,), (1, 4), (), (4, 1)])
def test_bias_shape_wrong(backend_name, call, bias_shape):
    with pytest.raises(ValueError, match=r"bias.*\(4,\).*" + str(bias_shape).replace("(", r"\(").replace(")", r"\)")):
        call(np.ones(bias_shape))


def test_locally_connected_bias_is_per_position(backend_name):
    x, w = np.ones((1, 5, 2)), np.ones((4, 4, 3))
    with pytest.raises(ValueError, match="bias"):
        ops.locally_connected_core(x, w, np.ones((3,)), kernel_size=(2,))
    assert host(ops.locally_connected_core(x, w, np.ones((4, 3)), kernel_size=(2,))).shape == (1, 4, 3)


# --------------------------------------------------------------------------------------------
# 12, 23-26: None, foreign types and dtypes
# --------------------------------------------------------------------------------------------
def test_none_is_a_type_error(backend_name):
    with pytest.raises(TypeError, match="inputs"):
        ops.conv(None, np.ones((3, 2, 2)))
    with pytest.raises(TypeError, match="kernel"):
        ops.conv(np.ones((1, 5, 2)), None)
    with pytest.raises(TypeError, match="inputs"):
        ops.max_pool(None, 2)


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool", "complex64", "complex128", "object"])
def test_non_float_dtypes_are_type_errors(backend_name, dtype):
    bad = np.ones((1, 5, 2), dtype=dtype)
    with pytest.raises(TypeError, match=r"inputs.*" + np.dtype(dtype).name):
        ops.conv(bad, np.ones((3, 2, 2)))
    with pytest.raises(TypeError, match=r"kernel.*" + np.dtype(dtype).name):
        ops.conv(np.ones((1, 5, 2)), np.ones((3, 2, 2), dtype=dtype))
    with pytest.raises(TypeError, match="inputs"):
        ops.average_pool(bad, 2)
    with pytest.raises(TypeError, match="inputs"):
        ops.upsampling_core(bad, (2,))


def test_strings_are_type_errors(backend_name):
    with pytest.raises(TypeError, match="inputs"):
        ops.conv("not an array", np.ones((3, 2, 2)))


@pytest.mark.parametrize("x_dtype, w_dtype", [("float32", "float64"), ("float16", "float32"), ("float64", "float16")])
def test_mixed_dtypes_are_type_errors(backend_name, x_dtype, w_dtype):
    with pytest.raises(TypeError, match=rf"{w_dtype}.*{x_dtype}|{x_dtype}.*{w_dtype}"):
        ops.conv(np.ones((1, 5, 2), x_dtype), np.ones((3, 2, 2), w_dtype))
    with pytest.raises(TypeError, match="bias"):
        ops.conv_core(np.ones((1, 5, 2), x_dtype), np.ones((3, 2, 2), x_dtype), np.ones((2,), w_dtype))


def test_nested_lists_are_accepted_as_float64(backend_name, rng):
    x = random_array(rng, (1, 5, 2))
    w = random_array(rng, (3, 2, 2))
    y = host(ops.conv(x.tolist(), w.tolist()))
    assert y.dtype == np.float64
    assert_close(y, ref.conv(x, w), "float64")


# --------------------------------------------------------------------------------------------
# 13-15: zero sizes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_empty_batch_gives_empty_output(backend_name, rng, op_name, dtype):
    build, call, reference_fn = CATALOGUE[op_name]
    full = [a.astype(dtype) for a in build(rng, False, n=2)]
    expected_shape = reference_fn(full).shape
    empty = [full[0][:0]] + full[1:]
    y = host(call(empty))
    assert y.shape == (0,) + expected_shape[1:]
    assert y.dtype == np.dtype(dtype)


def test_zero_in_channels_gives_the_bias(backend_name):
    """Checklist 14 (PyTorch allows it): no input channels -> the output is the bias (or zeros)."""
    bias = np.array([1.0, -2.0, 3.0])
    y = host(ops.conv_core(np.ones((2, 5, 0)), np.ones((3, 0, 3)), bias, padding="same"))
    np.testing.assert_array_equal(y, np.broadcast_to(bias, (2, 5, 3)))
    y = host(ops.conv(np.ones((2, 0, 5, 6)), np.ones((3, 3, 0, 3)), data_format=CF))
    np.testing.assert_array_equal(y, np.zeros((2, 3, 3, 4)))
    y = host(ops.conv_transpose_core(np.ones((2, 4, 0)), np.ones((3, 3, 0)), bias, strides=2))
    np.testing.assert_array_equal(y, np.broadcast_to(bias, (2, 9, 3)))
    y = host(ops.depthwise_conv(np.ones((2, 5, 0)), np.ones((3, 0, 2))))
    assert y.shape == (2, 3, 0)


@pytest.mark.parametrize("call", [
    lambda: ops.conv(np.ones((1, 5, 2)), np.ones((0, 2, 3))),
    lambda: ops.conv(np.ones((1, 5, 5, 2)), np.ones((3, 0, 2, 3))),
    lambda: ops.depthwise_conv(np.ones((1, 5, 2)), np.ones((0, 2, 1))),
    lambda: ops.conv_transpose(np.ones((1, 5, 2)), np.ones((0, 3, 2))),
    lambda: ops.separable_conv(np.ones((1, 5, 2)), np.ones((0, 2, 1)), np.ones((1, 2, 3))),
], ids=["conv1d", "conv2d", "depthwise", "conv_transpose", "separable"])
def test_zero_kernel_size_is_refused(backend_name, call):
    """Checklist 15: a kernel dimension of 0 is a ValueError (this is a layer library, not SciPy)."""
    with pytest.raises(ValueError, match="kernel"):
        call()


def test_zero_filters_is_empty(backend_name):
    assert host(ops.conv(np.ones((1, 5, 2)), np.ones((3, 2, 0)))).shape == (1, 3, 0)


# --------------------------------------------------------------------------------------------
# 16-20: layouts; inputs never mutated
# --------------------------------------------------------------------------------------------
def fortran(a):
    return np.asfortranarray(a)


def strided(a):
    """Same values, every axis stepping over a gap: slice of a twice-larger array."""
    big = np.zeros(tuple(2 * n for n in a.shape), dtype=a.dtype)
    view = big[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def reversed_(a):
    """Same values through a negative-stride view on every axis."""
    flipped = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
    return flipped[tuple(slice(None, None, -1) for _ in a.shape)]


def transposed(a):
    """Same values, reversed axis order in memory (a transpose of a contiguous transpose)."""
    return np.ascontiguousarray(a.T).T


def broadcast(a):
    """Zero strides where possible: broadcast the first element along axis 0, keeping the values
    of the original (a is replaced by values that are constant along axis 0)."""
    return np.broadcast_to(a[:1], a.shape)


def size_one_odd_strides(a):
    """Size-1 axes given nonsense strides (checklist 19): contiguity must come from flags."""
    strides = tuple(12345 * a.itemsize if n == 1 else s for n, s in zip(a.shape, a.strides))
    return np.lib.stride_tricks.as_strided(a, a.shape, strides)


def read_only(a):
    b = a.copy()
    b.setflags(write=False)
    return b


LAYOUTS = {"fortran": fortran, "strided": strided, "negative_strides": reversed_, "transposed": transposed,
           "read_only": read_only}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_any_layout_gives_the_contiguous_result(backend_name, rng, op_name, layout):
    build, call, _ = CATALOGUE[op_name]
    arrays = build(rng, True)  # small integers: results must be identical, not just close
    expected = host(call(arrays))
    for i in range(len(arrays)):  # one argument at a time, then all together
        variant = list(arrays)
        variant[i] = LAYOUTS[layout](arrays[i])
        np.testing.assert_array_equal(host(call(variant)), expected, err_msg=f"argument {i} as {layout}")
    np.testing.assert_array_equal(host(call([LAYOUTS[layout](a) for a in arrays])), expected)


@pytest.mark.parametrize("op_name", OP_NAMES)
def test_broadcast_zero_stride_arguments(backend_name, rng, op_name):
    build, call, reference_fn = CATALOGUE[op_name]
    arrays = [broadcast(a) for a in build(rng, True)]
    assert all(0 in a.strides for a in arrays if a.shape[0] > 1)
    dense = [np.ascontiguousarray(a) for a in arrays]
    got = host(call(arrays))
    # Zero strides give exactly what the same values stored densely give, on every engine.
    np.testing.assert_array_equal(got, host(call(dense)))
    expected = reference_fn(dense)
    if backend_name == "cuda" and op_name == "average_pool":
        # The kernel divides by the cell count as a Newton-refined reciprocal (common.cuh: no
        # slow-path division call), within an ulp of IEEE division: small integers average to
        # non-representable values (1/3, 5/6), so equality with NumPy's division is not promised.
        assert_close(got, expected, got.dtype)
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op_name", OP_NAMES)
def test_size_one_axes_with_odd_strides(backend_name, rng, op_name):
    build, call, _ = CATALOGUE[op_name]
    arrays = build(rng, True, n=1)
    odd = [size_one_odd_strides(a) for a in arrays]
    np.testing.assert_array_equal(host(call(odd)), host(call(arrays)))


@pytest.mark.parametrize("layout", ["contiguous", "fortran", "strided", "negative_strides"])
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_inputs_are_never_mutated(backend_name, rng, op_name, layout):
    build, call, _ = CATALOGUE[op_name]
    arrays = build(rng, False)
    if layout != "contiguous":
        arrays = [LAYOUTS[layout](a) for a in arrays]
    before = [(a.copy(), a.strides, a.flags.c_contiguous, a.flags.f_contiguous, a.flags.writeable) for a in arrays]
    y = call(arrays)
    for a, (copy, strides, c, f, w) in zip(arrays, before):
        np.testing.assert_array_equal(a, copy)
        assert (a.strides, a.flags.c_contiguous, a.flags.f_contiguous, a.flags.writeable) == (strides, c, f, w)
    assert not any(np.shares_memory(host(y), a) for a in arrays)


@pytest.mark.parametrize("op_name", OP_NAMES)
def test_deterministic(backend_name, rng, op_name):
    """Checklist 38: two runs are bitwise equal."""
    build, call, _ = CATALOGUE[op_name]
    arrays = build(rng, False)
    np.testing.assert_array_equal(host(call(arrays)), host(call(arrays)))


# --------------------------------------------------------------------------------------------
# 27-28: NaN / Inf placement; large magnitudes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op_name", OP_NAMES)
def test_planted_nan_and_inf_in_the_input(backend_name, rng, op_name):
    build, call, reference_fn = CATALOGUE[op_name]
    arrays = build(rng, False)
    x = arrays[0].copy()
    x[0, 1, 2, 1] = np.nan
    x[1, 2, 0, 3 % x.shape[-1]] = np.inf
    arrays = [x] + arrays[1:]
    expected = reference_fn(arrays)
    actual = host(call(arrays))
    assert not np.isfinite(expected).all()  # the plants reached the output
    assert np.isfinite(expected).any()  # ... and not all of it
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert_close(actual, expected, "float64")  # same NaN / +Inf / -Inf positions


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("op_name", ["conv", "depthwise_conv"])
def test_planted_nan_and_inf_in_the_kernel(backend_name, rng, op_name, padding):
    """Padding is literal zeros: 0 * Inf = NaN at the borders too (checklist 27)."""
    x = random_array(rng, (2, 7, 6, 4))
    w = random_array(rng, (3, 2, 2, 6) if op_name == "conv" else (3, 2, 4, 2))
    w[0, 1, 1, 1] = np.nan
    w[2, 0, 0, -1] = np.inf
    op, reference_fn = getattr(ops, op_name), getattr(ref, op_name)
    expected = reference_fn(x, w, padding=padding)
    actual = host(op(x, w, padding=padding))
    assert np.isnan(expected).any() and np.isfinite(expected).any()
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12, equal_nan=True)
    assert_close(actual, expected, "float64")


@pytest.mark.parametrize("dtype, big", [("float32", 3.0e38), ("float16", 60000.0)])
def test_overflow_gives_inf_not_nan(backend_name, dtype, big):
    """Checklist 28: sums past the dtype's max are +Inf (what the maths says), never NaN."""
    x = np.full((1, 6, 2), big, dtype=dtype)
    y = host(ops.conv(x, np.ones((2, 2, 3), dtype=dtype)))
    assert y.dtype == np.dtype(dtype)
    assert np.isposinf(y).all(), y
    # x - x over two taps is exactly 0: no spurious Inf or NaN from an overflowing intermediate order
    w = np.zeros((2, 2, 1), dtype=dtype)
    w[0, 0, 0], w[1, 0, 0] = 1, -1
    np.testing.assert_array_equal(host(ops.conv(x, w)), np.zeros((1, 5, 1), dtype=dtype))
    # the largest finite values survive max pooling and nearest upsampling unchanged
    finite_max = np.finfo(dtype).max
    xm = np.full((1, 4, 2), finite_max, dtype=dtype)
    np.testing.assert_array_equal(host(ops.max_pool(xm, 2)), np.full((1, 2, 2), finite_max, dtype=dtype))
    np.testing.assert_array_equal(host(ops.upsampling_core(xm, (2,))), np.full((1, 8, 2), finite_max, dtype=dtype))


def test_negative_overflow_gives_minus_inf(backend_name):
    x = np.full((1, 5, 5, 1), -3.0e38, dtype="float32")
    y = host(ops.depthwise_conv(x, np.ones((2, 2, 1, 2), dtype="float32")))
    assert np.isneginf(y).all()


# --------------------------------------------------------------------------------------------
# 2-6: invalid geometry arguments at the ops level (ValueError naming the argument)
# --------------------------------------------------------------------------------------------
X1, W1 = np.ones((1, 8, 2)), np.ones((3, 2, 2))
X2, W2 = np.ones((1, 8, 8, 2)), np.ones((3, 3, 2, 2))


@pytest.mark.parametrize("call, name", [
    (lambda: ops.conv(X1, W1, strides=0), "strides"),
    (lambda: ops.conv(X2, W2, strides=(1, -1)), "strides"),
    (lambda: ops.conv(X2, W2, strides=(1, 1, 1)), "strides"),
    (lambda: ops.conv(X1, W1, dilation_rate=0), "dilation_rate"),
    (lambda: ops.conv(X1, W1, padding="full"), "padding"),
    (lambda: ops.conv(X1, W1, padding="causal"), "padding"),  # keras.ops.conv has no causal
    (lambda: ops.conv_core(X2, W2, padding="causal"), "padding"),  # causal is 1-D only
    (lambda: ops.conv(X1, W1, padding=((1, 1),)), "padding"),
    (lambda: ops.conv(X1, W1, data_format="nwc"), "data_format"),
    (lambda: ops.conv_transpose(X1, W1, strides=2, output_padding=2), "output_padding"),
    (lambda: ops.conv_transpose(X1, W1, output_padding=-1), "output_padding"),
    (lambda: ops.conv_transpose(X1, W1, padding="causal"), "padding"),
    (lambda: ops.conv_transpose_core(X1, W1, groups=0), "groups"),
    (lambda: ops.depthwise_conv(X1, np.ones((3, 2, 1)), strides=(2, 2)), "strides"),
    (lambda: ops.separable_conv(X1, np.ones((3, 2, 1)), np.ones((1, 2, 2)), padding="causal"), "padding"),
    (lambda: ops.max_pool(X2, 0), "pool_size"),
    (lambda: ops.max_pool(X2, 2, strides=0), "strides"),
    (lambda: ops.average_pool(X2, (2, 2, 2)), "pool_size"),
    (lambda: ops.average_pool(X2, 2, padding="causal"), "padding"),
    (lambda: ops.max_pool(X2, 2, data_format="NCHW"), "data_format"),
    (lambda: ops.upsampling_core(X2, (2, 2), interpolation="bicubic"), "interpolation"),
    (lambda: ops.upsampling_core(X1, (2,), interpolation="linear"), "interpolation"),
    (lambda: ops.upsampling_core(X2, (0, 2)), "size"),
    (lambda: ops.locally_connected_core(X1, np.ones((7, 4, 2)), kernel_size=(2,), padding="causal"), "padding"),
    (lambda: ops.locally_connected_core(X1, np.ones((7, 4, 2)), kernel_size=(2,), strides=0), "strides"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_invalid_arguments_name_the_argument(backend_name, call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_explicit_strides_and_dilation_together_are_allowed_by_ops(backend_name, rng):
    """keras.ops.conv computes strides > 1 with dilation > 1 (only the layers refuse it)."""
    x = random_array(rng, (1, 11, 2))
    w = random_array(rng, (3, 2, 2))
    assert_close(ops.conv(x, w, strides=2, dilation_rate=2), ref.conv(x, w, strides=2, dilation_rate=2), "float64")


def _big_half_arrays(op_name):
    """float16 inputs whose partial sums pass 65504 while most results fit (multiples of 32: exact)."""
    x = np.array([40000, 40000, -40000, 40000, -40000, -40000], dtype=np.float16).reshape(1, 6, 1)
    ones3 = np.ones((3, 1, 1), dtype=np.float16)
    if op_name == "conv":
        return lambda: ops.conv(x, ones3), lambda: ref.conv(x, ones3)
    if op_name == "conv_transpose":
        return lambda: ops.conv_transpose(x, ones3), lambda: ref.conv_transpose(x, ones3)
    if op_name == "depthwise_conv":
        return lambda: ops.depthwise_conv(x, ones3), lambda: ref.depthwise_conv(x, ones3)
    if op_name == "separable_conv":
        pk = np.ones((1, 1, 1), dtype=np.float16)
        return lambda: ops.separable_conv(x, ones3, pk), lambda: ref.separable_conv(x, ones3, pk)
    if op_name == "average_pool":
        xa = np.full((1, 4, 4, 1), 60000, dtype=np.float16)
        return lambda: ops.average_pool(xa, 2, 1, "same"), lambda: ref.average_pool(xa, 2, 1, "same")
    w = np.ones((4, 3, 1), dtype=np.float16)  # locally connected, 4 positions of 3 taps
    return (lambda: ops.locally_connected_core(x, w, kernel_size=(3,)),
            lambda: ref.locally_connected(x, w, kernel_size=(3,)))


@pytest.mark.parametrize("op_name", ["conv", "conv_transpose", "depthwise_conv", "separable_conv", "average_pool",
                                     "locally_connected"])
def test_float16_accumulates_in_float32(backend_name, op_name):
    """Checklist 28 / the engine contract: half inputs accumulate in float, so an intermediate sum
    past the float16 maximum does not turn a representable result into Inf."""
    call, reference_call = _big_half_arrays(op_name)
    with np.errstate(over="ignore"):
        expected = reference_call().astype(np.float16)  # Inf only where the exact result overflows
    assert np.isfinite(expected).any()
    np.testing.assert_array_equal(host(call()), expected)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_zero_in_channels_locally_connected_gives_the_per_position_bias(data_format):
    # checklist 14 for unshared weights: the bias is per output position, (*out, F)
    bias = np.arange(-6.0, 6.0).reshape(2, 3, 2)  # out (2, 3), F = 2
    x = np.ones((2, 3, 4, 0)) if data_format == "channels_last" else np.ones((2, 0, 3, 4))
    y = host(ops.locally_connected_core(x, np.ones((6, 0, 2)), bias, kernel_size=(2, 2),
                                        data_format=data_format, activation="relu"))
    expected = np.maximum(bias, 0)
    if data_format == "channels_first":
        expected = np.moveaxis(expected, -1, 0)
    np.testing.assert_array_equal(y, np.broadcast_to(expected, y.shape))
    assert y.shape == ((2, 2, 3, 2) if data_format == "channels_last" else (2, 2, 2, 3))

"""Structural identities between ops (robustness checklist B3). They cost no reference and catch
indexing bugs that a shared mistake in the reference and the engine would hide."""
import numpy as np
import pytest

import gpuconv
from gpuconv import ops

import reference as ref
from conftest import assert_close, random_array

CL, CF = "channels_last", "channels_first"
DATA_FORMATS = (CL, CF)
SPATIAL = {1: (9,), 2: (6, 7), 3: (4, 5, 4)}
KERNEL = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}


def host(y):
    return gpuconv.to_numpy(y)


def make_input(rng, spatial, channels, data_format, n=2):
    shape = (n, *spatial, channels) if data_format == CL else (n, channels, *spatial)
    return random_array(rng, shape)


def channel_slice(a, start, stop, data_format):
    return a[..., start:stop] if data_format == CL else a[:, start:stop]


def concat_channels(parts, data_format):
    return np.concatenate(parts, axis=-1 if data_format == CL else 1)


@pytest.mark.parametrize("groups", [2, 3])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_groups_equal_concatenated_per_group_convs(backend_name, rng, rank, data_format, padding, groups):
    cg, fg = 2, 3
    x = make_input(rng, SPATIAL[rank], cg * groups, data_format)
    w = random_array(rng, (*KERNEL[rank], cg, fg * groups))
    kwargs = dict(strides=2, padding=padding, data_format=data_format)
    whole = host(ops.conv(x, w, **kwargs))
    parts = [host(ops.conv(channel_slice(x, g * cg, (g + 1) * cg, data_format), w[..., g * fg:(g + 1) * fg], **kwargs))
             for g in range(groups)]
    assert_close(whole, concat_channels(parts, data_format), "float64")


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2])
def test_transpose_groups_equal_concatenated_per_group(backend_name, rng, rank, data_format, groups):
    cg, fg = 2, 3
    x = make_input(rng, SPATIAL[rank], cg * groups, data_format)
    w = random_array(rng, (*KERNEL[rank], fg, cg * groups))
    kwargs = dict(strides=2, padding="same", data_format=data_format)
    whole = host(ops.conv_transpose_core(x, w, groups=groups, **kwargs))
    parts = [host(ops.conv_transpose(channel_slice(x, g * cg, (g + 1) * cg, data_format),
                                     w[..., g * cg:(g + 1) * cg], **kwargs)) for g in range(groups)]
    assert_close(whole, concat_channels(parts, data_format), "float64")


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_pointwise_conv_is_a_matmul(backend_name, rng, rank, data_format):
    x = make_input(rng, SPATIAL[rank], 5, data_format)
    w = random_array(rng, (1,) * rank + (5, 7))
    y = host(ops.conv(x, w, data_format=data_format))
    x_last = x if data_format == CL else np.moveaxis(x, 1, -1)
    expected = x_last @ w.reshape(5, 7)
    assert_close(y, expected if data_format == CL else np.moveaxis(expected, -1, 1), "float64")


def keras_same_pads(spatial, kernel, strides, dilation):
    """The Keras 'same' split, computed here from spec 1.4: total = max((ceil(L/s)-1)*s + k_eff - L, 0),
    left = total // 2 (the odd cell goes after)."""
    pads = []
    for L, k, s, d in zip(spatial, kernel, strides, dilation):
        out = -(-L // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - L, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def pad_spatial(x, pads, data_format):
    widths = [(0, 0)] + list(pads) + [(0, 0)] if data_format == CL else [(0, 0), (0, 0)] + list(pads)
    return np.pad(x, widths)


@pytest.mark.parametrize("op_name", ["conv", "depthwise_conv", "separable_conv"])
@pytest.mark.parametrize("strides, dilation", [(1, 1), (2, 1), (3, 1), (1, 2)])
@pytest.mark.parametrize("kernel", [(2, 4), (3, 3), (1, 5)])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_same_equals_explicit_padding_then_valid(backend_name, rng, op_name, kernel, strides, dilation, data_format):
    spatial = (7, 8)
    x = make_input(rng, spatial, 4, data_format)
    if op_name == "conv":
        arrays = [random_array(rng, (*kernel, 4, 3))]
    elif op_name == "depthwise_conv":
        arrays = [random_array(rng, (*kernel, 4, 2))]
    else:
        arrays = [random_array(rng, (*kernel, 4, 2)), random_array(rng, (1, 1, 8, 3))]
    op = getattr(ops, op_name)
    kwargs = dict(strides=strides, data_format=data_format, dilation_rate=dilation)
    same = host(op(x, *arrays, padding="same", **kwargs))
    padded = pad_spatial(x, keras_same_pads(spatial, kernel, (strides,) * 2, (dilation,) * 2), data_format)
    valid = host(op(padded, *arrays, padding="valid", **kwargs))
    assert_close(same, valid, "float64")


@pytest.mark.parametrize("mode", ["max", "average"])
def test_same_pooling_ignores_the_padding(backend_name, rng, mode):
    """'same' max pooling equals 'valid' pooling over -inf padding (average: not the zero-padded one)."""
    x = make_input(rng, (7, 8), 3, CL)
    pads = keras_same_pads((7, 8), (3, 2), (2, 3), (1, 1))
    same = host(ops.pool_core(x, mode, (3, 2), (2, 3), "same", CL))
    if mode == "max":
        padded = np.pad(x, [(0, 0)] + pads + [(0, 0)], constant_values=-np.inf)
        assert_close(same, host(ops.max_pool(padded, (3, 2), (2, 3), "valid", CL)), "float64")
    else:  # divide the zero-padded sum by the count of real cells, counted by pooling ones
        total = host(ops.average_pool(np.pad(x, [(0, 0)] + pads + [(0, 0)]), (3, 2), (2, 3), "valid", CL))
        ones = host(ops.average_pool(np.pad(np.ones_like(x), [(0, 0)] + pads + [(0, 0)]), (3, 2), (2, 3), "valid", CL))
        assert_close(same, total / ones, "float64")


def inner(a, b):
    return float(np.sum(host(a) * host(b)))


def adjoint_cases():
    cases = []
    for rank, spatial, kernel in [(1, (11,), (3,)), (1, (10,), (4,)), (2, (7, 6), (3, 2)), (3, (5, 6, 5), (2, 3, 2))]:
        for strides, dilation in [(1, 1), (2, 1), (3, 1), (1, 2), (2, 2)]:
            cases.append((rank, spatial, kernel, strides, dilation))
    return cases


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank, spatial, kernel, strides, dilation", adjoint_cases())
def test_conv_transpose_is_the_adjoint_of_conv(backend_name, rng, rank, spatial, kernel, strides, dilation,
                                               data_format, groups):
    """<conv(x, W), y> == <x, conv_transpose(y, W)>, with output_padding chosen so the transposed
    output has x's length (valid padding; spec 1.5: crop 0, O = (I-1)s + k_eff + op)."""
    c, f = 2 * groups, 3 * groups
    x = make_input(rng, spatial, c, data_format)
    w = random_array(rng, (*kernel, c // groups, f))
    conv_x = host(ops.conv(x, w, strides, "valid", data_format, dilation))
    out_spatial = conv_x.shape[1:-1] if data_format == CL else conv_x.shape[2:]
    y = make_input(rng, out_spatial, f, data_format)
    output_padding = tuple(L - ((o - 1) * strides + (k - 1) * dilation + 1)
                           for L, o, k in zip(spatial, out_spatial, kernel))
    assert all(0 <= op < strides for op in output_padding)
    # The forward kernel (k.., C/G, F) is the transposed kernel (k.., F_T/G, C_T) with C_T = F, F_T = C.
    transposed = host(ops.conv_transpose_core(y, w, strides=strides, padding="valid", output_padding=output_padding,
                                              data_format=data_format, dilation_rate=dilation, groups=groups))
    assert transposed.shape == x.shape
    lhs, rhs = inner(conv_x, y), inner(x, transposed)
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), np.linalg.norm(conv_x) * np.linalg.norm(y))


@pytest.mark.parametrize("kernel", [(3,), (4,), (5,)])
def test_conv_transpose_same_stride_1_is_the_adjoint_of_same_conv(backend_name, rng, kernel):
    x = make_input(rng, (9,), 3, CL)
    w = random_array(rng, (*kernel, 3, 2))
    conv_x = host(ops.conv(x, w, 1, "same", CL))
    y = make_input(rng, (9,), 2, CL)
    transposed = host(ops.conv_transpose(y, w, 1, "same", None, CL))
    lhs, rhs = inner(conv_x, y), inner(x, transposed)
    assert abs(lhs - rhs) <= 1e-12 * np.linalg.norm(conv_x) * np.linalg.norm(y)


@pytest.mark.parametrize("dm", [1, 3])
@pytest.mark.parametrize("strides, dilation", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_depthwise_is_grouped_conv_with_groups_equal_channels(backend_name, rng, rank, data_format, padding, strides,
                                                              dilation, dm):
    c = 3
    x = make_input(rng, SPATIAL[rank], c, data_format)
    w = random_array(rng, (*KERNEL[rank], c, dm))
    kwargs = dict(strides=strides, padding=padding, data_format=data_format, dilation_rate=dilation)
    depthwise = host(ops.depthwise_conv(x, w, **kwargs))
    grouped = host(ops.conv(x, w.reshape(*KERNEL[rank], 1, c * dm), **kwargs))  # out channel c*dm + m
    assert_close(depthwise, grouped, "float64")


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("rank", [1, 2])
def test_separable_is_depthwise_then_pointwise(backend_name, rng, rank, data_format, padding):
    x = make_input(rng, SPATIAL[rank], 3, data_format)
    dk = random_array(rng, (*KERNEL[rank], 3, 2))
    pk = random_array(rng, (1,) * rank + (6, 5))
    kwargs = dict(strides=2, padding=padding, data_format=data_format)
    separable = host(ops.separable_conv(x, dk, pk, **kwargs))
    two_step = host(ops.conv(host(ops.depthwise_conv(x, dk, **kwargs)), pk, data_format=data_format))
    assert_close(separable, two_step, "float64")


@pytest.mark.parametrize("op_name", ["conv", "conv_transpose", "depthwise_conv", "max_pool", "average_pool",
                                     "locally_connected", "upsampling"])
@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_batch_equals_concatenated_chunks(backend_name, rng, op_name, data_format):
    x = make_input(rng, (6, 7), 4, data_format, n=5)
    if op_name == "conv":
        run = lambda a: ops.conv(a, w, 2, "same", data_format)  # noqa: E731
        w = random_array(rng, (3, 3, 2, 6))
    elif op_name == "conv_transpose":
        run = lambda a: ops.conv_transpose(a, w, 2, "same", None, data_format)  # noqa: E731
        w = random_array(rng, (3, 3, 5, 4))
    elif op_name == "depthwise_conv":
        run = lambda a: ops.depthwise_conv(a, w, 1, "same", data_format, 2)  # noqa: E731
        w = random_array(rng, (3, 2, 4, 2))
    elif op_name == "max_pool":
        run = lambda a: ops.max_pool(a, 3, 2, "same", data_format)  # noqa: E731
    elif op_name == "average_pool":
        run = lambda a: ops.average_pool(a, 3, 2, "same", data_format)  # noqa: E731
    elif op_name == "locally_connected":
        run = lambda a: ops.locally_connected_core(a, w, kernel_size=(2, 2), padding="same",  # noqa: E731
                                                   data_format=data_format)
        w = random_array(rng, (6 * 7, 2 * 2 * 4, 3))
    else:
        run = lambda a: ops.upsampling_core(a, (2, 3), "bilinear", data_format)  # noqa: E731
    whole = host(run(x))
    chunks = np.concatenate([host(run(x[i:j])) for i, j in [(0, 1), (1, 3), (3, 5)]], axis=0)
    assert_close(whole, chunks, "float64")


@pytest.mark.parametrize("strides", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_reference_matches_np_convolve_in_1d(k, dilation, strides):
    """Anchor the reference itself: cross-correlation == np.convolve with the flipped (dilated) kernel."""
    rng = np.random.default_rng(k * 100 + dilation * 10 + strides)
    x = rng.standard_normal(23)
    w = rng.standard_normal(k)
    dilated = np.zeros((k - 1) * dilation + 1)
    dilated[::dilation] = w
    expected = np.convolve(x, dilated[::-1], mode="valid")[::strides]
    got = ref.conv(x.reshape(1, -1, 1), w.reshape(k, 1, 1), strides=strides, dilation_rate=dilation)
    np.testing.assert_allclose(got.ravel(), expected, rtol=1e-13, atol=1e-13)
    # and with 'same': np.convolve of the Keras-padded signal
    pads = keras_same_pads((23,), (k,), (strides,), (dilation,))[0]
    expected_same = np.convolve(np.pad(x, pads), dilated[::-1], mode="valid")[::strides]
    got_same = ref.conv(x.reshape(1, -1, 1), w.reshape(k, 1, 1), strides=strides, padding="same",
                        dilation_rate=dilation)
    np.testing.assert_allclose(got_same.ravel(), expected_same, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("strides", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_reference_transpose_matches_np_convolve_in_1d(k, strides):
    """The scatter definition with s=1 is a full convolution; with s>1, a convolution of the
    zero-stuffed input (spec 1.3). Checks the reference's transpose before trusting it."""
    rng = np.random.default_rng(k * 10 + strides)
    x = rng.standard_normal(6)
    w = rng.standard_normal(k)
    stuffed = np.zeros((len(x) - 1) * strides + 1)
    stuffed[::strides] = x
    full = np.convolve(stuffed, w, mode="full")
    got = ref.conv_transpose(x.reshape(1, -1, 1), w.reshape(k, 1, 1), strides=strides, output_padding=0)
    np.testing.assert_allclose(got.ravel(), full, rtol=1e-13, atol=1e-13)

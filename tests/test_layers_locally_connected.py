"""LocallyConnected1D/2D (Keras 2 signature, implementation-1 weight layout; keras_spec 2.9)."""
import numpy as np
import pytest

import gpuconv
from gpuconv import activations, layers, ops

import reference
from conftest import assert_close

DF = ("channels_last", "channels_first")
LC = {1: layers.LocallyConnected1D, 2: layers.LocallyConnected2D}


def _input(rng, rank, data_format, channels=3, batch=2):
    spatial = (7, 6)[:rank]
    shape = (batch, *spatial, channels) if data_format == "channels_last" else (batch, channels, *spatial)
    return rng.standard_normal(shape).astype("float32")


def _randomize(layer, x, rng):
    layer.build(x.shape)
    weights = [rng.standard_normal(w.shape).astype(w.dtype) for w in layer.weights]
    layer.set_weights(weights)
    return weights


def _keras2_bias(bias, data_format):
    """The reference adds ``bias[p, f]`` at (p, f); Keras 2 with channels_first adds the raw
    reshape ``bias.reshape(F, *out)[f, p]`` there instead (tf-keras backend.bias_add)."""
    if data_format == "channels_last":
        return bias
    return np.moveaxis(bias.reshape((bias.shape[-1],) + bias.shape[:-1]), 0, -1)


CASES = [
    # rank, filters, kernel, strides, padding, implementation, activation
    (1, 4, 3, 1, "valid", 1, None),
    (1, 2, 2, 2, "valid", 1, "relu"),
    (1, 3, 2, 1, "same", 2, None),   # even k: one more left pad than conv 'same'
    (1, 3, 3, 2, "same", 3, "tanh"),
    (2, 2, (3, 2), (2, 1), "valid", 1, None),
    (2, 3, 2, 1, "same", 2, "relu"),
    (2, 2, (3, 3), 2, "same", 3, None),
]


@pytest.mark.parametrize("data_format", DF)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"r{c[0]}-{c[4]}-impl{c[5]}")
def test_locally_connected_matches_reference(backend_name, rng, case, data_format):
    rank, filters, k, s, padding, impl, act = case
    layer = LC[rank](filters, k, strides=s, padding=padding, implementation=impl, activation=act,
                     data_format=data_format)
    x = _input(rng, rank, data_format)
    kernel, bias = _randomize(layer, x, rng)
    y = layer(x)
    assert tuple(y.shape) == layer.compute_output_shape(x.shape)
    expected = reference.locally_connected(x, kernel, _keras2_bias(bias, data_format), kernel_size=layer.kernel_size,
                                           strides=s, padding=padding, data_format=data_format)
    if act:
        expected = np.asarray(activations.get(act)(expected))
    assert_close(y, expected, "float32")


@pytest.mark.parametrize("data_format", DF)
@pytest.mark.parametrize("rank, k, s", [(1, 3, 2), (2, (2, 3), (1, 2))])
def test_shared_kernel_equals_conv_valid(backend_name, rng, rank, k, s, data_format):
    """Every position holding the same kernel and bias turns a locally connected layer into a conv."""
    layer = LC[rank](4, k, strides=s, data_format=data_format)
    x = _input(rng, rank, data_format)
    layer.build(x.shape)
    ksize = layer.kernel_size
    conv_kernel = rng.standard_normal(ksize + (3, 4)).astype("float32")
    conv_bias = rng.standard_normal(4).astype("float32")
    if data_format == "channels_last":
        rows = conv_kernel.reshape(-1, 4)  # patch order (k.., C)
    else:
        rows = np.moveaxis(conv_kernel, -2, 0).reshape(-1, 4)  # patch order (C, k..)
    out_spatial = layer.output_spatial
    positions = int(np.prod(out_spatial))
    if data_format == "channels_last":
        bias = np.broadcast_to(conv_bias, out_spatial + (4,))
    else:  # Keras 2 reads the (*out, F) variable as a raw (F, *out) array
        bias = np.broadcast_to(conv_bias.reshape((4,) + (1,) * rank), (4,) + out_spatial).reshape(out_spatial + (4,))
    layer.set_weights([np.broadcast_to(rows, (positions,) + rows.shape).copy(), bias.copy()])
    expected = gpuconv.to_numpy(ops.conv(x, conv_kernel, strides=s, data_format=data_format)).astype(np.float64)
    shape = [1] * expected.ndim
    shape[-1 if data_format == "channels_last" else 1] = -1
    assert_close(layer(x), expected + conv_bias.reshape(shape), "float32")


def test_same_padding_windows_start_at_p_times_s_minus_half_k(rng):
    """Keras 2 'same': output p covers [p*s - k//2, p*s - k//2 + k); for k=2, s=1 that is [p-1, p+1)."""
    layer = layers.LocallyConnected1D(1, 2, padding="same", implementation=2, use_bias=False)
    x = np.arange(1, 6, dtype="float32").reshape(1, 5, 1)
    layer.build(x.shape)
    layer.set_weights([np.ones((5, 2, 1), "float32")])
    y = gpuconv.to_numpy(layer(x)).ravel()
    np.testing.assert_allclose(y, [0 + 1, 1 + 2, 2 + 3, 3 + 4, 4 + 5])


@pytest.mark.parametrize(
    "layer, in_shape, kernel_shape, bias_shape, out_shape",
    [
        (layers.LocallyConnected1D(4, 3), (None, 10, 2), (8, 6, 4), (8, 4), (None, 8, 4)),
        (layers.LocallyConnected1D(4, 3, strides=2, padding="same", implementation=3), (None, 9, 2), (5, 6, 4),
         (5, 4), (None, 5, 4)),
        (layers.LocallyConnected2D(2, (3, 2), data_format="channels_first"), (None, 3, 6, 5), (16, 18, 2),
         (4, 4, 2), (None, 2, 4, 4)),
        (layers.LocallyConnected2D(2, 2, strides=(2, 3), padding="same", implementation=2), (1, 5, 7, 1),
         (9, 4, 2), (3, 3, 2), (1, 3, 3, 2)),
    ],
)
def test_weight_layout_and_shapes(layer, in_shape, kernel_shape, bias_shape, out_shape):
    layer.build(in_shape)
    assert [w.name for w in layer.weights] == ["kernel", "bias"]
    assert layer.kernel.shape == kernel_shape and layer.bias.shape == bias_shape
    assert layer.compute_output_shape(in_shape) == out_shape
    assert layer.count_params() == int(np.prod(kernel_shape) + np.prod(bias_shape))


def test_compute_output_shape_with_unknown_spatial_dims():
    assert layers.LocallyConnected1D(4, 3).compute_output_shape((None, None, 2)) == (None, None, 4)
    assert layers.LocallyConnected2D(4, 3, data_format="channels_first").compute_output_shape(
        (None, 2, None, 7)) == (None, 4, None, 5)


def test_input_spec_locks_channels_after_build(rng):
    layer = layers.LocallyConnected1D(2, 3)
    layer(np.zeros((1, 6, 3), "float32"))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 3"):
        layer(np.zeros((1, 6, 4), "float32"))
    with pytest.raises(ValueError, match="expected ndim=3, found ndim=4"):
        layer(np.zeros((1, 6, 3, 1), "float32"))


@pytest.mark.parametrize("rank", (1, 2))
def test_channels_first_bias_is_keras2_raw_reshape(rank):
    """Keras 2 adds ``reshape(bias, (1, F, *out))`` for channels_first: element order pinned here."""
    layer = LC[rank](2, 2, data_format="channels_first")
    in_shape = (1, 1) + (4, 3)[:rank]
    layer.build(in_shape)
    out_spatial = layer.output_spatial
    bias = np.arange(np.prod(out_spatial) * 2, dtype="float32").reshape(out_spatial + (2,))
    layer.set_weights([np.zeros(layer.kernel.shape, "float32"), bias])
    y = gpuconv.to_numpy(layer(np.ones(in_shape, "float32")))
    np.testing.assert_array_equal(y[0], bias.reshape((2,) + out_spatial))
    np.testing.assert_array_equal(y[0, 1].ravel(), np.arange(np.prod(out_spatial)) + np.prod(out_spatial))
    channels_last = LC[rank](2, 2)
    channels_last.build((1,) + (4, 3)[:rank] + (1,))
    channels_last.set_weights([np.zeros(channels_last.kernel.shape, "float32"), bias])
    y_last = gpuconv.to_numpy(channels_last(np.ones((1,) + (4, 3)[:rank] + (1,), "float32")))
    np.testing.assert_array_equal(y_last[0], bias)  # channels_last: bias[p, f] at (p, f)

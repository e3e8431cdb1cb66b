"""Input/InputLayer, Dense, Flatten, Dropout, Activation: numbers, shapes, dtypes, errors and
configs, against Keras 3 (torch backend) where installed. The generic contract (lazy build,
weights, config round trip, ...) is in test_layer_contract.py."""
import numpy as np
import pytest

import gpuconv
from gpuconv import activations, layers

from conftest import keras_numpy


def _without_name(config):
    return {k: v for k, v in config.items() if k != "name"}


# --------------------------------------------------------------------------------------------
# Dense
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 6), (2, 2, 3, 6)])
def test_dense_numbers_match_keras(keras, rng, shape):
    x = rng.standard_normal(shape).astype("float32")
    theirs = keras.layers.Dense(5, activation="relu")
    expected = keras_numpy(theirs(x))
    ours = layers.Dense(5, activation="relu")
    ours.build(shape)
    ours.set_weights([keras_numpy(w) for w in theirs.get_weights()])
    np.testing.assert_allclose(ours(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["Dense", "Flatten", "Dropout", "Activation", "InputLayer"])
def test_constructor_signatures_match_keras(keras, name):
    import inspect

    assert inspect.signature(getattr(layers, name).__init__) == inspect.signature(getattr(keras.layers, name).__init__)
    assert inspect.signature(layers.Input) == inspect.signature(keras.Input)


def test_dense_config_matches_keras(keras):
    kwargs = {"units": 4, "activation": "swish", "use_bias": False, "kernel_initializer": "he_normal",
              "kernel_regularizer": "l2", "bias_constraint": "non_neg"}
    theirs = keras.layers.Dense(**kwargs).get_config()
    ours = layers.Dense(**kwargs).get_config()
    assert list(ours) == list(theirs)
    assert _without_name(ours) == _without_name(theirs)
    # a Keras config builds our layer and back
    assert _without_name(layers.Dense.from_config(theirs).get_config()) == _without_name(theirs)
    assert _without_name(keras.layers.Dense.from_config(ours).get_config()) == _without_name(ours)


def test_dense_activity_regularizer_config_matches_keras(keras):
    theirs = keras.layers.Dense(3, activity_regularizer="l1").get_config()
    ours = layers.Dense(3, activity_regularizer="l1").get_config()
    assert ours["activity_regularizer"]["class_name"] == theirs["activity_regularizer"]["class_name"] == "L1"


@pytest.mark.parametrize("policy,x_dtype,out_dtype", [("float32", "float32", "float32"), ("float64", "float32", "float64"),
                                                     ("float16", "float32", "float16"),
                                                     ("mixed_float16", "float32", "float16")])
def test_dense_dtype_policies(rng, policy, x_dtype, out_dtype):
    layer = layers.Dense(8, dtype=policy)
    x = rng.standard_normal((5, 16)).astype(x_dtype)
    y = layer(x)
    assert y.dtype == np.dtype(out_dtype)
    assert layer.kernel.dtype == ("float32" if policy == "mixed_float16" else policy)
    kernel, bias = (w.astype(np.float64) for w in layer.get_weights())
    expected = x.astype(out_dtype).astype(np.float64) @ kernel + bias
    tol = 2e-3 if out_dtype == "float16" else 1e-5
    np.testing.assert_allclose(y.astype(np.float64), expected, rtol=tol, atol=tol)


def test_dense_errors(rng):
    for bad in (0, -3, 2.5, "4", True, None):
        with pytest.raises(ValueError, match=f"expected a positive integer. Received: units={bad}"):
            layers.Dense(bad)
    with pytest.raises(ValueError, match="Unrecognized keyword arguments passed to Dense"):
        layers.Dense(3, filters=2)
    layers.Dense(3, lora_rank=None, lora_alpha=None, quantization_config=None)  # Keras' defaults are accepted
    for arg in ("lora_rank", "lora_alpha", "quantization_config"):
        with pytest.raises(ValueError, match=f"`{arg}` must be None. Received: {arg}=4"):
            layers.Dense(3, **{arg: 4})
    with pytest.raises(ValueError, match="Could not interpret activation function identifier: Relu"):
        layers.Dense(3, activation="Relu")
    layer = layers.Dense(3)
    with pytest.raises(AttributeError, match="You must build the layer before accessing `kernel`."):
        layer.kernel
    with pytest.raises(ValueError, match="expected min_ndim=2, found ndim=1"):
        layer(np.ones(4, "float32"))
    layer(np.ones((2, 4), "float32"))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 4"):
        layer(np.ones((2, 5), "float32"))
    with pytest.raises(TypeError):
        layer(None)


def test_dense_batch_of_zero_and_integer_input():
    layer = layers.Dense(3)
    assert layer(np.zeros((0, 4), "float32")).shape == (0, 3)
    y = layer(np.arange(8).reshape(2, 4))  # ints are cast to the compute dtype, as Keras does
    assert y.dtype == np.float32
    kernel, bias = layer.get_weights()
    x = np.arange(8).reshape(2, 4).astype(np.float64)
    # A float32 dot product is exact to a few ulps of sum |x_i w_i|, not of its (possibly
    # cancelling) result: the standard rounding bound, per element.
    bound = 4 * np.finfo(np.float32).eps * (np.abs(x) @ np.abs(kernel.astype(np.float64)) + np.abs(bias))
    assert np.all(np.abs(y - (x @ kernel + bias)) <= bound)


def test_dense_softmax_and_user_activation(rng):
    x = rng.standard_normal((3, 5)).astype("float32")
    y = layers.Dense(4, activation="softmax")(x)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-6)
    layer = layers.Dense(4, activation=lambda t: t * 0 + 7)
    np.testing.assert_array_equal(layer(x), np.full((3, 4), 7.0, "float32"))


# --------------------------------------------------------------------------------------------
# Flatten
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4), (2, 3, 4, 5), (2, 2, 3, 4, 5)])
def test_flatten_matches_keras(keras, rng, data_format, shape):
    x = rng.standard_normal(shape).astype("float32")
    expected = keras_numpy(keras.layers.Flatten(data_format=data_format)(x))
    np.testing.assert_array_equal(layers.Flatten(data_format=data_format)(x), expected)


def test_flatten_shapes_and_edges():
    flatten = layers.Flatten()
    assert flatten(np.arange(3.0)).shape == (3, 1)  # rank 1: one feature per sample
    assert flatten(np.zeros((0, 3, 4))).shape == (0, 12)
    assert flatten.compute_output_shape((None, 3, 4)) == (None, 12)
    assert flatten.compute_output_shape((None, None, 4)) == (None, None)
    assert flatten.compute_output_shape((5,)) == (5, 1)
    cf = layers.Flatten(data_format="channels_first")
    x = np.arange(24.0).reshape(1, 2, 3, 4)  # (N, C, H, W) -> features in (H, W, C) order
    np.testing.assert_array_equal(cf(x)[0], np.transpose(x, (0, 2, 3, 1)).ravel())
    with pytest.raises(ValueError, match="The `data_format` argument must be one of"):
        layers.Flatten(data_format="channels_middle")
    assert layers.Flatten(data_format="CHANNELS_FIRST").get_config()["data_format"] == "channels_first"


def test_flatten_follows_the_global_data_format():
    previous = gpuconv.image_data_format()
    try:
        gpuconv.set_image_data_format("channels_first")
        assert layers.Flatten().get_config()["data_format"] == "channels_first"
    finally:
        gpuconv.set_image_data_format(previous)


# --------------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------------
def test_dropout_is_identity_at_inference(rng):
    x = rng.standard_normal((4, 5)).astype("float32")
    layer = layers.Dropout(0.9)
    assert layer.built and layer.weights == [] and layer.count_params() == 0
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer(x, training=False), x)


@pytest.mark.parametrize("rate", [-0.1, 1.5, "0.5", None, True])
def test_dropout_rate_validation(rate):
    with pytest.raises(ValueError, match=r"Invalid value received for argument `rate`. Expected a float value "
                                         r"between 0 and 1. Received: rate="):
        layers.Dropout(rate)


def test_dropout_rate_bounds_follow_installed_keras(keras):
    """Keras 3.15 accepts rate=1 (0 <= rate <= 1); so do we."""
    keras.layers.Dropout(1.0)
    assert layers.Dropout(1.0).rate == 1.0 and layers.Dropout(0).rate == 0


@pytest.mark.parametrize("noise_shape,match", [("abc", "Expected a tuple or list of integers"),
                                               (5, "Expected an iterable of integers"),
                                               ((None, 2.5), "Expected all elements to be integers or None"),
                                               ((0, 3), "Received negative or zero value at index 0: 0")])
def test_dropout_noise_shape_validation(noise_shape, match):
    with pytest.raises(ValueError, match=match):
        layers.Dropout(0.5, noise_shape=noise_shape)


def test_dropout_training_mode():
    x = np.ones((400, 50), "float32")
    y = layers.Dropout(0.25, seed=1)(x, training=True)
    kept = y != 0
    assert kept.mean() == pytest.approx(0.75, abs=0.01)
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)  # inverted dropout keeps the mean
    np.testing.assert_array_equal(layers.Dropout(0.25, seed=1)(x, training=True), y)  # seeded
    shared = layers.Dropout(0.5, noise_shape=(None, 1), seed=2)(x, training=True)
    assert all(len(set(row)) == 1 for row in shared)  # one draw per sample, broadcast over features


def test_dropout_config_matches_keras(keras):
    kwargs = {"rate": 0.3, "noise_shape": (None, 1), "seed": 7}
    assert _without_name(layers.Dropout(**kwargs).get_config()) == _without_name(keras.layers.Dropout(**kwargs).get_config())


# --------------------------------------------------------------------------------------------
# Activation
# --------------------------------------------------------------------------------------------
def test_activation_layer(rng):
    x = rng.standard_normal((3, 4)).astype("float32")
    np.testing.assert_array_equal(layers.Activation("relu")(x), np.maximum(x, 0))
    np.testing.assert_allclose(layers.Activation(activations.softmax)(x).sum(-1), 1.0, rtol=1e-6)
    assert layers.Activation("hard_swish").get_config()["activation"] == "hard_silu"
    assert layers.Activation(None).activation is activations.linear
    with pytest.raises(ValueError, match="Could not interpret activation function identifier: foo"):
        layers.Activation("foo")
    layer = layers.Activation("tanh")
    assert layer.built and layer.compute_output_shape((None, 3, 4)) == (None, 3, 4)


def test_activation_config_matches_keras(keras):
    for name in ("relu", "swish", "gelu", "softmax"):
        assert _without_name(layers.Activation(name).get_config()) == _without_name(keras.layers.Activation(name).get_config())


# --------------------------------------------------------------------------------------------
# Input / InputLayer
# --------------------------------------------------------------------------------------------
def test_input():
    t = layers.Input((28, 28, 1))
    assert t.shape == (None, 28, 28, 1) and t.dtype == "float32" and t.ndim == 4
    assert isinstance(t._input_layer, layers.InputLayer)
    assert layers.Input(shape=(3,), batch_size=8, dtype="float64").shape == (8, 3)
    assert layers.Input(batch_shape=(None, None, 5)).shape == (None, None, 5)
    with pytest.raises(ValueError, match="You must pass a `shape` argument."):
        layers.Input()
    with pytest.raises(ValueError, match="You cannot pass both `shape` and `batch_shape`"):
        layers.Input(shape=(3,), batch_shape=(None, 3))
    with pytest.raises(ValueError, match="Cannot convert '3' to a shape."):
        layers.Input(3)
    with pytest.raises(ValueError, match="Negative dimensions are not allowed"):
        layers.Input((-1, 3))


def test_input_layer_config_matches_keras(keras):
    ours = layers.InputLayer(shape=(4, 5), dtype="float64").get_config()
    theirs = keras.layers.InputLayer(shape=(4, 5), dtype="float64").get_config()
    assert _without_name(ours) == _without_name(theirs)
    assert layers.InputLayer.from_config(ours).get_config() == ours


def test_input_layer_passes_arrays_in_its_dtype():
    layer = layers.InputLayer(shape=(3,))
    x = np.arange(6).reshape(2, 3)
    y = layer(x)
    assert y.dtype == np.float32 and layer.count_params() == 0
    np.testing.assert_array_equal(y, x)

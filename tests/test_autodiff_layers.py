"""Gradients through the layers outside the convolution family (Dense, Flatten, Dropout,
Activation, Cropping, ZeroPadding, global pooling, Input) and ``Sequential`` as a whole: central
finite differences in float64 over random configurations (hypothesis), for the input and every
trainable weight; Sequential's gradient equals the chain of its layers' gradients; the dtype
and device conversions of the layers stay connected."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuconv
from gpuconv import layers, ops

SETTINGS = settings(max_examples=6, deadline=None, derandomize=True)


def _tape_grads(layer, x, v, training=None):
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = layer(x) if training is None else layer(x, training=training)
    weights = layer.trainable_weights
    grads = tape.gradient(y, [x] + weights, output_gradients=v)
    return y, grads[0], grads[1:]


def _fd(fn, a, v, eps=1e-6):
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        plus = np.sum(np.asarray(fn()) * v)
        a[idx] = old - eps
        minus = np.sum(np.asarray(fn()) * v)
        a[idx] = old
        g[idx] = (plus - minus) / (2 * eps)
    return g


def _assert_fd(actual, expected):
    # Central differences' absolute error ~ ulp(f) / eps; the floor keeps tiny gradients testable.
    err = np.linalg.norm((np.asarray(actual, dtype=np.float64) - expected).ravel())
    assert err <= 1e-6 * np.linalg.norm(expected.ravel()) + 1e-8 * np.sqrt(expected.size), (err, actual, expected)


def check_layer(layer, x, rng, training=None):
    """Input and weight gradients of ``layer`` at ``x`` against finite differences."""
    x = np.array(x, dtype="float64")
    y0 = layer(x) if training is None else layer(x, training=training)
    v = rng.standard_normal(np.shape(y0))
    y, gx, gws = _tape_grads(layer, x, v, training)
    _assert_fd(gx, _fd(lambda: layer(x), x, v))
    for var, gw in zip(layer.trainable_weights, gws):
        value = var.numpy()

        def run(value=value, var=var):
            var.assign(value)
            return layer(x)

        _assert_fd(gw, _fd(run, value, v))
        var.assign(value)
        assert gw.shape == var.shape and gw.dtype == np.dtype(var.dtype)


formats = st.sampled_from(["channels_last", "channels_first"])


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), rank=st.integers(2, 3), units=st.integers(1, 4),
       use_bias=st.booleans(), activation=st.sampled_from([None, "tanh", "relu", "softmax", "gelu"]))
def test_dense(seed, rank, units, use_bias, activation):
    rng = np.random.default_rng(seed)
    shape = (2, 3, 4)[:rank - 1] + (3,)
    layer = layers.Dense(units, activation=activation, use_bias=use_bias, dtype="float64",
                         bias_initializer="random_normal")
    x = rng.standard_normal(shape)
    if activation == "relu":
        x = x + np.sign(x) * 0.1
    layer.build(shape)
    check_layer(layer, x, rng)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), data_format=formats, shape=st.sampled_from([(2, 3), (2, 3, 2), (1, 2, 3, 2)]))
def test_flatten(seed, data_format, shape):
    rng = np.random.default_rng(seed)
    check_layer(layers.Flatten(data_format=data_format, dtype="float64"), rng.standard_normal(shape), rng)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), rate=st.sampled_from([0.0, 0.3, 0.7, 1.0]))
def test_dropout_training_gradient_is_mask_times_scale(seed, rate):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 2.0, (3, 5))
    v = rng.standard_normal((3, 5))
    layer = layers.Dropout(rate, seed=seed % 1000, dtype="float64")
    y, gx, _ = _tape_grads(layer, x, v, training=True)
    scale = np.asarray(y) / x  # the mask times 1/(1 - rate), recovered from the forward
    np.testing.assert_allclose(gx, v * scale, rtol=1e-15)
    # inference: the identity
    _, gx, _ = _tape_grads(layers.Dropout(rate, dtype="float64"), x, v)
    np.testing.assert_array_equal(gx, v)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(["relu", "sigmoid", "swish", "softmax", "linear"]))
def test_activation_layer(seed, name):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 4))
    x = x + np.sign(x) * 0.05
    check_layer(layers.Activation(name, dtype="float64"), x, rng)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), rank=st.integers(1, 3), data_format=formats, data=st.data())
def test_cropping_and_zero_padding(seed, rank, data_format, data):
    rng = np.random.default_rng(seed)
    pairs = tuple((data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1))) for _ in range(rank))
    spatial = (3,) * rank
    shape = (2,) + spatial + (2,) if data_format == "channels_last" or rank == 1 else (2, 2) + spatial
    kwargs = {} if rank == 1 else {"data_format": data_format}
    crop = getattr(layers, f"Cropping{rank}D")(pairs[0] if rank == 1 else pairs, dtype="float64", **kwargs)
    pad = getattr(layers, f"ZeroPadding{rank}D")(pairs[0] if rank == 1 else pairs, dtype="float64", **kwargs)
    check_layer(crop, rng.standard_normal(shape), rng)
    check_layer(pad, rng.standard_normal(shape), rng)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), rank=st.integers(1, 3), data_format=formats, keepdims=st.booleans(),
       kind=st.sampled_from(["Max", "Average"]))
def test_global_pooling(seed, rank, data_format, keepdims, kind):
    rng = np.random.default_rng(seed)
    shape = (2,) + (3,) * rank + (2,) if data_format == "channels_last" else (2, 2) + (3,) * rank
    layer = getattr(layers, f"Global{kind}Pooling{rank}D")(data_format=data_format, keepdims=keepdims, dtype="float64")
    check_layer(layer, rng.standard_normal(shape), rng)


def test_global_max_pooling_gradient_goes_to_the_first_maximum():
    x = np.zeros((1, 2, 2, 1))
    v = np.ones((1, 1))
    _, gx, _ = _tape_grads(layers.GlobalMaxPooling2D(dtype="float64"), x, v)
    np.testing.assert_array_equal(gx.ravel(), [1, 0, 0, 0])


def test_global_average_pooling1d_with_mask():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3))
    mask = np.array([[1, 1, 0, 1], [0, 1, 1, 1]], dtype=bool)
    layer = layers.GlobalAveragePooling1D(dtype="float64")
    v = rng.standard_normal((2, 3))
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, mask=mask)
    gx = tape.gradient(y, x, output_gradients=v)
    _assert_fd(gx, _fd(lambda: layer(x, mask=mask), x, v))
    assert not gx[0, 2].any() and not gx[1, 0].any()


def test_input_layer_cast_stays_connected():
    x = np.array([[1.0, 2.0]], dtype="float32")
    inp = layers.Input((2,), dtype="float64")
    model = gpuconv.Sequential([inp, layers.Dense(1, dtype="float64", kernel_initializer="ones")])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = model(x)
    g = tape.gradient(y, x)
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, [[1.0, 1.0]])


def test_layer_autocast_stays_connected_and_mixed_policy_weights_get_float32_gradients():
    x = np.array([[1.0, 2.0, 3.0]], dtype="float32")
    layer = layers.Dense(2, dtype="mixed_float16", kernel_initializer="ones")
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        assert y.dtype == np.float16
    gx, gk, gb = tape.gradient(y, [x] + layer.trainable_weights)
    assert gx.dtype == np.float32 and gk.dtype == np.float32 and gb.dtype == np.float32
    np.testing.assert_array_equal(gx, [[2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(gk, [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    np.testing.assert_array_equal(gb, [1.0, 1.0])


def _model(seed):
    return gpuconv.Sequential([
        layers.Input((3, 4, 2), dtype="float64"),
        layers.ZeroPadding2D(1, dtype="float64"),
        layers.Cropping2D(((1, 0), (0, 1)), dtype="float64"),
        layers.Flatten(dtype="float64"),
        layers.Dense(5, activation="tanh", dtype="float64", bias_initializer="random_normal"),
        layers.Dropout(0.5, seed=seed, dtype="float64"),
        layers.Dense(3, dtype="float64"),
        layers.Activation("softmax", dtype="float64"),
    ])


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_sequential_finite_differences(seed):
    rng = np.random.default_rng(seed)
    model = _model(seed % 1000)
    check_layer(model, rng.standard_normal((2, 3, 4, 2)), rng)
    assert len(model.trainable_weights) == 4


def test_sequential_gradient_equals_chain_of_layer_gradients():
    rng = np.random.default_rng(7)
    model = _model(3)
    x = rng.standard_normal((2, 3, 4, 2))
    v = rng.standard_normal((2, 3))
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = model(x)
    whole = tape.gradient(y, [x] + model.trainable_weights, output_gradients=v)
    # The chain: run the layers one by one, then pull the gradient back layer by layer.
    inputs, h = [], np.array(x)
    for layer in model.layers:
        inputs.append(h)
        h = np.array(layer(h))
    g = v
    weight_grads = {}
    for layer, h in reversed(list(zip(model.layers, inputs))):
        with gpuconv.GradientTape() as tape:
            tape.watch(h)
            out = layer(h)
        grads = tape.gradient(out, [h] + layer.trainable_weights, output_gradients=g)
        g = grads[0]
        for var, gw in zip(layer.trainable_weights, grads[1:]):
            weight_grads[id(var)] = gw
    np.testing.assert_allclose(whole[0], g, rtol=1e-12, atol=1e-15)
    for var, gw in zip(model.trainable_weights, whole[1:]):
        np.testing.assert_allclose(gw, weight_grads[id(var)], rtol=1e-12, atol=1e-15)


def test_loss_built_with_ops_trains_a_step():
    rng = np.random.default_rng(11)
    model = gpuconv.Sequential([layers.Input((4,), dtype="float64"), layers.Dense(3, dtype="float64")])
    x, labels = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    target = ops.one_hot(labels, 3, dtype="float64")

    def loss_value():
        return ops.negative(ops.mean(ops.sum(ops.multiply(target, ops.log_softmax(model(x))), axis=-1)))

    with gpuconv.GradientTape() as tape:
        loss = loss_value()
    grads = tape.gradient(loss, model.trainable_weights)
    before = float(loss)
    for var, g in zip(model.trainable_weights, grads):
        var.assign(var.numpy() - 0.5 * g)
    assert float(loss_value()) < before


def test_layer_gradients_are_deterministic():
    rng = np.random.default_rng(1)
    model = _model(5)
    x = rng.standard_normal((2, 3, 4, 2)).astype("float64")
    runs = []
    for _ in range(2):
        with gpuconv.GradientTape() as tape:
            loss = ops.sum(ops.square(model(x)))
        runs.append([g.tobytes() for g in tape.gradient(loss, model.trainable_weights)])
    assert runs[0] == runs[1]


def test_inference_path_records_nothing_without_a_tape():
    layer = layers.Dense(2)
    x = np.ones((1, 3), dtype="float32")
    y = layer(x)
    assert not gpuconv.autodiff.recording(x, y)
    with pytest.raises(ValueError, match="not produced by any operation recorded"):
        with gpuconv.GradientTape() as tape:
            y = layer(x) * 2.0  # plain NumPy operator
        tape.gradient(y, layer.trainable_weights)

"""gpuconv.models.Sequential: building, running, predict, summary, weights and configs, with the
seed CNN end to end (and against Keras 3, torch backend, where installed)."""
import os

import numpy as np
import pytest

import gpuconv
from gpuconv import layers
from gpuconv.models import Sequential

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported anywhere in this process


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras", reason="comparing with Keras needs keras>=3.15 (torch backend)")


def seed_cnn(lib):
    """The seed model, written once for gpuconv.layers or keras.layers."""
    L = lib.layers
    return lib.Sequential([
        lib.Input((28, 28, 1)),
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(100, activation="relu"),
        L.Dropout(0.4),
        L.Dense(10, activation="softmax"),
    ])


class _Ours:
    layers = layers
    Sequential = Sequential
    Input = staticmethod(layers.Input)


def _summary(model):
    lines = []
    model.summary(print_fn=lines.append)
    return "\n".join(lines)


def _mlp():
    return Sequential([layers.Input((4,)), layers.Dense(8, activation="relu"), layers.Dense(3, activation="softmax")])


# --------------------------------------------------------------------------------------------
# The seed CNN
# --------------------------------------------------------------------------------------------
def test_seed_cnn_params_and_summary():
    model = seed_cnn(_Ours)
    assert [layer.count_params() for layer in model.layers] == [320, 0, 18496, 0, 0, 313700, 0, 1010]
    assert model.count_params() == 333526
    text = _summary(model)
    for expected in ("Total params: 333,526 (1.27 MB)", "Trainable params: 333,526 (1.27 MB)",
                     "Non-trainable params: 0 (0.00 B)", "320", "18,496", "313,700", "1,010",
                     "(None, 28, 28, 32)", "(None, 14, 14, 32)", "(None, 7, 7, 64)", "(None, 3136)", "(None, 10)",
                     "(Conv2D)", "(MaxPooling2D)", "(Flatten)", "(Dense)", "(Dropout)", 'Model: "'):
        assert expected in text, expected
    assert model.compute_output_shape((None, 28, 28, 1)) == (None, 10)


def test_seed_cnn_predict_rows_sum_to_one(rng):
    model = seed_cnn(_Ours)
    x = rng.random((5, 28, 28, 1)).astype("float32")
    y = model.predict(x, batch_size=2)
    assert isinstance(y, np.ndarray) and y.shape == (5, 10) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    assert (y >= 0).all()
    np.testing.assert_allclose(gpuconv.to_numpy(model(x)), y, rtol=1e-6, atol=1e-7)  # batching changes nothing


def test_seed_cnn_matches_keras(keras, rng):
    theirs = seed_cnn(keras)
    ours = seed_cnn(_Ours)
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    x = rng.random((3, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    assert [layer.count_params() for layer in ours.layers] == [layer.count_params() for layer in theirs.layers]


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def test_lazy_build_on_first_call(rng):
    model = Sequential([layers.Flatten(), layers.Dense(4), layers.Activation("tanh")])
    assert not model.built
    with pytest.raises(ValueError, match="isn't built"):
        model.count_params()
    text = _summary(model)
    assert "0 (unbuilt)" in text and "?" in text and "Total params: 0 (0.00 B)" in text
    y = model(rng.standard_normal((2, 3, 5)).astype("float32"))
    assert model.built and y.shape == (2, 4)
    assert model.count_params() == 15 * 4 + 4
    assert model.input_shape == (None, 3, 5)
    assert "(None, 15)" in _summary(model) and "(None, 4)" in _summary(model)


def test_signature_matches_keras(keras):
    import inspect

    assert inspect.signature(Sequential.__init__) == inspect.signature(keras.Sequential.__init__)


def test_explicit_build_and_input_shape_kwarg():
    model = Sequential([layers.Dense(3), layers.Dense(2)])
    model.build((None, 6))
    assert model.count_params() == (6 * 3 + 3) + (3 * 2 + 2)
    legacy = Sequential([layers.Dense(3, input_shape=(6,)), layers.Dense(2)])
    assert legacy.built and legacy.count_params() == 29 and legacy.compute_output_shape((None, 6)) == (None, 2)
    with pytest.raises(ValueError, match="input_shape"):
        Sequential([layers.Dense(3)]).build()


def test_build_checks_input_specs():
    with pytest.raises(ValueError, match="expected min_ndim=4"):
        Sequential([layers.Input((5,)), layers.Conv2D(2, 3)])


def test_add_and_pop():
    model = Sequential()
    model.add(layers.Input((5,)))
    model.add(layers.Dense(2))
    assert model.built and model.count_params() == 12
    model.add(layers.Dense(1))
    assert model.count_params() == 15 and len(model.layers) == 2
    assert isinstance(model.pop(), layers.Dense) and len(model.layers) == 1
    with pytest.raises(ValueError, match="Only instances of `keras.Layer` can be added"):
        model.add("dense")
    with pytest.raises(ValueError, match="may only have an Input"):
        model.add(layers.Input((5,)))
    same = layers.Dense(2)
    with pytest.raises(ValueError, match="should have unique names"):
        Sequential([same, layers.Dense(3, name=same.name)])
    with pytest.raises(TypeError, match="no layers"):
        Sequential().pop()


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def test_call_and_predict(rng):
    model = _mlp()
    x = rng.standard_normal((70, 4)).astype("float32")
    direct = model(x)
    np.testing.assert_allclose(model.predict(x), direct, rtol=1e-6)
    np.testing.assert_allclose(model.predict(x, batch_size=7), direct, rtol=1e-6)
    np.testing.assert_allclose(model.predict(x.tolist()), direct, rtol=1e-6)
    assert model.predict(x[:0]).shape == (0, 3)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            model.predict(x, batch_size=bad)
    with pytest.raises(TypeError):
        model.predict(None)
    with pytest.raises(ValueError, match="incompatible with the layer"):
        model(np.ones((2, 5), "float32"))


def test_float64_input_follows_the_input_dtype(rng):
    model = Sequential([layers.Input((3,), dtype="float64"), layers.Dense(2, dtype="float64")])
    assert model(rng.standard_normal((2, 3))).dtype == np.float64
    assert _mlp()(rng.standard_normal((2, 4))).dtype == np.float32


# --------------------------------------------------------------------------------------------
# Weights and config
# --------------------------------------------------------------------------------------------
def test_weights_round_trip(rng):
    model = _mlp()
    assert [w.path for w in model.weights] == [f"{model.layers[0].name}/kernel", f"{model.layers[0].name}/bias",
                                               f"{model.layers[1].name}/kernel", f"{model.layers[1].name}/bias"]
    values = [rng.standard_normal(w.shape).astype("float32") for w in model.weights]
    model.set_weights(values)
    for got, want in zip(model.get_weights(), values):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="expecting 4 weights"):
        model.set_weights(values[:3])
    with pytest.raises(ValueError, match="not compatible"):
        model.set_weights(values[:3] + [np.zeros(4, "float32")])
    model.trainable = False
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 4
    assert "Non-trainable params: 67" in _summary(model)


def test_config_round_trip(rng):
    model = seed_cnn(_Ours)
    config = model.get_config()
    assert config["layers"][0]["class_name"] == "InputLayer"
    assert config["layers"][1]["build_config"] == {"input_shape": (None, 28, 28, 1)}
    assert set(config["layers"][2]) >= {"module", "class_name", "config", "registered_name"}
    again = Sequential.from_config(config)
    assert again.get_config() == config
    again.set_weights(model.get_weights())
    x = rng.random((2, 28, 28, 1)).astype("float32")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="Could not interpret layer identifier"):
        Sequential.from_config({"name": "m", "layers": [{"class_name": "Nope", "config": {}}]})


def test_weightless_layers_built_at_construction_get_no_build_config():
    # Keras 3.15 builds pooling (windowed and global), Dropout and Activation in __init__ and
    # writes no build_config for them; layers built by a call (ZeroPadding2D, Conv2D, Dense) get one.
    model = Sequential([
        layers.Input((8, 8, 3)), layers.ZeroPadding2D(1), layers.Conv2D(2, 3), layers.MaxPooling2D(2),
        layers.GlobalAveragePooling2D(), layers.Dropout(0.5), layers.Dense(2), layers.Activation("relu"),
    ])
    has_build_config = {e["class_name"]: "build_config" in e for e in model.get_config()["layers"][1:]}
    assert has_build_config == {
        "ZeroPadding2D": True, "Conv2D": True, "MaxPooling2D": False, "GlobalAveragePooling2D": False,
        "Dropout": False, "Dense": True, "Activation": False,
    }


def test_configs_cross_between_keras_and_gpuconv(keras, rng):
    theirs = keras.Sequential([keras.Input((6, 5)), keras.layers.Flatten(), keras.layers.Dense(4, activation="gelu"),
                               keras.layers.Dropout(0.2), keras.layers.Activation("softmax")])
    ours = Sequential.from_config(theirs.get_config())
    assert [type(layer).__name__ for layer in ours.layers] == [type(layer).__name__ for layer in theirs.layers]
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    x = rng.standard_normal((3, 6, 5)).astype("float32")
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-7)
    back = keras.Sequential.from_config(ours.get_config())
    assert back.count_params() == ours.count_params()

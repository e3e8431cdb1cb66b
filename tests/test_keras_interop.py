"""Live Keras objects into gpuconv (``gpuconv.saving.from_keras``, ``Sequential.add`` of a Keras
layer): the converted object predicts what the Keras one predicts, with its weights."""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import gpuconv  # noqa: E402
from gpuconv import saving  # noqa: E402

RNG = np.random.default_rng(5)


def _close(ours, theirs, x):
    np.testing.assert_allclose(gpuconv.to_numpy(ours(x)), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-5, atol=1e-6)


def test_a_keras_sequential_converts_with_its_weights():
    k = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(3, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(4)])
    g = saving.from_keras(k)
    assert isinstance(g, gpuconv.Sequential) and g.count_params() == k.count_params()
    _close(g, k, RNG.standard_normal((2, 8, 8, 2)).astype("float32"))


def test_a_keras_functional_model_converts():
    x = keras.Input((6,), name="fx")
    a, b = keras.layers.Dense(4, name="fa")(x), keras.layers.Dense(4, name="fb")(x)
    k = keras.Model(x, keras.layers.Dense(2, name="fo")(a * b + 1.0))
    g = saving.from_keras(k)
    assert type(g).__name__ == "Functional"
    assert [l.name for l in g.layers] == [l.name for l in k.layers]
    _close(g, k, RNG.standard_normal((3, 6)).astype("float32"))


def test_a_built_keras_layer_converts_and_an_unbuilt_one_has_no_weights():
    layer = keras.layers.Conv1D(2, 3, padding="causal")
    layer.build((None, 10, 4))
    g = saving.from_keras(layer)
    assert g.built and type(g).__name__ == "Conv1D"
    _close(g, layer, RNG.standard_normal((2, 10, 4)).astype("float32"))
    fresh = saving.from_keras(keras.layers.Dense(3))
    assert not fresh.built and fresh.units == 3


def test_sequential_accepts_keras_layers():
    first, second = keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(1)
    k = keras.Sequential([keras.Input((3,)), first, second])
    g = gpuconv.Sequential([gpuconv.Input((3,))])
    g.add(first)
    g.add(second)
    _close(g, k, RNG.standard_normal((4, 3)).astype("float32"))


def test_anything_else_is_a_type_error():
    with pytest.raises(TypeError, match="expects a Keras 3 layer or model"):
        saving.from_keras(gpuconv.layers.Dense(2))
    with pytest.raises(TypeError, match="expects a Keras 3 layer or model"):
        saving.from_keras(object())

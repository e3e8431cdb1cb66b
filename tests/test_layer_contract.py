"""The Keras layer contract, checked by one helper any test file can use:

    from test_layer_contract import run_layer_test
    run_layer_test(layers.Conv2D, {"filters": 4, "kernel_size": 3}, (2, 8, 8, 3),
                   expected_weight_shapes=[(3, 3, 3, 4), (4,)], dynamic_axes=(1, 2))

It checks, in order: lazy build on the first call (no weights, ``count_params`` raising and
``layer.kernel`` raising AttributeError before it); the real output shape against
``compute_output_shape`` for the concrete shape, a None batch and None on ``dynamic_axes``;
weights order/names/shapes; ``get_weights``/``set_weights`` round trip and their errors;
``count_params``; the input left untouched; a second call with a changed channel count refused
by the InputSpec; ``get_config``/``from_config`` giving an equal (JSON-safe) config and equal
outputs with the same weights; the activity regularizer showing in ``losses``.
The bottom of this file runs it on the core layers (Dense, Flatten, Dropout, Activation).
"""
import json

import numpy as np
import pytest

import gpuconv
from gpuconv import layers, regularizers


def _as_tuple(shape):
    return tuple(shape)


def _has_kernel_property(layer_cls):
    return any("kernel" in vars(klass) for klass in layer_cls.__mro__)


def _new_values(weights, rng):
    return [rng.standard_normal(w.shape).astype(w.dtype) for w in weights]


def run_layer_test(layer_cls, init_kwargs, input_shape, *, input_dtype="float32", expected_output_shape=None,
                   expected_weight_shapes=None, expected_weight_names=None, dynamic_axes=(),
                   check_input_spec_change=True, check_activity_regularizer=True, seed=0):
    """Run the layer contract on ``layer_cls(**init_kwargs)`` with an input of ``input_shape``.

    ``dynamic_axes``: non-batch axes that may be None in ``compute_output_shape`` (for example
    the spatial axes of a conv). ``expected_weight_shapes``/``names``: the weights in Keras' order.
    Returns ``(layer, inputs, outputs)`` (outputs as NumPy) for further assertions.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(input_shape).astype(input_dtype)
    x_before = x.copy()

    # ---- lazy build -----------------------------------------------------------------------
    layer = layer_cls(**init_kwargs)
    built_at_init = layer.built
    if not built_at_init:
        assert layer.weights == [], "weights exist before build"
        with pytest.raises(ValueError, match="isn't built"):
            layer.count_params()
        if _has_kernel_property(layer_cls):
            with pytest.raises(AttributeError, match="You must build the layer before accessing `kernel`."):
                layer.kernel
    y = gpuconv.to_numpy(layer(x))
    assert layer.built, "the first call did not build the layer"
    assert np.array_equal(x, x_before), "the layer modified its input"

    # ---- shapes ---------------------------------------------------------------------------------
    if expected_output_shape is not None:
        assert y.shape == tuple(expected_output_shape)
    assert _as_tuple(layer.compute_output_shape(tuple(input_shape))) == y.shape
    symbolic = (None,) + tuple(input_shape[1:])
    out = _as_tuple(layer.compute_output_shape(symbolic))
    assert out[0] is None and out[1:] == y.shape[1:], f"None batch: {out} vs {y.shape}"
    if dynamic_axes:
        shape = list(symbolic)
        for axis in dynamic_axes:
            shape[axis] = None
        out = _as_tuple(layer.compute_output_shape(tuple(shape)))
        assert len(out) == y.ndim and out[0] is None
        for got, real in zip(out[1:], y.shape[1:]):
            assert got is None or got == real, f"None dims {dynamic_axes}: {out} vs {y.shape}"

    # ---- weights ---------------------------------------------------------------------------------
    weights = layer.weights
    if expected_weight_shapes is not None:
        assert [tuple(w.shape) for w in weights] == [tuple(s) for s in expected_weight_shapes]
    if expected_weight_names is not None:
        assert [w.name for w in weights] == list(expected_weight_names)
    assert [w.path for w in weights] == [f"{layer.name}/{w.name}" for w in weights]
    values = layer.get_weights()
    assert [v.shape for v in values] == [tuple(w.shape) for w in weights]
    assert layer.count_params() == sum(int(np.prod(w.shape)) for w in weights)

    new_values = _new_values(weights, rng)
    layer.set_weights(new_values)
    for got, want in zip(layer.get_weights(), new_values):
        np.testing.assert_array_equal(got, want)
    y = gpuconv.to_numpy(layer(x))  # the output with the new weights
    with pytest.raises(ValueError, match="weight"):
        layer.set_weights(new_values + [np.zeros(1, dtype="float32")])
    if weights:
        wrong = list(new_values)
        wrong[0] = np.zeros(tuple(d + 1 for d in wrong[0].shape), dtype=wrong[0].dtype)
        with pytest.raises(ValueError, match="shape"):
            layer.set_weights(wrong)
        for got, want in zip(layer.get_weights(), new_values):  # a refused call changes nothing
            np.testing.assert_array_equal(got, want)

    # ---- input spec after build ---------------------------------------------------------------
    spec = layer.input_spec
    if check_input_spec_change and spec is not None and getattr(spec, "axes", None):
        axis, size = next(iter(spec.axes.items()))
        if size is not None:
            bad_shape = list(input_shape)
            bad_shape[axis] = size + 1
            with pytest.raises(ValueError, match="incompatible with the layer"):
                layer(np.zeros(bad_shape, dtype=input_dtype))

    # ---- config round trip ----------------------------------------------------------------------
    config = layer.get_config()
    json.dumps(config)  # plain Python data only
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    clone(x)  # build
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(gpuconv.to_numpy(clone(x)), y)
    assert clone.get_config() == config

    # ---- activity regularizer -------------------------------------------------------------------
    if check_activity_regularizer:
        regularized = layer_cls(**{**init_kwargs, "activity_regularizer": "l2"})
        assert regularized.get_config()["activity_regularizer"] == regularizers.serialize(regularizers.L2())
        out = gpuconv.to_numpy(regularized(x)).astype(np.float64)
        assert len(regularized.losses) == 1
        expected = 0.01 * np.sum(out * out) / out.shape[0]  # Keras divides by the batch size
        np.testing.assert_allclose(regularized.losses[0], expected, rtol=1e-3 if input_dtype == "float16" else 1e-5)
        clone = layer_cls.from_config(regularized.get_config())
        assert regularizers.serialize(clone.activity_regularizer) == regularizers.serialize(regularizers.L2())

    assert np.array_equal(x, x_before), "the layer modified its input"
    return layer, x, y


# --------------------------------------------------------------------------------------------
# The contract on the core layers
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("input_shape", [(3, 5), (2, 4, 5), (2, 3, 4, 5)])
def test_dense_contract(input_shape):
    layer, x, y = run_layer_test(
        layers.Dense, {"units": 7, "activation": "tanh"}, input_shape,
        expected_output_shape=input_shape[:-1] + (7,), expected_weight_shapes=[(5, 7), (7,)],
        expected_weight_names=["kernel", "bias"], dynamic_axes=tuple(range(1, len(input_shape) - 1)),
    )
    kernel, bias = layer.get_weights()
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64) @ kernel + bias), rtol=1e-5, atol=1e-6)


def test_dense_contract_without_bias_float64():
    run_layer_test(layers.Dense, {"units": 3, "use_bias": False, "dtype": "float64"}, (4, 6), input_dtype="float64",
                   expected_weight_shapes=[(6, 3)], expected_weight_names=["kernel"])


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_flatten_contract(data_format):
    run_layer_test(layers.Flatten, {"data_format": data_format}, (2, 3, 4, 5),
                   expected_output_shape=(2, 60), expected_weight_shapes=[])


def test_dropout_contract():
    layer, x, y = run_layer_test(layers.Dropout, {"rate": 0.4, "seed": 3}, (4, 6), expected_weight_shapes=[])
    np.testing.assert_array_equal(y, x)


def test_activation_contract():
    layer, x, y = run_layer_test(layers.Activation, {"activation": "swish"}, (3, 4, 5), expected_weight_shapes=[])
    np.testing.assert_allclose(y, x / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6)
    assert layer.get_config()["activation"] == "silu"


def test_helper_catches_a_broken_layer():
    """The helper must fail on a layer whose compute_output_shape lies."""

    class Lying(layers.Dense):
        def compute_output_shape(self, input_shape):
            return tuple(input_shape[:-1]) + (self.units + 1,)

    with pytest.raises(AssertionError):
        run_layer_test(Lying, {"units": 2}, (3, 4), check_activity_regularizer=False)


def test_helper_catches_input_mutation():
    class Mutating(layers.Activation):
        def call(self, inputs):
            inputs *= 2
            return inputs

    with pytest.raises(AssertionError, match="modified its input"):
        run_layer_test(Mutating, {"activation": "linear"}, (2, 3), check_activity_regularizer=False)

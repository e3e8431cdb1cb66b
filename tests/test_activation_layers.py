"""ReLU, LeakyReLU, PReLU, ELU, Softmax against Keras 3 (torch backend): outputs and gradients
(our GradientTape against torch autograd through the Keras layer) over random configurations,
inputs and kink points; configs both ways; PReLU weights; bad arguments; the CUDA engine."""
import inspect
import json
import warnings

import numpy as np
import pytest

import gpuconv
from gpuconv import layers

from conftest import GPU_BACKEND, gpu_xp, keras_numpy, requires_cuda
from test_layer_contract import run_layer_test

pytestmark = [
    # Keras' own variables/tensors (torch backend) trip NumPy 2's __array__(copy=) deprecation.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    # Keras warns about a softmax over an axis of size 1 (random shapes have some).
    pytest.mark.filterwarnings("ignore:You are using a softmax over axis:UserWarning"),
]

NAMES = ["ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax"]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _keras_run(layer, x, v, mask=None):
    """(output, d(v.y)/dx, [d(v.y)/dw]) through the Keras layer, by torch autograd."""
    import torch

    t = torch.tensor(x, requires_grad=True)
    y = layer(t) if mask is None else layer(t, mask=torch.tensor(mask))
    y.backward(torch.tensor(v))
    weight_grads = [keras_numpy(w.value.grad) for w in layer.trainable_weights]
    return keras_numpy(y), keras_numpy(t.grad), weight_grads


def _ours_run(layer, x, v, mask=None):
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = layer(x) if mask is None else layer(x, mask=mask)
    grads = tape.gradient(y, [x] + layer.trainable_weights, output_gradients=v)
    return gpuconv.to_numpy(y), gpuconv.to_numpy(grads[0]), [gpuconv.to_numpy(g) for g in grads[1:]]


def _assert_same_run(ours, theirs, rtol=1e-5, atol=1e-6):
    (y, gx, gw), (ky, kgx, kgw) = ours, theirs
    assert y.dtype == np.float32 and y.shape == ky.shape
    np.testing.assert_allclose(y, ky, rtol=rtol, atol=atol, err_msg="outputs")
    np.testing.assert_allclose(gx, kgx, rtol=rtol, atol=atol, err_msg="input gradients")
    assert len(gw) == len(kgw)
    for g, kg in zip(gw, kgw):
        np.testing.assert_allclose(g, kg, rtol=rtol, atol=atol, err_msg="weight gradients")


def _with_kinks(rng, shape, points):
    """Normal values, with the exact kink ``points`` planted at random places."""
    x = (rng.standard_normal(shape) * 3).astype("float32")
    flat = x.reshape(-1)
    for p in points:
        flat[rng.integers(flat.size, size=max(1, flat.size // 8))] = p
    return x


def _random_shape(rng, min_rank=2, max_rank=4):
    return tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(min_rank, max_rank + 1))))


def _without_name(config):
    return {k: v for k, v in config.items() if k != "name"}


def _assert_configs_agree(keras, ours_cls, keras_cls, kwargs):
    """Same keys in the same order and the same values; each side's config builds the other's
    layer with an identical config, also through JSON."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LeakyReLU(alpha=...) warns on both sides
        ours, theirs = ours_cls(**kwargs).get_config(), keras_cls(**kwargs).get_config()
    assert list(ours) == list(theirs)
    assert _without_name(ours) == _without_name(theirs)
    assert ours_cls.from_config(theirs).get_config() == theirs
    assert keras_cls.from_config(ours).get_config() == ours
    as_json = json.loads(json.dumps(theirs))
    assert json.loads(json.dumps(ours_cls.from_config(as_json).get_config())) == as_json
    # Through the generic deserializer: Keras' serialized layer becomes ours.
    rebuilt = gpuconv.saving.deserialize_keras_object(keras.saving.serialize_keras_object(keras_cls(**kwargs)))
    assert type(rebuilt) is ours_cls
    assert _without_name(rebuilt.get_config()) == _without_name(theirs)


# --------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_constructor_signatures_match_keras(keras, name):
    assert inspect.signature(getattr(layers, name).__init__) == inspect.signature(getattr(keras.layers, name).__init__)


def test_softmax_call_signature_matches_keras(keras):
    assert inspect.signature(layers.Softmax.call) == inspect.signature(keras.layers.Softmax.call)


# --------------------------------------------------------------------------------------------
# ReLU
# --------------------------------------------------------------------------------------------
def _random_relu_kwargs(rng):
    kwargs = {}
    choice = rng.integers(4)
    if choice == 1:
        kwargs["max_value"] = 6.0
    elif choice == 2:
        kwargs["max_value"] = float(rng.choice([0.0, 1.0, 2.5, round(float(rng.uniform(0.1, 8)), 3)]))
    elif choice == 3:
        kwargs["max_value"] = 6  # an int six: relu6's path in Keras too
    if rng.random() < 0.5:
        kwargs["negative_slope"] = float(rng.choice([0.1, 0.5, 1.0, round(float(rng.uniform(0.01, 2)), 3)]))
    if rng.random() < 0.5:
        kwargs["threshold"] = float(rng.choice([0.5, 1.0, 2.0, round(float(rng.uniform(0.01, 3)), 3)]))
    return kwargs


def test_relu_random_configs_match_keras_outputs_and_gradients(keras, rng):
    for _ in range(60):
        kwargs = _random_relu_kwargs(rng)
        shape = _random_shape(rng)
        kinks = [0.0, 6.0, kwargs.get("threshold", 0.0), kwargs.get("max_value") or 0.0, -1.0]
        x = _with_kinks(rng, shape, [np.float32(p) for p in kinks])
        v = rng.standard_normal(shape).astype("float32")
        ours = _ours_run(layers.ReLU(**kwargs), x, v)
        theirs = _keras_run(keras.layers.ReLU(**kwargs), x, v)
        _assert_same_run(ours, theirs)


def test_relu_derivatives_at_the_kinks():
    # relu'(0) = 0; relu6 has derivative 0 at both 0 and 6 (Keras on torch).
    x = np.array([[-1.0, 0.0, 3.0, 6.0, 7.0]], "float32")
    for kwargs, expected in [({}, [0, 0, 1, 1, 1]), ({"max_value": 6.0}, [0, 0, 1, 0, 0]),
                             ({"negative_slope": 0.5}, [0.5, 0.5, 1, 1, 1])]:
        with gpuconv.GradientTape() as tape:
            tape.watch(x)
            y = layers.ReLU(**kwargs)(x)
        np.testing.assert_array_equal(tape.gradient(y, x), [expected])


@pytest.mark.parametrize("kwargs", [{}, {"max_value": 6.0}, {"max_value": 6}, {"max_value": 2.5, "negative_slope": 0.2},
                                    {"threshold": 1.5, "negative_slope": 0.1, "max_value": 4.0}])
def test_relu_config_agrees_with_keras(keras, kwargs):
    _assert_configs_agree(keras, layers.ReLU, keras.layers.ReLU, kwargs)


def test_relu6_config_as_mobilenet_v2_writes_it(keras):
    # MobileNetV2 builds `layers.ReLU(6.0, name=...)`: max_value stays the float 6.0 both ways.
    theirs = keras.layers.ReLU(6.0, name="Conv1_relu").get_config()
    ours = layers.ReLU.from_config(theirs)
    assert ours.get_config() == theirs
    assert type(ours.get_config()["max_value"]) is float and ours.get_config()["max_value"] == 6.0
    assert json.dumps(layers.ReLU(6.0, name="Conv1_relu").get_config()) == json.dumps(theirs)
    x = np.array([[-2.0, 0.0, 5.5, 6.0, 9.0]], "float32")
    np.testing.assert_array_equal(ours(x), [[0.0, 0.0, 5.5, 6.0, 6.0]])


# --------------------------------------------------------------------------------------------
# LeakyReLU, ELU
# --------------------------------------------------------------------------------------------
def test_leaky_relu_and_elu_random_configs_match_keras(keras, rng):
    for _ in range(25):
        shape = _random_shape(rng)
        x = _with_kinks(rng, shape, [np.float32(0.0)])
        v = rng.standard_normal(shape).astype("float32")
        slope = float(rng.choice([0.0, 0.3, 1.0, round(float(rng.uniform(0, 2)), 3)]))
        _assert_same_run(_ours_run(layers.LeakyReLU(slope), x, v), _keras_run(keras.layers.LeakyReLU(slope), x, v))
        alpha = float(rng.choice([1.0, 0.5, -0.5, round(float(rng.uniform(0, 3)), 3)]))
        _assert_same_run(_ours_run(layers.ELU(alpha), x, v), _keras_run(keras.layers.ELU(alpha), x, v))


def test_leaky_relu_default_slope_and_derivative_at_zero():
    x = np.array([[-2.0, 0.0, 2.0]], "float32")
    layer = layers.LeakyReLU()
    assert layer.negative_slope == 0.3
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    np.testing.assert_allclose(y, [[-0.6, 0.0, 2.0]], rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(y, x), [[0.3, 0.3, 1.0]], rtol=1e-6)


def test_leaky_relu_legacy_alpha_warns_and_wins(keras):
    with pytest.warns(UserWarning, match="Argument `alpha` is deprecated. Use `negative_slope` instead."):
        ours = layers.LeakyReLU(negative_slope=0.5, alpha=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = keras.layers.LeakyReLU(negative_slope=0.5, alpha=0.1)
    assert ours.negative_slope == theirs.negative_slope == 0.1
    assert "alpha" not in ours.get_config()
    # a Keras 2 config with `alpha` loads
    with pytest.warns(UserWarning, match="`alpha` is deprecated"):
        legacy = layers.LeakyReLU.from_config({"name": "old", "alpha": 0.2})
    assert legacy.get_config()["negative_slope"] == 0.2


@pytest.mark.parametrize("cls,kwargs", [("LeakyReLU", {}), ("LeakyReLU", {"negative_slope": 0.05}),
                                        ("ELU", {}), ("ELU", {"alpha": 0.5}), ("ELU", {"alpha": 2, "trainable": False}),
                                        ("ELU", {"alpha": 0.5, "activity_regularizer": "l1"})])
def test_leaky_relu_and_elu_configs_agree_with_keras(keras, cls, kwargs):
    _assert_configs_agree(keras, getattr(layers, cls), getattr(keras.layers, cls), kwargs)


# --------------------------------------------------------------------------------------------
# PReLU
# --------------------------------------------------------------------------------------------
def test_prelu_random_shapes_and_shared_axes_match_keras(keras, rng):
    for _ in range(25):
        shape = _random_shape(rng, 2, 4)
        non_batch = list(range(1, len(shape)))
        shared = [int(a) for a in non_batch if rng.random() < 0.4]
        shared_axes = None if not shared else (shared[0] if len(shared) == 1 and rng.random() < 0.5 else shared)
        theirs = keras.layers.PReLU(shared_axes=shared_axes)
        theirs.build(shape)
        alpha = rng.standard_normal(tuple(theirs.alpha.shape)).astype("float32")
        theirs.set_weights([alpha])
        ours = layers.PReLU(shared_axes=shared_axes)
        ours.build(shape)
        assert ours.alpha.shape == tuple(theirs.alpha.shape)
        assert [w.path for w in ours.weights] == [f"{ours.name}/alpha"]
        ours.set_weights([keras_numpy(w) for w in theirs.get_weights()])
        x = _with_kinks(rng, shape, [np.float32(0.0)])
        v = rng.standard_normal(shape).astype("float32")
        _assert_same_run(_ours_run(ours, x, v), _keras_run(theirs, x, v))


def test_prelu_alpha_initializer_defaults_to_zeros_and_counts_params():
    layer = layers.PReLU(shared_axes=[1, 2])
    layer.build((None, 5, 6, 3))
    assert layer.alpha.shape == (1, 1, 3) and layer.count_params() == 3
    np.testing.assert_array_equal(layer.get_weights()[0], np.zeros((1, 1, 3), "float32"))
    x = np.array([[[[-1.0, 0.0, 2.0]]]], "float32")
    np.testing.assert_array_equal(layers.PReLU()(x), [[[[0.0, 0.0, 2.0]]]])  # alpha 0: relu


def test_prelu_input_spec_after_build():
    layer = layers.PReLU(shared_axes=1)
    layer(np.zeros((2, 3, 4), "float32"))
    layer(np.zeros((5, 7, 4), "float32"))  # the shared axis may change
    with pytest.raises(ValueError, match="expected axis 2 of input shape to have value 4"):
        layer(np.zeros((2, 3, 5), "float32"))
    with pytest.raises(ValueError, match="expected ndim=3"):
        layer(np.zeros((2, 3, 4, 1), "float32"))


@pytest.mark.parametrize("kwargs", [{}, {"shared_axes": [1, 2]}, {"shared_axes": 1}, {"shared_axes": (2,)},
                                    {"alpha_initializer": "he_normal", "alpha_regularizer": "l2",
                                     "alpha_constraint": "non_neg"}])
def test_prelu_config_agrees_with_keras(keras, kwargs):
    _assert_configs_agree(keras, layers.PReLU, keras.layers.PReLU, kwargs)


def test_prelu_regularizer_loss_and_mixed_policy(rng):
    layer = layers.PReLU(alpha_initializer="ones", alpha_regularizer="l2", dtype="mixed_float16")
    x = rng.standard_normal((2, 3)).astype("float32")
    y = layer(x)
    assert y.dtype == np.float16 and layer.alpha.numpy().dtype == np.float32
    np.testing.assert_allclose(y, x.astype("float16"), rtol=1e-3)  # alpha 1: the identity
    np.testing.assert_allclose(float(layer.losses[0]), 0.01 * 3, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Softmax
# --------------------------------------------------------------------------------------------
def _random_axis(rng, rank):
    kind = rng.integers(4)
    if kind == 0:
        return -1
    if kind == 1:
        return int(rng.integers(-rank, rank))
    count = 1 if kind == 2 or rank == 1 else int(rng.integers(2, rank + 1))
    axes = [int(a) for a in rng.choice(rank, size=count, replace=False)]
    return axes if rng.random() < 0.5 else tuple(axes)


def _random_mask(rng, shape):
    """None, or a mask broadcastable to ``shape`` (bool, float or int; fewer axes sometimes)."""
    if rng.random() < 0.4:
        return None
    lead = int(rng.integers(0, len(shape)))
    mshape = tuple(1 if rng.random() < 0.3 else d for d in shape[lead:])
    dtype = rng.choice(["bool", "float32", "int32"])
    mask = rng.random(mshape) < 0.6
    if dtype == "float32":
        return np.where(mask, rng.uniform(0.51, 1, mshape), rng.uniform(0, 0.5, mshape)).astype("float32")
    return mask.astype(dtype)


def test_softmax_random_axes_and_masks_match_keras(keras, rng):
    for _ in range(50):
        shape = _random_shape(rng, 1, 4)
        axis = _random_axis(rng, len(shape))
        mask = _random_mask(rng, shape)
        x = (rng.standard_normal(shape) * 4).astype("float32")
        v = rng.standard_normal(shape).astype("float32")
        ours = _ours_run(layers.Softmax(axis=axis), x, v, mask)
        theirs = _keras_run(keras.layers.Softmax(axis=axis), x, v, mask)
        _assert_same_run(ours, theirs)


def test_softmax_fully_masked_row_is_zero_and_gets_no_gradient():
    x = np.array([[1.0, 2.0, 3.0], [1.0, 5.0, 2.0]], "float32")
    mask = np.array([[False, False, False], [True, False, True]])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = layers.Softmax()(x, mask=mask)
    np.testing.assert_array_equal(y[0], [0.0, 0.0, 0.0])
    assert y[1, 1] == 0.0 and abs(float(y[1].sum()) - 1.0) < 1e-6
    g = tape.gradient(y, x, output_gradients=np.arange(6, dtype="float32").reshape(2, 3))
    assert not g[0].any() and g[1, 1] == 0.0


def test_softmax_float16_mask_fill_does_not_overflow():
    x = np.array([[1.0, 2.0, 3.0]], "float16")
    y = layers.Softmax(dtype="float16")(x, mask=np.array([[True, False, True]]))
    assert y.dtype == np.float16 and np.isfinite(y).all() and y[0, 1] == 0


def test_softmax_mask_shape_errors_match_keras(keras):
    import torch

    x = np.zeros((2, 3), "float32")
    for mshape in [(2, 2), (1, 2, 3)]:
        mask = np.ones(mshape, bool)
        with pytest.raises(ValueError, match="The `mask` must be broadcastable to `inputs`"):
            layers.Softmax()(x, mask=mask)
        with pytest.raises(ValueError, match="The `mask` must be broadcastable to `inputs`"):
            keras.layers.Softmax()(torch.tensor(x), mask=torch.tensor(mask))


@pytest.mark.parametrize("kwargs", [{}, {"axis": 1}, {"axis": [1, 2]}, {"axis": (0,)}, {"axis": -2}])
def test_softmax_config_agrees_with_keras(keras, kwargs):
    _assert_configs_agree(keras, layers.Softmax, keras.layers.Softmax, kwargs)


# --------------------------------------------------------------------------------------------
# Shapes, dtypes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_compute_output_shape_with_none_batch(keras, name):
    for shape in [(None, 3), (None, 4, None, 2)]:
        assert getattr(layers, name)().compute_output_shape(shape) == shape
        assert getattr(keras.layers, name)().compute_output_shape(shape) == shape


@pytest.mark.parametrize("policy", ["float16", "float64"])
def test_dtype_policies(rng, policy):
    x = rng.standard_normal((2, 4)).astype("float32")
    for layer in [layers.ReLU(6.0, dtype=policy), layers.LeakyReLU(dtype=policy), layers.ELU(dtype=policy),
                  layers.PReLU(dtype=policy), layers.Softmax(dtype=policy)]:
        y = layer(x)
        assert y.dtype == np.dtype(policy), type(layer).__name__


def test_numpy_scalar_arguments_give_a_json_config():
    config = layers.ReLU(np.float32(6.0), negative_slope=np.float64(0.5)).get_config()
    assert type(config["max_value"]) is float and config["max_value"] == 6.0
    assert json.loads(json.dumps(config))["negative_slope"] == 0.5
    assert type(layers.ELU(np.float32(0.5)).get_config()["alpha"]) is float


def test_softmax_masks_of_concurrent_calls_stay_apart(rng):
    from concurrent.futures import ThreadPoolExecutor

    layer = layers.Softmax()
    x = rng.standard_normal((4, 6)).astype("float32")
    masks = [rng.random((4, 6)) < 0.5 for _ in range(40)]
    expected = [layer(x, mask=m) for m in masks]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda m: layer(x, mask=m), masks))
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
    np.testing.assert_array_equal(layer(x), layers.Softmax()(x))  # no mask left behind


def test_integer_inputs_are_cast_to_float32():
    y = layers.ReLU(6.0)(np.array([[-3, 2, 9]], "int32"))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[0.0, 2.0, 6.0]])


# --------------------------------------------------------------------------------------------
# The shared layer contract
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs,shape,weight_shapes", [
    ("ReLU", {"max_value": 6.0}, (2, 3, 4), []),
    ("ReLU", {"max_value": 2.0, "negative_slope": 0.1, "threshold": 0.3}, (3, 5), []),
    ("LeakyReLU", {"negative_slope": 0.2}, (2, 5), []),
    ("ELU", {"alpha": 0.5}, (2, 3, 2), []),
    ("Softmax", {"axis": 1}, (2, 4, 3), []),
    ("Softmax", {"axis": [1, 2]}, (2, 4, 3), []),
    ("PReLU", {}, (2, 3, 4), [(3, 4)]),
    ("PReLU", {"shared_axes": [1, 2]}, (2, 3, 4, 5), [(1, 1, 5)]),
])
def test_layer_contract(name, kwargs, shape, weight_shapes):
    names = ["alpha"] * len(weight_shapes)
    run_layer_test(getattr(layers, name), kwargs, shape, expected_output_shape=shape,
                   expected_weight_shapes=weight_shapes, expected_weight_names=names)


# --------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------
# (class, kwargs): rejected by Keras and by us with the same type and text.
KERAS_REJECTS = [
    ("ReLU", {"max_value": -1.0}),
    ("ReLU", {"negative_slope": -0.5}),
    ("ReLU", {"negative_slope": None}),
    ("ReLU", {"threshold": -2}),
    ("ReLU", {"threshold": None}),
    ("LeakyReLU", {"negative_slope": -1}),
    ("LeakyReLU", {"negative_slope": None}),
]


@pytest.mark.parametrize("name,kwargs", KERAS_REJECTS)
def test_bad_arguments_raise_keras_errors(keras, name, kwargs):
    with pytest.raises(ValueError) as theirs:
        getattr(keras.layers, name)(**kwargs)
    with pytest.raises(ValueError) as ours:
        getattr(layers, name)(**kwargs)
    assert str(ours.value) == str(theirs.value)
    assert list(kwargs)[0] in str(ours.value)


# (class, kwargs, error type, text): Keras lets these through or fails with a bare Python error.
STRICTER = [
    ("ReLU", {"max_value": "6"}, TypeError, "max_value='6'"),
    ("ReLU", {"negative_slope": True}, TypeError, "negative_slope=True"),
    ("ReLU", {"threshold": float("nan")}, ValueError, "threshold=nan"),
    ("LeakyReLU", {"negative_slope": "0.3"}, TypeError, "negative_slope='0.3'"),
    ("ELU", {"alpha": "1"}, TypeError, "alpha='1'"),
    ("ELU", {"alpha": None}, TypeError, "alpha=None"),
    ("PReLU", {"shared_axes": "1"}, TypeError, "shared_axes='1'"),
    ("PReLU", {"shared_axes": [1, 1.5]}, TypeError, r"shared_axes=\[1, 1.5\]"),
    ("PReLU", {"shared_axes": 0}, ValueError, "shared_axes=0"),
    ("PReLU", {"shared_axes": [-1]}, ValueError, r"shared_axes=\[-1\]"),
    ("Softmax", {"axis": "a"}, TypeError, "axis='a'"),
    ("Softmax", {"axis": []}, TypeError, r"axis=\[\]"),
    ("Softmax", {"axis": 1.0}, TypeError, "axis=1.0"),
]


@pytest.mark.parametrize("name,kwargs,error,text", STRICTER)
def test_stricter_argument_checks_name_the_argument(name, kwargs, error, text):
    with pytest.raises(error, match=f"`{list(kwargs)[0]}`.*{text}"):
        getattr(layers, name)(**kwargs)


def test_unknown_keyword_is_refused():
    with pytest.raises(ValueError, match="Unrecognized keyword arguments passed to ReLU: {'foo': 1}"):
        layers.ReLU(foo=1)


def test_errors_found_at_build_or_call_name_the_argument():
    with pytest.raises(ValueError, match=r"`shared_axes` names axis 3.*shared_axes=\[3\]"):
        layers.PReLU(shared_axes=3)(np.zeros((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match="PReLU needs a known size for axis 2"):
        layers.PReLU().build((None, 3, None))
    layers.PReLU(shared_axes=2).build((None, 3, None))  # unknown but shared: fine
    with pytest.raises(ValueError, match="`axis` is out of bounds for an input of rank 2. Received: axis=2"):
        layers.Softmax(axis=2)(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"`axis` repeats an axis. Received: axis=\[1, -1\]"):
        layers.Softmax(axis=[1, -1])(np.zeros((2, 3), "float32"))


# --------------------------------------------------------------------------------------------
# A Keras model with these layers, loaded into gpuconv
# --------------------------------------------------------------------------------------------
def test_keras_sequential_with_activation_layers_loads_and_predicts_the_same(keras, rng):
    model = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8), keras.layers.ReLU(6.0), keras.layers.Dense(5),
        keras.layers.PReLU(alpha_initializer="random_normal"), keras.layers.LeakyReLU(0.1), keras.layers.ELU(0.7),
        keras.layers.Dense(4), keras.layers.Softmax(),
    ])
    ours = gpuconv.saving.deserialize_keras_object(json.loads(json.dumps(keras.saving.serialize_keras_object(model))))
    ours.set_weights([keras_numpy(w) for w in model.get_weights()])
    x = rng.standard_normal((3, 6)).astype("float32")
    np.testing.assert_allclose(ours(x), keras_numpy(model(x)), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# The CUDA engine (a GPU, or the cuda-emulator)
# --------------------------------------------------------------------------------------------
GPU_CASES = [
    ("ReLU", {"max_value": 6.0}, (2, 5, 3)),
    ("ReLU", {"max_value": 2.0, "negative_slope": 0.1, "threshold": 0.5}, (3, 4)),
    ("LeakyReLU", {}, (2, 6)),
    ("ELU", {"alpha": 0.5}, (2, 3, 2)),
    ("PReLU", {"shared_axes": [1], "alpha_initializer": "random_normal"}, (2, 3, 4)),
    ("Softmax", {"axis": [1, 2]}, (2, 3, 4)),
]


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("name,kwargs,shape", GPU_CASES)
def test_layers_on_the_cuda_backend_match_numpy(restore_backend, rng, name, kwargs, shape):
    xp = gpu_xp()
    x = _with_kinks(rng, shape, [np.float32(0.0), np.float32(6.0)])
    v = rng.standard_normal(shape).astype("float32")
    gpuconv.set_backend("numpy")
    cpu_layer = getattr(layers, name)(**kwargs)
    expected = _ours_run(cpu_layer, x, v)
    gpuconv.set_backend(GPU_BACKEND)
    gpu_layer = getattr(layers, name).from_config(cpu_layer.get_config())
    gpu_layer.build(shape)
    gpu_layer.set_weights(cpu_layer.get_weights())
    x_dev, v_dev = xp.asarray(x), xp.asarray(v)
    with gpuconv.GradientTape() as tape:
        tape.watch(x_dev)
        y = gpu_layer(x_dev)
    assert isinstance(y, xp.ndarray)
    grads = tape.gradient(y, [x_dev] + gpu_layer.trainable_weights, output_gradients=v_dev)
    assert isinstance(grads[0], xp.ndarray)
    got = (gpuconv.to_numpy(y), gpuconv.to_numpy(grads[0]), [gpuconv.to_numpy(g) for g in grads[1:]])
    _assert_same_run(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.gpu
@requires_cuda
def test_softmax_mask_on_the_cuda_backend_matches_numpy(restore_backend, rng):
    xp = gpu_xp()
    x = rng.standard_normal((2, 3, 5)).astype("float32")
    v = rng.standard_normal(x.shape).astype("float32")
    mask = rng.random((3, 5)) < 0.5
    mask[0] = False  # a fully masked row
    gpuconv.set_backend("numpy")
    expected = _ours_run(layers.Softmax(), x, v, mask)
    gpuconv.set_backend(GPU_BACKEND)
    for device_mask in (mask, xp.asarray(mask)):  # a host mask moves to the input's device
        x_dev = xp.asarray(x)
        got = _ours_run(layers.Softmax(), x_dev, xp.asarray(v), device_mask)
        _assert_same_run(got, expected, rtol=1e-6, atol=1e-7)

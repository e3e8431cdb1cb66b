"""gpuconv.activations against Keras 3 (torch backend) and against their definitions.

Keras-number tests skip with a reason when keras is absent; everything else runs without it.
"""
import math
import os

import numpy as np
import pytest

from gpuconv import activations

from conftest import gpu_xp, requires_cuda

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported anywhere in this process

KERAS_NAMES = {
    "relu", "leaky_relu", "relu6", "softmax", "celu", "elu", "selu", "softplus", "softsign", "squareplus",
    "soft_shrink", "sparse_plus", "silu", "gelu", "glu", "tanh", "tanh_shrink", "threshold", "sigmoid",
    "sparse_sigmoid", "exponential", "hard_sigmoid", "hard_silu", "hard_tanh", "hard_shrink", "linear", "mish",
    "log_softmax", "log_sigmoid", "sparsemax", "swish", "hard_swish",
}

# (name, kwargs) cases compared with Keras; kwargs exercise the non-default branches.
CASES = [(name, {}) for name in sorted(KERAS_NAMES - {"threshold", "sparsemax"})] + [
    ("relu", {"negative_slope": 0.1}),
    ("relu", {"max_value": 6.0}),
    ("relu", {"max_value": 2.5}),
    ("relu", {"threshold": 0.5}),
    ("relu", {"negative_slope": 0.1, "max_value": 3.0, "threshold": -0.5}),
    ("relu", {"negative_slope": 0.3, "threshold": 1.0}),
    ("leaky_relu", {"negative_slope": 0.05}),
    ("elu", {"alpha": 0.5}),
    ("celu", {"alpha": 2.0}),
    ("threshold", {"threshold": 0.5, "default_value": -1.0}),
    ("soft_shrink", {"threshold": 1.0}),
    ("hard_shrink", {"threshold": 1.0}),
    ("squareplus", {"b": 1}),
    ("gelu", {"approximate": True}),
    ("softmax", {"axis": 0}),
    ("log_softmax", {"axis": 0}),
    ("glu", {"axis": 0}),
]

# Inputs spanning every branch: both tails (where exp overflows in the unused branch), the
# break points of the piecewise functions (+-1, +-0.5, +-3, 0, 6) and ordinary values.
_POINTS = np.concatenate([np.linspace(-12, 12, 108), [-1, -0.5, 0, 0.5, 1, 3, -3, 6, -40, 40, 90, -90]])
X = _POINTS.reshape(12, 10)  # even lengths on both axes, for glu


@pytest.fixture(scope="module")
def keras_activations():
    keras = pytest.importorskip("keras", reason="comparing numbers with Keras needs keras>=3.15 (torch backend)")
    return keras.activations


def _keras_numpy(value):
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _call(fn, x, kwargs):
    return fn(x, **kwargs)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
def test_every_keras_name_resolves():
    assert set(activations.ALL_OBJECTS_DICT) == KERAS_NAMES
    assert activations.get("swish") is activations.silu
    assert activations.get("hard_swish") is activations.hard_silu


def test_registry_matches_installed_keras(keras_activations):
    from keras.src.activations import ALL_OBJECTS_DICT as keras_dict

    assert set(keras_dict) == set(activations.ALL_OBJECTS_DICT)
    for name, fn in keras_dict.items():
        assert keras_activations.serialize(fn) == activations.serialize(activations.get(name))


def test_signatures_match_keras(keras_activations):
    import inspect

    for name in KERAS_NAMES:
        assert inspect.signature(activations.get(name)) == inspect.signature(getattr(keras_activations, name)), name


def test_get_rules():
    assert activations.get(None) is activations.linear
    assert activations.get("relu") is activations.relu

    def mine(x):
        return x

    assert activations.get(mine) is mine
    for bad in ("ReLU", "Relu", "relu ", "foo", 3):
        with pytest.raises(ValueError, match=f"Could not interpret activation function identifier: {bad}"):
            activations.get(bad)


def test_get_dict_and_serialize():
    config = {"module": "keras.activations", "class_name": "function", "config": "relu", "registered_name": "relu"}
    assert activations.get(config) is activations.relu
    assert activations.deserialize("gelu") is activations.gelu
    assert activations.serialize(activations.get("swish")) == "silu"
    assert activations.serialize(activations.get("hard_swish")) == "hard_silu"
    assert activations.serialize(activations.get(None)) == "linear"
    for name in KERAS_NAMES:
        assert activations.get(activations.serialize(activations.get(name))) is activations.get(name)
    with pytest.raises(ValueError, match="Could not interpret activation function identifier"):
        activations.get({"module": "keras.activations", "class_name": "function", "config": "nope"})


def test_user_function_serializes_to_a_dict_resolved_only_through_custom_objects():
    config = activations.serialize(np.tanh)  # a ufunc: no __module__ function; named by its module
    assert config["class_name"] == "function" and config["config"] == "tanh"
    # issue 8: a config never imports or searches the module it names (it used to return
    # numpy.tanh here by importing 'numpy'); the caller supplies the object.
    with pytest.raises(ValueError, match="Could not interpret activation function identifier"):
        activations.get(config)
    assert activations.get(config, custom_objects={"tanh": np.tanh}) is np.tanh


def test_elementwise_set():
    assert {"softmax", "log_softmax", "glu", "sparsemax", "threshold"}.isdisjoint(activations.ELEMENTWISE)
    assert activations.ELEMENTWISE == KERAS_NAMES - {"softmax", "log_softmax", "glu", "sparsemax", "threshold"}


@pytest.mark.parametrize("name", sorted(KERAS_NAMES - {"softmax", "log_softmax", "glu", "sparsemax", "threshold"}))
def test_elementwise_names_really_act_elementwise(name):
    """What an engine fuses must not depend on the neighbours: f(x) == f on every element alone."""
    fn = activations.get(name)
    whole = fn(X)
    alone = np.array([fn(np.array([v]))[0] for v in X.ravel()]).reshape(X.shape)
    np.testing.assert_array_equal(whole, alone)


# --------------------------------------------------------------------------------------------
# Numbers against Keras
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{k}" if k else n for n, k in CASES])
def test_matches_keras(keras_activations, name, kwargs, dtype):
    x = X.astype(dtype)
    ours = _call(activations.get(name), x, kwargs)
    assert ours.dtype == np.dtype(dtype)
    # torch's float64 kernels differ from the closed forms in the last bits (softplus returns x
    # above 20, for example); float32 gets a few ulps.
    # The reference is Keras on the same values in float64 (torch's float32 kernels are themselves
    # a few ulps off, e.g. erf in gelu); float64 differs from torch only in the last bits
    # (torch's softplus returns x above 20, for example).
    expected = _keras_numpy(_call(getattr(keras_activations, name), x.astype(np.float64), kwargs))
    # atol: torch's float64 gelu rounds its far tail (~1e-32) to 0, ours keeps it.
    rtol, atol = (1e-9, 1e-15) if dtype == "float64" else (1e-6, 1e-12)
    with np.errstate(over="ignore"):  # rounded once, so an overflow gives inf on both sides
        expected = expected.astype(dtype).astype(np.float64)
    np.testing.assert_allclose(ours.astype(np.float64), expected, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("axis", [-1, 0])
def test_sparsemax_matches_keras_where_keras_is_right(keras_activations, axis):
    """Keras 3.15's sparsemax is right only when one logit survives (keras-team/keras#23425);
    on such inputs the two agree."""
    x = np.array([[5.0, 0.1, -2.0], [0.2, 4.0, 1.0], [-1.0, -3.0, 2.5]])
    ours = activations.sparsemax(x, axis=axis)
    theirs = _keras_numpy(keras_activations.sparsemax(x, axis=axis))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def _sparsemax_reference(z):
    """Martins & Astudillo (2016), Algorithm 1, one row at a time in plain Python."""
    z_sorted = sorted(z, reverse=True)
    running, k, support_sum = 0.0, 0, 0.0
    for j, value in enumerate(z_sorted, start=1):
        running += value
        if 1 + j * value > running:  # true for a prefix of j
            k, support_sum = j, running
    tau = (support_sum - 1) / k
    return [max(v - tau, 0.0) for v in z]


def test_sparsemax_is_the_simplex_projection(rng):
    x = rng.standard_normal((50, 7)) * 0.7
    y = activations.sparsemax(x)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-12)
    assert (y >= 0).all()
    expected = np.array([_sparsemax_reference(list(row)) for row in x])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-14)
    # the example from keras-team/keras#23425, where Keras 3.15 returns [0, 0, 0.25]
    np.testing.assert_allclose(activations.sparsemax(np.array([[0.0, 0.5, 1.0]])), [[0.0, 0.25, 0.75]])
    np.testing.assert_allclose(activations.sparsemax(x.T, axis=0), y.T, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Definitions, dtypes, edge values (no Keras needed)
# --------------------------------------------------------------------------------------------
def test_gelu_is_exact_and_its_erfc_is_accurate():
    z = np.concatenate([np.linspace(-6, 6, 2401), np.linspace(6, 26, 401)])
    ours = activations._erfc_f64(np, z)
    ref = np.array([math.erfc(v) for v in z])
    assert np.max(np.abs(ours / ref - 1)) < 1e-12
    x = np.linspace(-30, 30, 1201)
    expected = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x])
    np.testing.assert_allclose(activations.gelu(x), expected, rtol=1e-12, atol=1e-300)
    assert activations.gelu(np.array([-np.inf]))[0] == 0 and activations.gelu(np.array([np.inf]))[0] == np.inf


@pytest.mark.parametrize("name", sorted(KERAS_NAMES - {"threshold"}))
def test_float16_in_float16_out(name):
    fn = activations.get(name)
    x16 = X.astype(np.float16)
    x16 = np.clip(x16, -10, 10)  # exp(12) overflows float16; keep the reference finite
    y16 = fn(x16)
    assert y16.dtype == np.float16
    y64 = fn(x16.astype(np.float64))
    np.testing.assert_allclose(y16.astype(np.float64), y64, rtol=2e-3, atol=2e-3)


def test_integer_and_list_inputs_become_float32():
    assert activations.sigmoid(np.arange(4)).dtype == np.float32
    assert activations.relu([-1.0, 2.0]).tolist() == [0.0, 2.0]


def test_inputs_are_not_modified():
    x = X.copy()
    for name in sorted(KERAS_NAMES - {"threshold"}):
        activations.get(name)(x)
    np.testing.assert_array_equal(x, X)


def test_nan_propagates_and_tails_are_finite():
    x = np.array([np.nan, -1000.0, 1000.0])
    for name in ("relu", "sigmoid", "tanh", "softplus", "silu", "gelu", "elu", "selu", "mish", "log_sigmoid"):
        y = activations.get(name)(x)
        assert np.isnan(y[0]), name
        assert not np.isnan(y[1:]).any(), name
    np.testing.assert_allclose(activations.sigmoid(np.array([-1000.0, 1000.0])), [0.0, 1.0])
    np.testing.assert_allclose(activations.softmax(np.array([[1000.0, 1000.0]])), [[0.5, 0.5]])


def test_glu_rejects_odd_axis():
    with pytest.raises(ValueError, match="axis size must be divisible by 2"):
        activations.glu(np.zeros((2, 3)))


def test_threshold_needs_its_arguments_as_in_keras():
    with pytest.raises(TypeError):
        activations.get("threshold")(X)


@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(KERAS_NAMES - {"threshold"}))
def test_cupy_matches_numpy(name):
    cupy = gpu_xp()

    fn = activations.get(name)
    for dtype in ("float32", "float16", "float64"):
        x = X.astype(dtype)
        y = fn(cupy.asarray(x))
        assert isinstance(y, cupy.ndarray) and y.dtype == np.dtype(dtype)
        tol = {"float16": 2e-3, "float32": 1e-6, "float64": 1e-12}[dtype]
        np.testing.assert_allclose(cupy.asnumpy(y).astype(np.float64), fn(x).astype(np.float64), rtol=tol, atol=tol)

"""gpuconv.regularizers and gpuconv.constraints: values, names, configs and errors (against
Keras 3 where installed), and how layers use them."""
import numpy as np
import pytest

from gpuconv import constraints as C
from gpuconv import layers
from gpuconv import regularizers as R

from conftest import keras_numpy


@pytest.fixture
def kernel(rng):
    return rng.standard_normal((3, 3, 4, 5))


# --------------------------------------------------------------------------------------------
# Regularizers
# --------------------------------------------------------------------------------------------
def test_regularizer_values(kernel):
    x = kernel
    # Keras holds l1 as a float32 tensor: the coefficient is float32(0.3), not 0.3
    assert float(R.L1(0.3)(x)) == pytest.approx(float(np.float32(0.3)) * np.abs(x).sum(), rel=1e-12)
    assert float(R.L2(0.2)(x)) == pytest.approx(0.2 * (x * x).sum(), rel=1e-12)
    assert float(R.L1L2(0.3, 0.2)(x)) == pytest.approx(0.3 * np.abs(x).sum() + 0.2 * (x * x).sum(), rel=1e-12)
    assert float(R.L1L2()(x)) == 0.0
    assert R.L2()(x.astype(np.float32)).dtype == np.float32
    assert R.L1(None).l1 == float(np.float32(0.01)) and R.L1L2(None, None).get_config() == {"l1": 0.0, "l2": 0.0}


REGULARIZER_CASES = [("L1", {"l1": 0.3}), ("L2", {"l2": 0.2}), ("L1L2", {"l1": 0.1, "l2": 0.4}),
                     ("OrthogonalRegularizer", {"factor": 0.5}), ("OrthogonalRegularizer", {"mode": "columns"})]


@pytest.mark.parametrize("name,kwargs", REGULARIZER_CASES)
def test_regularizers_match_keras(keras, rng, name, kwargs):
    x = rng.standard_normal((6, 4))
    x[2] = 0.0  # a zero row: the orthogonal regularizer's normalisation must leave it at zero
    ours = float(getattr(R, name)(**kwargs)(x))
    # a backend tensor: Keras' NumPy-input branch of `normalize` breaks for mode='columns'
    theirs = float(keras_numpy(getattr(keras.regularizers, name)(**kwargs)(keras.ops.convert_to_tensor(x))))
    assert ours == pytest.approx(theirs, rel=1e-6)


@pytest.mark.parametrize("name", ["l1", "l2", "l1l2", "L1", "L2", "L1L2", "orthogonal_regularizer",
                                  "OrthogonalRegularizer"])
def test_regularizer_names_and_configs_match_keras(keras, name):
    ours = R.serialize(R.get(name))
    theirs = keras.regularizers.serialize(keras.regularizers.get(name))
    if theirs["class_name"] in ("L1", "OrthogonalRegularizer"):
        # Keras stores these factors as float32 tensors (0.01 -> 0.009999999776482582); we keep the float
        key = "l1" if theirs["class_name"] == "L1" else "factor"
        assert ours["config"][key] == pytest.approx(theirs["config"][key], rel=1e-7)
        ours["config"][key] = theirs["config"][key]
    assert ours == theirs


def test_regularizer_get_forms():
    assert type(R.get("l1_l2")) is R.L1L2  # the Keras 2 spelling the brief asks for
    reg = R.L2(0.5)
    assert R.get(reg) is reg and type(R.get(R.L1)) is R.L1 and R.get(None) is None
    again = R.get(R.serialize(R.L1L2(0.1, 0.2)))
    assert type(again) is R.L1L2 and again.get_config() == {"l1": 0.1, "l2": 0.2}
    for bad in ("foo", "L1l2", 5):
        with pytest.raises(ValueError, match=f"Could not interpret regularizer identifier: {bad}"):
            R.get(bad)


@pytest.mark.parametrize("cls,kwargs,name", [
    (R.L1, {"l1": -1}, "l1"), (R.L2, {"l2": float("inf")}, "l2"), (R.L1L2, {"l2": float("nan")}, "l2"),
    (R.L1, {"l1": "0.1"}, "l1"), (R.OrthogonalRegularizer, {"factor": -0.5}, "factor"),
])
def test_regularizer_argument_errors(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"Invalid value for argument {name}: expected a non-negative float"):
        cls(**kwargs)


def test_orthogonal_regularizer_errors_and_zero():
    with pytest.raises(ValueError, match="Expected one of"):
        R.OrthogonalRegularizer(mode="diagonal")
    with pytest.raises(ValueError, match="must have rank 2"):
        R.OrthogonalRegularizer()(np.zeros((2, 2, 2)))
    assert float(R.OrthogonalRegularizer(factor=1.0)(np.eye(4))) == 0.0
    # two identical rows: the off-diagonal sum counts their pair twice, over 3 pairs: 0.5 * 2 / 3
    assert float(R.OrthogonalRegularizer(factor=1.0)(np.array([[1.0, 0], [1.0, 0], [0, 1.0]]))) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------------------------
# Constraints
# --------------------------------------------------------------------------------------------
CONSTRAINT_CASES = [("MaxNorm", {}), ("MaxNorm", {"max_value": 1.5, "axis": [0, 1, 2]}), ("NonNeg", {}),
                    ("UnitNorm", {}), ("UnitNorm", {"axis": -1}), ("MinMaxNorm", {}),
                    ("MinMaxNorm", {"min_value": 2.0, "max_value": 3.0, "rate": 0.5, "axis": [0, 1, 2]})]


@pytest.mark.parametrize("name,kwargs", CONSTRAINT_CASES)
def test_constraints_match_keras(keras, kernel, name, kwargs):
    ours = getattr(C, name)(**kwargs)(kernel)
    theirs = keras_numpy(getattr(keras.constraints, name)(**kwargs)(kernel))
    assert ours.shape == kernel.shape and ours.dtype == kernel.dtype
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)


def test_constraint_semantics(kernel):
    k = C.MaxNorm(max_value=1.0, axis=[0, 1, 2])(kernel)
    norms = np.sqrt((k * k).sum(axis=(0, 1, 2)))
    assert (norms <= 1.0 + 1e-6).all()
    u = C.UnitNorm(axis=0)(kernel)
    np.testing.assert_allclose(np.sqrt((u * u).sum(axis=0)), 1.0, rtol=1e-6)
    assert (C.NonNeg()(kernel) >= 0).all()
    small = kernel * 1e-3
    np.testing.assert_allclose(C.MaxNorm(2.0)(small), small, rtol=1e-3)  # below the cap: unchanged
    assert C.MaxNorm()(kernel.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("name", ["max_norm", "MaxNorm", "non_neg", "NonNeg", "unit_norm", "UnitNorm",
                                  "min_max_norm", "MinMaxNorm"])
def test_constraint_names_and_configs_match_keras(keras, name):
    assert C.serialize(C.get(name)) == keras.constraints.serialize(keras.constraints.get(name))


def test_constraint_get_forms():
    c = C.MaxNorm(3, axis=[0, 1])
    assert C.get(c) is c and C.get(None) is None and type(C.get(C.NonNeg)) is C.NonNeg
    again = C.get(C.serialize(c))
    assert type(again) is C.MaxNorm and again.get_config() == {"max_value": 3, "axis": [0, 1]}
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: foo"):
        C.get("foo")


# --------------------------------------------------------------------------------------------
# In layers
# --------------------------------------------------------------------------------------------
def test_layer_losses_from_weight_regularizers(rng):
    layer = layers.Dense(3, kernel_regularizer="l2", bias_regularizer=R.L1(0.5), bias_initializer="ones")
    layer(rng.standard_normal((2, 4)).astype("float32"))
    kernel, bias = layer.get_weights()
    assert layer.losses == [pytest.approx(0.01 * float((kernel.astype(np.float64) ** 2).sum()), rel=1e-6),
                            pytest.approx(0.5 * 3)]


def test_set_weights_stores_values_as_given_despite_constraints(rng):
    # Keras applies constraints only after an optimizer update; set_weights must not alter weights.
    layer = layers.Dense(2, kernel_constraint="non_neg", bias_constraint=C.MaxNorm(1.0))
    layer.build((None, 3))
    layer.set_weights([-np.ones((3, 2), "float32"), np.array([3.0, 4.0], "float32")])
    kernel, bias = layer.get_weights()
    assert (kernel == -1).all()
    np.testing.assert_array_equal(bias, [3.0, 4.0])
    config = layer.get_config()
    assert config["kernel_constraint"] == {"module": "keras.constraints", "class_name": "NonNeg", "config": {},
                                           "registered_name": None}
    clone = layers.Dense.from_config(config)
    assert type(clone.kernel_constraint) is C.NonNeg and type(clone.bias_constraint) is C.MaxNorm

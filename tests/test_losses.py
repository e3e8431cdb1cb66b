"""gpuconv.losses on its own: the cases every loss test draws from (also used by
test_losses_keras_parity.py), gradients by central finite differences in float64 (functions and
classes, away from kinks), reductions and sample weights against hand-written sums, names and
configs, argument and shape errors, and the cuda-emulator's arrays."""
import math

import numpy as np
import pytest

import gpuconv
from gpuconv import losses as L

B, C = 6, 5


# --------------------------------------------------------------------------------------------
# Cases: (id, class name, function name, kwargs, kind of data)
# --------------------------------------------------------------------------------------------
CASES = [
    ("mse", "MeanSquaredError", "mean_squared_error", {}, "real"),
    ("mae", "MeanAbsoluteError", "mean_absolute_error", {}, "real"),
    ("mape", "MeanAbsolutePercentageError", "mean_absolute_percentage_error", {}, "real"),
    ("msle", "MeanSquaredLogarithmicError", "mean_squared_logarithmic_error", {}, "positive"),
    ("cosine", "CosineSimilarity", "cosine_similarity", {}, "real"),
    ("cosine_axis0", "CosineSimilarity", "cosine_similarity", {"axis": 0}, "real"),
    ("huber", "Huber", "huber", {}, "real"),
    ("huber_delta", "Huber", "huber", {"delta": 0.4}, "real"),
    ("log_cosh", "LogCosh", "log_cosh", {}, "real"),
    ("kld", "KLDivergence", "kl_divergence", {}, "prob"),
    ("poisson", "Poisson", "poisson", {}, "positive"),
    ("hinge01", "Hinge", "hinge", {}, "binary_logits"),
    ("hinge_pm1", "Hinge", "hinge", {}, "pm1"),
    ("squared_hinge", "SquaredHinge", "squared_hinge", {}, "pm1"),
    ("categorical_hinge", "CategoricalHinge", "categorical_hinge", {}, "onehot_logits"),
    ("bce", "BinaryCrossentropy", "binary_crossentropy", {}, "binary"),
    ("bce_logits", "BinaryCrossentropy", "binary_crossentropy", {"from_logits": True}, "binary_logits"),
    ("bce_smooth", "BinaryCrossentropy", "binary_crossentropy", {"label_smoothing": 0.2}, "binary"),
    ("bce_axis0", "BinaryCrossentropy", "binary_crossentropy", {"axis": 0, "from_logits": True}, "soft_logits"),
    ("bfce", "BinaryFocalCrossentropy", "binary_focal_crossentropy", {}, "binary"),
    ("bfce_all", "BinaryFocalCrossentropy", "binary_focal_crossentropy",
     {"apply_class_balancing": True, "alpha": 0.4, "gamma": 1.5, "from_logits": True, "label_smoothing": 0.1},
     "binary_logits"),
    ("cce", "CategoricalCrossentropy", "categorical_crossentropy", {}, "onehot"),
    ("cce_logits", "CategoricalCrossentropy", "categorical_crossentropy", {"from_logits": True}, "onehot_logits"),
    ("cce_smooth", "CategoricalCrossentropy", "categorical_crossentropy",
     {"from_logits": True, "label_smoothing": 0.1}, "onehot_logits"),
    ("cce_axis0", "CategoricalCrossentropy", "categorical_crossentropy", {"axis": 0}, "soft"),
    ("cfce", "CategoricalFocalCrossentropy", "categorical_focal_crossentropy", {}, "onehot"),
    ("cfce_all", "CategoricalFocalCrossentropy", "categorical_focal_crossentropy",
     {"alpha": 0.5, "gamma": 3.0, "from_logits": True, "label_smoothing": 0.2}, "onehot_logits"),
    ("scce", "SparseCategoricalCrossentropy", "sparse_categorical_crossentropy", {}, "sparse"),
    ("scce_logits", "SparseCategoricalCrossentropy", "sparse_categorical_crossentropy", {"from_logits": True},
     "sparse_logits"),
    ("scce_ignore", "SparseCategoricalCrossentropy", "sparse_categorical_crossentropy", {"ignore_class": 2},
     "sparse"),
    ("scce_ignore_logits", "SparseCategoricalCrossentropy", "sparse_categorical_crossentropy",
     {"ignore_class": 2, "from_logits": True}, "sparse_logits"),
    ("scce_axis1", "SparseCategoricalCrossentropy", "sparse_categorical_crossentropy",
     {"axis": 1, "from_logits": True}, "sparse_axis1"),
]
CASE_IDS = [c[0] for c in CASES]
CLASS_ARGS = {"axis", "delta", "from_logits", "label_smoothing", "apply_class_balancing", "alpha", "gamma",
              "ignore_class"}


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def make_inputs(kind, rng, dtype="float32", shape=(B, C)):
    """(y_true, y_pred) of a kind of data, y_pred in ``dtype``."""
    n = shape[-1]
    normal = rng.standard_normal(shape)
    if kind == "real":
        y_true, y_pred = rng.standard_normal(shape), normal
    elif kind == "positive":
        y_true, y_pred = rng.uniform(0.0, 3.0, shape), rng.uniform(0.1, 3.0, shape)
    elif kind in ("prob", "soft"):
        y_true, y_pred = _softmax(rng.standard_normal(shape)), _softmax(normal)
    elif kind in ("onehot", "onehot_logits"):
        y_true = np.eye(n)[rng.integers(0, n, shape[:-1])]
        y_pred = _softmax(normal) if kind == "onehot" else 2.0 * normal
    elif kind in ("binary", "binary_logits"):
        y_true = rng.integers(0, 2, shape).astype(np.float64)
        y_pred = rng.uniform(0.02, 0.98, shape) if kind == "binary" else 3.0 * normal
    elif kind == "soft_logits":
        y_true, y_pred = rng.uniform(0, 1, shape), 3.0 * normal
    elif kind == "pm1":
        y_true, y_pred = rng.choice([-1.0, 1.0], shape), normal
    elif kind in ("sparse", "sparse_logits"):
        y_true = rng.integers(0, n, shape[:-1])
        y_pred = _softmax(normal) if kind == "sparse" else 2.0 * normal
    elif kind == "sparse_axis1":  # (batch, classes, steps), labels (batch, steps)
        y_true, y_pred = rng.integers(0, 4, (shape[0], 3)), 2.0 * rng.standard_normal((shape[0], 4, 3))
    else:
        raise AssertionError(kind)
    y_true = y_true if y_true.dtype.kind == "i" else y_true.astype(dtype)
    return y_true, y_pred.astype(dtype)


def ours(case):
    _, cls_name, fn_name, kwargs, kind = case
    return getattr(L, cls_name), getattr(L, fn_name), kwargs, kind


def class_kwargs(kwargs):
    return {k: v for k, v in kwargs.items() if k in CLASS_ARGS}


# --------------------------------------------------------------------------------------------
# Finite differences (float64), away from kinks
# --------------------------------------------------------------------------------------------
def _kink_distance(case_id, y_true, y_pred):
    """How far each entry is from where its loss is not differentiable (inf: nowhere)."""
    if case_id in ("mae", "mape"):
        return np.abs(y_true - y_pred)
    if case_id.startswith("huber"):
        delta = 0.4 if case_id == "huber_delta" else 1.0
        e = np.abs(y_true - y_pred)
        return np.minimum(e, np.abs(e - delta))
    if "hinge" in case_id and case_id != "categorical_hinge":
        y = 2 * y_true - 1 if set(np.unique(y_true)) <= {0.0, 1.0} else y_true
        return np.abs(1 - y * y_pred)
    if case_id == "categorical_hinge":
        masked = (1 - y_true) * y_pred
        top2 = np.sort(masked, axis=-1)[..., -2:]
        margin = top2[..., 1] - (y_true * y_pred).sum(-1) + 1
        return np.minimum(np.abs(margin), top2[..., 1] - top2[..., 0])
    return np.full(1, np.inf)


def kink_free_inputs(case, seed, dtype="float64"):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        y_true, y_pred = make_inputs(case[4], rng, dtype)
        if np.min(_kink_distance(case[0], y_true, y_pred)) > 0.02:
            return y_true, y_pred
    raise AssertionError(f"no kink-free draw for {case[0]}")


def numeric_gradient(f, x, eps=1e-6):
    """Central differences of the scalar ``f`` at ``x``."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        g[idx] = (float(f(plus)) - float(f(minus))) / (2 * eps)
    return g


def tape_gradient(f, x):
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        value = f(x)
    return value, tape.gradient(value, x)


def assert_fd(f, x):
    value, g = tape_gradient(f, x)
    expected = numeric_gradient(f, x)
    assert g is not None and g.shape == x.shape and g.dtype == x.dtype
    # central differences err by ~ulp(f)/eps ~ 1e-10 per entry: the floor keeps small gradients testable
    assert np.linalg.norm(g - expected) <= 1e-6 * np.linalg.norm(expected) + 1e-8 * math.sqrt(x.size), (g, expected)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_function_gradient_matches_finite_differences(case, seed):
    _, fn, kwargs, _ = ours(case)
    y_true, y_pred = kink_free_inputs(case, seed)
    v = np.random.default_rng(seed + 100).standard_normal(np.shape(fn(y_true, y_pred, **kwargs)))
    assert_fd(lambda p: gpuconv.ops.sum(gpuconv.ops.multiply(fn(y_true, p, **kwargs), v)), y_pred)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "mean_with_sample_weight"])
def test_class_gradient_matches_finite_differences(case, reduction):
    cls, fn, kwargs, _ = ours(case)
    y_true, y_pred = kink_free_inputs(case, 7)
    loss = cls(reduction=reduction, dtype="float64", **class_kwargs(kwargs))
    weights = np.random.default_rng(3).uniform(0.5, 2.0, np.shape(fn(y_true, y_pred, **kwargs)))
    assert_fd(lambda p: loss(y_true, p, sample_weight=weights), y_pred)


def test_gradient_reaches_y_true_too():
    y_true, y_pred = np.array([[0.2, 0.5]]), np.array([[0.1, 0.9]])
    for loss in (L.mean_squared_error, L.kl_divergence, L.categorical_crossentropy):
        assert_fd(lambda t: gpuconv.ops.sum(loss(t, y_pred)), y_true)


def test_power_gradient_at_zero_base_and_zero_exponent():
    x = np.array([0.0, 2.0])
    _, g = tape_gradient(lambda a: gpuconv.ops.sum(gpuconv.ops.power(a, 2.0)), x)
    np.testing.assert_array_equal(g, [0.0, 4.0])
    _, g = tape_gradient(lambda a: gpuconv.ops.sum(gpuconv.ops.power(a, 0.0)), x)
    np.testing.assert_array_equal(g, [0.0, 0.0])  # d/da a^0 is 0, never 0 * inf
    _, g = tape_gradient(lambda b: gpuconv.ops.sum(gpuconv.ops.power(np.array([0.0, 2.0]), b)), np.array([1.5, 1.5]))
    np.testing.assert_allclose(g, [0.0, 2.0 ** 1.5 * math.log(2.0)])


# --------------------------------------------------------------------------------------------
# Reductions and sample weights, by hand
# --------------------------------------------------------------------------------------------
def _per_sample(y_true, y_pred):
    return ((y_true.astype(np.float64) - y_pred) ** 2).mean(-1)


@pytest.mark.parametrize("reduction", list(L.loss.REDUCTIONS))
def test_reductions_and_sample_weight_by_hand(rng, reduction):
    y_true, y_pred = make_inputs("real", rng)
    w = rng.uniform(0, 2, B).astype(np.float32)
    values = _per_sample(y_true, y_pred) * w
    expected = {"sum": values.sum(), "sum_over_batch_size": values.mean(), "mean": values.mean(),
                "mean_with_sample_weight": values.sum() / w.sum(), "none": values, None: values}[reduction]
    got = L.MeanSquaredError(reduction=reduction)(y_true, y_pred, sample_weight=w)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # a (B, 1) weight and (B,) losses: Keras expands the rank-1 losses to (B, 1) (seen unreduced)
    column = L.MeanSquaredError(reduction=reduction)(y_true, y_pred, sample_weight=w[:, None])
    np.testing.assert_allclose(column, expected[:, None] if reduction in ("none", None) else expected, rtol=1e-6)
    unweighted = _per_sample(y_true, y_pred)
    scaled = L.MeanSquaredError(reduction=reduction)(y_true, y_pred, sample_weight=3.0)
    if reduction == "mean_with_sample_weight":  # divided by the (scalar) weight's sum: 3 * sum / 3
        np.testing.assert_allclose(scaled, unweighted.sum(), rtol=1e-6)
    elif reduction in ("none", None):
        np.testing.assert_allclose(scaled, 3.0 * unweighted, rtol=1e-6)


def test_zero_weights_divide_to_zero_and_empty_batches():
    y = np.ones((2, 3), np.float32)
    assert float(L.MeanSquaredError("mean_with_sample_weight")(y * 0, y, sample_weight=np.zeros(2))) == 0.0
    assert float(L.MeanSquaredError()(y * 0, y, sample_weight=np.zeros(2))) == 0.0
    empty = L.MeanSquaredError()(np.zeros((0, 3)), np.zeros((0, 3)))
    assert empty.shape == (0,)  # Keras returns the empty per-sample losses unreduced


def test_ignore_class_averages_over_the_valid_entries(rng):
    y_true, y_pred = make_inputs("sparse", rng)
    y_true[:2] = 2
    y_true[2:] = np.where(y_true[2:] == 2, 0, y_true[2:])
    per = -np.log(np.clip(y_pred / y_pred.sum(-1, keepdims=True), 1e-7, 1 - 1e-7)[np.arange(B), y_true])
    valid = y_true != 2
    loss = L.SparseCategoricalCrossentropy(ignore_class=2)
    np.testing.assert_allclose(loss(y_true, y_pred), per[valid].mean(), rtol=1e-6)
    np.testing.assert_allclose(L.SparseCategoricalCrossentropy(ignore_class=2, reduction="sum")(y_true, y_pred),
                               per[valid].sum(), rtol=1e-6)
    np.testing.assert_array_equal(L.sparse_categorical_crossentropy(y_true, y_pred, ignore_class=2)[:2], 0.0)
    all_ignored = loss(np.full(B, 2), y_pred)
    assert float(all_ignored) == 0.0  # divide_no_nan: no valid entry gives 0, not NaN
    _, g = tape_gradient(lambda p: loss(np.full(B, 2), p), y_pred)
    assert np.isfinite(g).all() and not g.any()


def test_ignored_labels_may_be_out_of_range():
    y_pred = np.full((3, 4), 0.25, np.float32)
    # -1 is not the ignored class: it is out of range, 255 is ignored before the range check
    with pytest.raises(ValueError, match=r"y_true.*outside \[0, 4\).*\[-1\]"):
        L.sparse_categorical_crossentropy(np.array([-1, 255, 1]), y_pred, ignore_class=255)
    got = L.sparse_categorical_crossentropy(np.array([3, 255, 1]), y_pred, ignore_class=255)
    np.testing.assert_allclose(got, [math.log(4), 0.0, math.log(4)], rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Names, configs, get / serialize / deserialize
# --------------------------------------------------------------------------------------------
def test_get_forms():
    assert L.get("mse") is L.mean_squared_error and L.get("MSE") is L.mean_squared_error
    assert L.get("logcosh") is L.log_cosh  # the Keras 2 spelling, kept
    assert type(L.get("Huber")) is L.Huber and L.get(None) is None
    loss = L.BinaryCrossentropy(from_logits=True)
    assert L.get(loss) is loss and type(L.get(L.Poisson)) is L.Poisson
    again = L.get({"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}})
    assert type(again) is L.CategoricalCrossentropy and again.from_logits is True
    for bad in ("foo", "huber_loss", 5, "mean_squared_Error"):
        with pytest.raises(ValueError, match=f"Could not interpret loss identifier: {bad}"):
            L.get(bad)


def test_serialize_round_trip_and_custom_objects():
    for loss in (L.SparseCategoricalCrossentropy(ignore_class=3, from_logits=True), L.MeanSquaredError("sum"),
                 L.LossFunctionWrapper(L.huber, delta=3.0, name="h")):
        again = L.deserialize(L.serialize(loss))
        assert type(again) is type(loss) and again.get_config() == loss.get_config()
    assert L.deserialize(L.serialize(L.poisson)) is L.poisson

    def my_loss(y_true, y_pred):
        return gpuconv.ops.mean(gpuconv.ops.abs(gpuconv.ops.subtract(y_true, y_pred)), axis=-1)

    config = L.serialize(L.LossFunctionWrapper(my_loss, reduction="sum"))
    with pytest.raises(ValueError, match="Could not interpret loss identifier"):
        L.deserialize(config)  # a config names no code: the function must be supplied
    again = L.deserialize(config, custom_objects={"my_loss": my_loss})
    assert again.fn is my_loss and float(again(np.zeros((2, 2)), np.ones((2, 2)))) == 2.0
    evil = {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"}
    with pytest.raises(ValueError, match="Could not interpret loss identifier"):
        L.deserialize(evil)


def test_loss_names_are_unique_per_session():
    gpuconv.clear_session()
    assert [L.Loss().name for _ in range(2)] == ["loss", "loss_1"]
    assert L.LossFunctionWrapper(L.hinge).name == "loss_function_wrapper"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,match", [
    (lambda: L.MeanSquaredError(reduction="avg"), r"argument `reduction`.*Received: reduction=avg"),
    (lambda: L.MeanSquaredError(dtype="int8"), r"argument `dtype`.*Received: dtype='int8'"),
    (lambda: L.BinaryCrossentropy(label_smoothing=1.5), r"`label_smoothing`.*\[0, 1\].*label_smoothing=1.5"),
    (lambda: L.CategoricalFocalCrossentropy(gamma=-1.0), r"`gamma`.*gamma=-1.0"),
    (lambda: L.BinaryFocalCrossentropy(alpha="a"), r"`alpha`.*alpha='a'"),
    (lambda: L.Huber(delta=float("nan")), r"`delta`.*delta=nan"),
    (lambda: L.CategoricalCrossentropy(axis=True), r"`axis` must be of type `int`. Received: axis=True"),
    (lambda: L.SparseCategoricalCrossentropy(ignore_class=1.5), r"`ignore_class`.*ignore_class=1.5"),
    (lambda: L.LossFunctionWrapper("mse"), r"`fn`.*fn='mse'"),
])
def test_bad_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize("fn,y_true,y_pred,match", [
    (L.mean_squared_error, np.zeros((2, 4)), np.zeros((2, 3)),
     r"broadcastable.*y_true.shape=\(2, 4\), y_pred.shape=\(2, 3\)"),
    (L.binary_crossentropy, np.zeros((2,)), np.zeros((2, 1)),
     r"same shape.*y_true.shape=\(2,\), y_pred.shape=\(2, 1\)"),
    (L.categorical_crossentropy, np.zeros((2, 4)), np.ones((2, 3)), r"same shape.*y_true.shape=\(2, 4\)"),
    (L.sparse_categorical_crossentropy, np.zeros(3, int), np.ones((2, 3)), r"up until the class axis.*\(3,\)"),
    (L.sparse_categorical_crossentropy, np.array([0, 3]), np.ones((2, 3)), r"outside \[0, 3\).*\[3\]"),
    (L.sparse_categorical_crossentropy, np.array([0, 1]), np.ones((2, 3)) * 0.3, None),
    (L.categorical_crossentropy, np.ones((2, 3)), np.ones((2, 3)), None),
    (L.hinge, np.ones((2, 3)), None, r"`y_pred` must be an array. Received: y_pred=None"),
    (L.hinge, None, np.ones((2, 3)), r"`y_true` must be an array. Received: y_true=None"),
    (L.hinge, np.ones((2, 3)), np.array(["a", "b"]), r"`y_pred` must be a real numeric array"),
])
def test_bad_shapes_and_values(fn, y_true, y_pred, match):
    if match is None:  # the well-formed neighbour of the case above it works
        assert np.isfinite(fn(y_true, y_pred)).all()
        return
    with pytest.raises((ValueError, TypeError), match=match):
        fn(y_true, y_pred)


def test_bad_sample_weight_shape_names_the_argument():
    with pytest.raises(ValueError, match=r"`sample_weight`.*\(3,\)"):
        L.MeanSquaredError()(np.zeros((2, 3)), np.ones((2, 3)), sample_weight=np.ones(3))


def test_single_class_categorical_warns_as_keras():
    with pytest.warns(SyntaxWarning, match="expected y_pred.shape to be"):
        L.categorical_crossentropy(np.ones((2, 1)), np.ones((2, 1)))


# --------------------------------------------------------------------------------------------
# Dtypes and array modules
# --------------------------------------------------------------------------------------------
def test_dtypes_follow_keras(rng):
    y_true, y_pred = make_inputs("real", rng, "float64")
    assert L.mean_squared_error(y_true, y_pred).dtype == np.float64  # functions keep y_pred's dtype
    assert L.MeanSquaredError()(y_true, y_pred).dtype == np.float32  # classes compute in their dtype
    assert L.MeanSquaredError(dtype="float64")(y_true, y_pred).dtype == np.float64
    assert L.MeanSquaredError(dtype="mixed_float16").dtype == "float16"
    assert L.mean_squared_error([[0.0, 1.0]], [[1.0, 1.0]]).dtype == np.float32  # lists are floatx
    np.testing.assert_allclose(L.mean_squared_error(np.array([[1, 2]]), np.array([[0, 0]])), [2.5])


def test_losses_run_on_emulator_arrays(rng):
    from conftest import EMULATOR_AVAILABLE

    if not EMULATOR_AVAILABLE:
        pytest.skip("cuda-emulator unavailable")
    from gpuconv.emulator import xp
    from gpuconv.emulator.runtime import DeviceArray

    for case in CASES:
        cls, fn, kwargs, kind = ours(case)
        y_true, y_pred = make_inputs(kind, rng)
        host_value, host_grad = tape_gradient(lambda p: cls(**class_kwargs(kwargs))(y_true, p), y_pred)
        dev_pred = xp.asarray(y_pred)
        value, grad = tape_gradient(lambda p: cls(**class_kwargs(kwargs))(y_true, p), dev_pred)
        assert isinstance(grad, DeviceArray), case[0]
        np.testing.assert_allclose(np.asarray(value), host_value, rtol=1e-6, err_msg=case[0])
        np.testing.assert_allclose(np.asarray(grad), host_grad, rtol=1e-6, atol=1e-9, err_msg=case[0])


def test_out_of_range_label_on_a_device_is_nan_not_a_sync():
    from conftest import EMULATOR_AVAILABLE

    if not EMULATOR_AVAILABLE:
        pytest.skip("cuda-emulator unavailable")
    from gpuconv.emulator import xp

    got = np.asarray(L.sparse_categorical_crossentropy(xp.asarray(np.array([0, 7])), xp.asarray(np.ones((2, 3)))))
    assert np.isfinite(got[0]) and np.isnan(got[1])

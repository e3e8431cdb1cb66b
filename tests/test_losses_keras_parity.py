"""gpuconv.losses against real Keras 3.15 on its torch backend: every loss as a function and as
a class, under every reduction and sample-weight form, with from_logits / label_smoothing /
axis / ignore_class; edge values; configs and names; and the gradient with respect to y_pred
against torch autograd through Keras' loss.

Tolerances, and why: values are float32 computed in a different order (NumPy's pairwise sums
against torch's reductions, a different but equally exact stable BCE-from-logits formula), so
they agree to about a float32 ulp of the largest term: rtol 1e-6, with an absolute floor of
1e-6 for results that cancel: a "sum" of ~25 signed O(1) cosine similarities adding up to 0.05
carries a few ulps of its terms (4e-7 seen). Gradients: relative L2 <= 1e-5, the float32 gradient test of
tests/test_autodiff_functions.py.
"""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported anywhere in this process
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import gpuconv  # noqa: E402
from gpuconv import losses as L  # noqa: E402

from conftest import keras_numpy, relative_l2_error  # noqa: E402
from test_losses import B, CASE_IDS, CASES, class_kwargs, make_inputs, ours  # noqa: E402

RTOL, ATOL = 1e-6, 1e-6
REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", None, "none"]
WEIGHTS = ["none", "scalar", "per_sample", "column", "zeros"]


def _rng(case_id, salt):
    return np.random.default_rng([sum(map(ord, case_id)), salt])


def _weight(form, shape):
    """A sample weight of a form, for per-sample losses of ``shape``."""
    rng = np.random.default_rng(shape[0])
    return {"none": None, "scalar": np.float32(1.7), "per_sample": rng.uniform(0, 2, shape).astype(np.float32),
            "column": rng.uniform(0, 2, (shape[0], 1)).astype(np.float32),
            "zeros": np.zeros(shape, np.float32)}[form]


def _keras_weight(sw, losses_shape, kwargs):
    """The weight handed to Keras: the same one, except with ``ignore_class`` for a 0-d weight or
    one of the losses' rank with axes of 1: there Keras' torch backend fails (an in-place
    ``sample_weight *= mask`` cannot grow a tensor), and the broadcast weight means the same."""
    if sw is None or "ignore_class" not in kwargs or np.ndim(sw) not in (0, len(losses_shape)):
        return sw
    return np.broadcast_to(sw, losses_shape).copy()


def _keras_loss(case, **kwargs):
    _, cls_name, _, case_kwargs, _ = case
    return getattr(keras.losses, cls_name)(**class_kwargs(case_kwargs), **kwargs)


def _t(x):
    """A torch copy: Keras multiplies sample weights in place, which must not reach our input."""
    return None if x is None else torch.from_numpy(np.array(x))


def _assert_values(got, want, what):
    got, want = gpuconv.to_numpy(got), keras_numpy(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=what)


def _losses_shape(case, y_pred, y_true):
    """The shape of the per-sample losses (the class axis 0 cases reduce the batch)."""
    return np.shape(getattr(L, case[2])(y_true, y_pred, **case[3]))


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_function_matches_keras(case):
    _, fn, kwargs, kind = ours(case)
    y_true, y_pred = make_inputs(kind, _rng(case[0], 0))
    want = getattr(keras.losses, case[2])(_t(y_true), _t(y_pred), **kwargs)
    _assert_values(fn(y_true, y_pred, **kwargs), want, case[0])


@pytest.mark.parametrize("weight", WEIGHTS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_class_matches_keras(case, reduction, weight):
    cls, _, kwargs, kind = ours(case)
    y_true, y_pred = make_inputs(kind, _rng(case[0], 1))
    shape = _losses_shape(case, y_pred, y_true)
    sw = _weight(weight, shape)
    want = _keras_loss(case, reduction=reduction)(_t(y_true), _t(y_pred),
                                                  sample_weight=_t(_keras_weight(sw, shape, kwargs)))
    got = cls(reduction=reduction, **class_kwargs(kwargs))(y_true, y_pred, sample_weight=sw)
    _assert_values(got, want, f"{case[0]} {reduction} {weight}")


SEQUENCE_CASES = [c for c in CASES if c[0] in ("mse", "huber", "bce_logits", "cce_logits", "scce_ignore_logits",
                                               "cosine", "hinge_pm1", "kld")]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", SEQUENCE_CASES, ids=[c[0] for c in SEQUENCE_CASES])
def test_per_timestep_weights_on_sequences_match_keras(case, reduction):
    """(batch, steps, features) inputs: losses (batch, steps), weighted per step or per sample."""
    cls, _, kwargs, kind = ours(case)
    y_true, y_pred = make_inputs(kind, _rng(case[0], 2), shape=(B, 4, 5))
    for sw in (np.random.default_rng(0).uniform(0, 2, (B, 4)).astype(np.float32),
               np.random.default_rng(1).uniform(0, 2, (B, 1)).astype(np.float32)):
        keras_sw = _keras_weight(sw, (B, 4), kwargs)
        want = _keras_loss(case, reduction=reduction)(_t(y_true), _t(y_pred), sample_weight=_t(keras_sw))
        got = cls(reduction=reduction, **class_kwargs(kwargs))(y_true, y_pred, sample_weight=sw)
        _assert_values(got, want, f"{case[0]} {reduction} {sw.shape}")


def test_label_shapes_keras_aligns():
    """Keras' rank alignment: (B,) labels with (B, 1) predictions, (B, 1) sparse labels."""
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, B).astype(np.float32)
    p = rng.uniform(0.05, 0.95, (B, 1)).astype(np.float32)
    for name in ("BinaryCrossentropy", "MeanSquaredError", "Hinge", "BinaryFocalCrossentropy"):
        _assert_values(getattr(L, name)()(y, p), getattr(keras.losses, name)()(_t(y), _t(p)), name)
    labels, probs = make_inputs("sparse", rng)
    _assert_values(L.SparseCategoricalCrossentropy()(labels[:, None], probs),
                   keras.losses.SparseCategoricalCrossentropy()(_t(labels[:, None]), _t(probs)), "scce (B, 1)")
    _assert_values(L.sparse_categorical_crossentropy(labels[:, None], probs),
                   keras.losses.sparse_categorical_crossentropy(_t(labels[:, None]), _t(probs)), "scce fn (B, 1)")


# --------------------------------------------------------------------------------------------
# Edge values
# --------------------------------------------------------------------------------------------
def _edge_probabilities():
    p = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.3, 0.7, 0.0], [1 / 3, 1 / 3, 1 / 3]], np.float32)
    t = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
    return t, p


EDGE = [
    ("binary_crossentropy", {}), ("binary_crossentropy", {"label_smoothing": 0.3}),
    ("binary_focal_crossentropy", {}), ("categorical_crossentropy", {}),
    ("categorical_focal_crossentropy", {}), ("kl_divergence", {}), ("poisson", {}),
    ("mean_squared_logarithmic_error", {}), ("mean_absolute_percentage_error", {}), ("cosine_similarity", {}),
]


@pytest.mark.parametrize("name,kwargs", EDGE, ids=[f"{n}-{k}" for n, k in EDGE])
def test_probabilities_zero_and_one_match_keras(name, kwargs):
    t, p = _edge_probabilities()
    want = getattr(keras.losses, name)(_t(t), _t(p), **kwargs)
    _assert_values(getattr(L, name)(t, p, **kwargs), want, name)
    _assert_gradient_matches(lambda yp: getattr(L, name)(t, yp, **kwargs),
                             lambda yp: getattr(keras.losses, name)(_t(t), yp, **kwargs), p, name)


@pytest.mark.parametrize("name,kwargs", [
    ("categorical_crossentropy", {"from_logits": True}), ("binary_crossentropy", {"from_logits": True}),
    ("binary_focal_crossentropy", {"from_logits": True}), ("categorical_focal_crossentropy", {"from_logits": True}),
    ("sparse_categorical_crossentropy", {"from_logits": True}), ("categorical_hinge", {}), ("hinge", {}),
])
def test_all_equal_logits_match_keras(name, kwargs):
    logits = np.zeros((4, 3), np.float32)
    t = np.array([1, 0, 2, 1]) if name.startswith("sparse") else _edge_probabilities()[0]
    want = getattr(keras.losses, name)(_t(t), _t(logits), **kwargs)
    _assert_values(getattr(L, name)(t, logits, **kwargs), want, name)
    if "hinge" not in name:  # the hinges sit exactly on a tie of max / maximum there
        _assert_gradient_matches(lambda yp: getattr(L, name)(t, yp, **kwargs),
                                 lambda yp: getattr(keras.losses, name)(_t(t), yp, **kwargs), logits, name)


@pytest.mark.parametrize("from_logits", [False, True])
def test_ignore_class_edge_cases_match_keras(from_logits):
    rng = np.random.default_rng(9)
    y_pred = make_inputs("sparse_logits" if from_logits else "sparse", rng)[1]
    for labels in (np.array([2, 2, 2, 2, 2, 2]), np.array([0, 2, 1, 2, 4, 3]), np.array([-1, 0, -1, 1, 1, 2])):
        ignore = -1 if labels.min() < 0 else 2
        for reduction in REDUCTIONS:
            for sw in (None, _weight("per_sample", (B,))):
                ours_ = L.SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=ignore,
                                                        reduction=reduction)
                theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=ignore,
                                                                    reduction=reduction)
                _assert_values(ours_(labels, y_pred, sample_weight=sw),
                               theirs(_t(labels), _t(y_pred), sample_weight=_t(sw)), f"{labels} {reduction}")


# --------------------------------------------------------------------------------------------
# Gradients against torch autograd
# --------------------------------------------------------------------------------------------
def _assert_gradient_matches(ours_fn, keras_fn, y_pred, what):
    with gpuconv.GradientTape() as tape:
        tape.watch(y_pred)
        value = ours_fn(y_pred)
    ours_grad = tape.gradient(value, y_pred)
    yp = torch.tensor(y_pred, requires_grad=True)
    out = keras_fn(yp)
    out.backward(torch.ones_like(out))
    theirs = yp.grad.numpy()
    assert ours_grad.dtype == np.float32
    assert np.isfinite(ours_grad).all() == np.isfinite(theirs).all(), what
    assert relative_l2_error(ours_grad, theirs) <= 1e-5, (what, ours_grad, theirs)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_class_gradient_matches_torch_autograd(case, reduction):
    cls, _, kwargs, kind = ours(case)
    y_true, y_pred = make_inputs(kind, _rng(case[0], 3))
    sw = _weight("per_sample", _losses_shape(case, y_pred, y_true))
    loss, keras_loss = cls(reduction=reduction, **class_kwargs(kwargs)), _keras_loss(case, reduction=reduction)
    _assert_gradient_matches(lambda p: loss(y_true, p, sample_weight=sw),
                             lambda p: keras_loss(_t(y_true), p, sample_weight=_t(sw)), y_pred, case[0])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_function_gradient_matches_torch_autograd(case):
    _, fn, kwargs, kind = ours(case)
    y_true, y_pred = make_inputs(kind, _rng(case[0], 4))
    _assert_gradient_matches(lambda p: fn(y_true, p, **kwargs),
                             lambda p: getattr(keras.losses, case[2])(_t(y_true), p, **kwargs), y_pred, case[0])


# --------------------------------------------------------------------------------------------
# Configs and names
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_configs_match_keras(case):
    cls, _, kwargs, _ = ours(case)
    for extra in ({}, {"reduction": "sum", "name": "custom"}, {"reduction": None}):
        ours_ = cls(**class_kwargs(kwargs), **extra)
        theirs = _keras_loss(case, **extra)
        assert ours_.get_config() == theirs.get_config()
        assert L.serialize(ours_) == keras.losses.serialize(theirs)
        assert ours_.name == theirs.name and ours_.reduction == theirs.reduction and ours_.dtype == theirs.dtype
        again = keras.losses.deserialize(L.serialize(ours_))  # our configs load in Keras, and the reverse
        assert L.deserialize(keras.losses.serialize(theirs)).get_config() == again.get_config()


def test_signatures_match_keras():
    import inspect

    for name in [c[1] for c in CASES] + ["Loss"]:
        assert inspect.signature(getattr(L, name)) == inspect.signature(getattr(keras.losses, name)), name
    for name in {c[2] for c in CASES}:
        assert inspect.signature(getattr(L, name)) == inspect.signature(getattr(keras.losses, name)), name


def test_function_serialization_matches_keras():
    for name in {c[2] for c in CASES}:
        assert L.serialize(getattr(L, name)) == keras.losses.serialize(getattr(keras.losses, name))
    from keras.src.losses import LossFunctionWrapper

    ours_, theirs = L.LossFunctionWrapper(L.huber, delta=3.0), LossFunctionWrapper(keras.losses.huber, delta=3.0)
    theirs_config = keras.losses.serialize(theirs)
    theirs_config["config"]["name"] = ours_.name  # both auto-named, from different counters
    assert L.serialize(ours_) == theirs_config


KERAS_NAMES = sorted(n for n in keras.src.losses.ALL_OBJECTS_DICT
                     if n not in ("CTC", "ctc", "Dice", "dice", "Tversky", "tversky", "Circle", "circle",
                                  "LossFunctionWrapper", "CategoricalGeneralizedCrossEntropy",
                                  "categorical_generalized_cross_entropy"))


@pytest.mark.parametrize("name", KERAS_NAMES)
def test_get_by_every_keras_name(name):
    ours_, theirs = L.get(name), keras.losses.get(name)
    if callable(theirs) and not hasattr(theirs, "get_config"):
        assert ours_.__name__ == theirs.__name__
    else:
        assert type(ours_).__name__ == type(theirs).__name__
        ours_config, theirs_config = ours_.get_config(), theirs.get_config()
        if name == "Loss":  # auto-named ('loss', 'loss_1', ...) from two libraries' own counters
            assert ours_config.pop("name").startswith("loss") and theirs_config.pop("name").startswith("loss")
        assert ours_config == theirs_config


def test_per_class_alpha_and_copies_match_keras():
    import copy
    import pickle

    y_true, y_pred = make_inputs("onehot", np.random.default_rng(11))
    alpha = [0.1, 0.2, 0.3, 0.2, 0.2]
    want = keras.losses.categorical_focal_crossentropy(_t(y_true), _t(y_pred), alpha=alpha)
    _assert_values(L.categorical_focal_crossentropy(y_true, y_pred, alpha=alpha), want, "per-class alpha")
    loss = L.CategoricalFocalCrossentropy(alpha=alpha, gamma=1.0, reduction="sum")
    theirs = keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=1.0, reduction="sum")
    for clone in (copy.deepcopy(loss), pickle.loads(pickle.dumps(loss))):
        _assert_values(clone(y_true, y_pred), theirs(_t(y_true), _t(y_pred)), "copy")
        assert clone.get_config() == theirs.get_config()

"""Parity of ``gpuconv.metrics`` with real Keras 3 (torch backend): the same metric built from
the same arguments, fed the same random batches (with and without sample weights), must give
the same result after every update, after ``reset_state`` and after updating again; configs,
default names, string names and configs crossing libraries must agree too.

Data: seeded per case; predictions on a grid of tenths where thresholds are tested, so that
scores sitting exactly on a threshold are counted as Keras counts them. ``top_k`` cases use
scores without ties (torch orders ties arbitrarily; gpuconv keeps the lower index, see
tests/test_metrics.py).
"""
import inspect
import os
import zlib

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process
keras = pytest.importorskip("keras", reason="real-Keras parity needs keras>=3.15 with the torch backend "
                            "(pip install .[parity])", exc_type=ImportError)

import gpuconv  # noqa: E402
from gpuconv import metrics as gmetrics  # noqa: E402
from gpuconv.metrics import loss_metrics  # noqa: E402

pytestmark = [
    pytest.mark.parity,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

RTOL, ATOL = 1e-5, 1e-6  # float32 rounding of sums whose order differs between the libraries
BATCHES = (7, 16, 9)
NUM_CLASSES = 5


@pytest.fixture(autouse=True)
def _same_name_counters():
    """Both libraries number default names per process (auc, auc_1, ...); start both at zero."""
    keras.backend.clear_session(free_memory=False)
    gpuconv.clear_session()


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------
def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _batch(kind, rng, n):
    """(y_true, y_pred) of one batch of ``kind``, float32 (integer labels int64)."""
    f32 = np.float32
    if kind == "exact":
        return rng.integers(0, 3, (n, 1)).astype(f32), rng.integers(0, 3, (n, 1)).astype(f32)
    if kind in ("binary", "binary_flat", "binary_grid", "binary_logits"):
        shape = (n,) if kind == "binary_flat" else (n, 1)
        y_true = rng.integers(0, 2, shape).astype(f32)
        if kind == "binary_grid":  # scores exactly on the thresholds 0, 0.1, ..., 1
            return y_true, (rng.integers(0, 11, shape) / 10).astype(f32)
        if kind == "binary_logits":
            return y_true, rng.normal(0, 2, shape).astype(f32)
        return y_true, rng.uniform(0, 1, shape).astype(f32)
    if kind == "binary_mixed":  # integer labels (n,), scores (n, 1): Keras aligns the ranks
        return rng.integers(0, 2, n), rng.uniform(0, 1, (n, 1)).astype(f32)
    if kind in ("multilabel", "multilabel_grid"):
        y_true = rng.integers(0, 2, (n, 4)).astype(f32)
        if kind == "multilabel_grid":
            return y_true, (rng.integers(0, 11, (n, 4)) / 10).astype(f32)
        return y_true, rng.permuted(np.tile(np.linspace(0.05, 0.95, 4), (n, 1)), axis=1).astype(f32) \
            + rng.uniform(0, 0.01, (n, 4)).astype(f32)
    if kind == "single_class":  # AUC with no positive label at all
        return np.zeros((n, 1), f32), rng.uniform(0, 1, (n, 1)).astype(f32)
    labels = rng.integers(0, NUM_CLASSES, n)
    scores = rng.normal(0, 2, (n, NUM_CLASSES)).astype(f32)
    probs = _softmax(scores).astype(f32)
    if kind in ("categorical", "categorical_logits"):
        return np.eye(NUM_CLASSES, dtype=f32)[labels], scores if kind == "categorical_logits" else probs
    if kind in ("sparse", "sparse_logits"):
        return labels, scores if kind == "sparse_logits" else probs
    if kind == "sparse_col":
        return labels[:, None], probs
    if kind == "sorted_ids":
        return labels, np.argsort(-scores, axis=-1).astype(np.int32)
    if kind == "regression":
        return rng.normal(0, 1, (n, 3)).astype(f32), rng.normal(0, 1, (n, 3)).astype(f32)
    if kind == "regression3d":
        return rng.normal(0, 1, (n, 3, 2)).astype(f32), rng.normal(0, 1, (n, 3, 2)).astype(f32)
    if kind == "positive":
        return rng.uniform(0.1, 2, (n, 3)).astype(f32), rng.uniform(0.1, 2, (n, 3)).astype(f32)
    if kind == "probabilities":
        return probs, _softmax(rng.normal(0, 1, (n, NUM_CLASSES))).astype(f32)
    if kind == "hinge":
        return rng.choice([-1.0, 1.0], (n, 3)).astype(f32), rng.normal(0, 1, (n, 3)).astype(f32)
    if kind == "values":  # Mean / Sum take (values, sample_weight)
        return None, rng.normal(0, 1, (n, 3)).astype(f32)
    raise AssertionError(kind)


def _weights(rng, n):
    weights = rng.uniform(0, 2, n).astype(np.float32)
    weights[rng.uniform(size=n) < 0.2] = 0.0
    return weights


# ------------------------------------------------------------------------------------------
# Cases: (class name, constructor kwargs, data kind)
# ------------------------------------------------------------------------------------------
CASES = [
    ("Mean", {}, "values"),
    ("Sum", {}, "values"),
    ("Mean", {"dtype": "float64", "name": "m64"}, "values"),
    ("Accuracy", {"dtype": "float16"}, "exact"),
    ("Accuracy", {}, "exact"),
    ("BinaryAccuracy", {}, "binary"),
    ("BinaryAccuracy", {"threshold": 0.3}, "binary_grid"),
    ("BinaryAccuracy", {"threshold": 0.5}, "binary_grid"),
    ("BinaryAccuracy", {}, "binary_flat"),
    ("BinaryAccuracy", {}, "binary_mixed"),
    ("Precision", {}, "binary_mixed"),
    ("AUC", {}, "binary_mixed"),
    ("CategoricalAccuracy", {}, "categorical"),
    ("SparseCategoricalAccuracy", {}, "sparse"),
    ("SparseCategoricalAccuracy", {}, "sparse_col"),
    ("TopKCategoricalAccuracy", {}, "categorical"),
    ("TopKCategoricalAccuracy", {"k": 1}, "categorical"),
    ("TopKCategoricalAccuracy", {"k": 2}, "categorical"),
    ("SparseTopKCategoricalAccuracy", {}, "sparse"),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, "sparse_col"),
    ("SparseTopKCategoricalAccuracy", {"k": 3, "from_sorted_ids": True}, "sorted_ids"),
    ("TruePositives", {}, "binary"),
    ("FalsePositives", {"thresholds": [0.2, 0.5, 0.8]}, "binary_grid"),
    ("TrueNegatives", {"thresholds": [0.0, 0.5, 1.0]}, "binary_grid"),
    ("FalseNegatives", {"thresholds": 0.3}, "binary_grid"),
    ("Precision", {}, "binary"),
    ("Precision", {"thresholds": [0.2, 0.5, 0.7]}, "binary_grid"),
    ("Precision", {"thresholds": [0.0, 0.25, 0.5, 0.75, 1.0]}, "binary_grid"),
    ("Precision", {"top_k": 2}, "multilabel"),
    ("Precision", {"class_id": 1}, "multilabel"),
    ("Precision", {"top_k": 2, "class_id": 3, "thresholds": [0.1, 0.6]}, "multilabel"),
    ("Recall", {}, "binary_flat"),
    ("Recall", {"thresholds": [0.1, 0.5, 0.9]}, "binary_grid"),
    ("Recall", {"top_k": 1}, "multilabel"),
    ("Recall", {"class_id": 2, "thresholds": [0.0, 0.5, 1.0]}, "multilabel_grid"),
    ("AUC", {}, "binary"),
    ("AUC", {"num_thresholds": 11}, "binary_grid"),
    ("AUC", {"curve": "PR"}, "binary"),
    ("AUC", {"curve": "PR", "summation_method": "minoring"}, "binary"),
    ("AUC", {"curve": "PR", "summation_method": "majoring"}, "binary"),
    ("AUC", {"summation_method": "minoring"}, "binary"),
    ("AUC", {"summation_method": "majoring"}, "binary_grid"),
    ("AUC", {"curve": "PRGAIN"}, "binary"),
    ("AUC", {"thresholds": [0.3, 0.1, 0.5]}, "binary_grid"),
    ("AUC", {"thresholds": [0.25, 0.5, 0.75]}, "binary_grid"),
    ("AUC", {"num_thresholds": 37, "curve": "pr"}, "multilabel"),
    ("AUC", {"multi_label": True}, "multilabel"),
    ("AUC", {"multi_label": True, "num_labels": 4, "curve": "PR"}, "multilabel_grid"),
    ("AUC", {"multi_label": True, "label_weights": [1.0, 0.5, 2.0, 0.0]}, "multilabel"),
    ("AUC", {"label_weights": [1.0, 0.5, 2.0, 0.0]}, "multilabel"),
    ("AUC", {"from_logits": True}, "binary_logits"),
    ("AUC", {}, "single_class"),
    ("AUC", {"curve": "PR"}, "single_class"),
    ("MeanSquaredError", {}, "regression"),
    ("RootMeanSquaredError", {}, "regression"),
    ("MeanAbsoluteError", {}, "regression"),
    ("MeanAbsolutePercentageError", {}, "positive"),
    ("MeanSquaredLogarithmicError", {}, "positive"),
    ("LogCoshError", {}, "regression"),
    ("CosineSimilarity", {}, "regression"),
    ("CosineSimilarity", {"axis": 1}, "regression3d"),
    ("KLDivergence", {}, "probabilities"),
    ("Poisson", {}, "positive"),
    ("Hinge", {}, "hinge"),
    ("SquaredHinge", {}, "hinge"),
    ("CategoricalHinge", {}, "categorical"),
    ("BinaryCrossentropy", {}, "binary"),
    ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "binary_logits"),
    ("CategoricalCrossentropy", {}, "categorical"),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.2}, "categorical_logits"),
    ("SparseCategoricalCrossentropy", {}, "sparse"),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "sparse_logits"),
    ("SparseCategoricalCrossentropy", {"from_logits": True, "ignore_class": 0}, "sparse_logits"),
]
_IDS = [f"{name}-{i:02d}-{kind}" for i, (name, _, kind) in enumerate(CASES)]


def _needs_losses(name):
    """Skip a loss metric while gpuconv.losses (written in parallel) lacks its function."""
    metric = getattr(gmetrics, name)
    loss_name = getattr(metric, "_loss_name", None)
    if loss_name is None:
        return
    try:
        loss_metrics.loss_function(loss_name)
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"gpuconv.losses.{loss_name} is not available yet: {exc}")


def _update(metric, y_true, y_pred, sample_weight):
    if y_true is None:
        return metric.update_state(y_pred, sample_weight=sample_weight)
    return metric.update_state(y_true, y_pred, sample_weight=sample_weight)


def _k_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _assert_same(actual, expected, what):
    actual = np.asarray(gpuconv.to_numpy(actual))
    np.testing.assert_allclose(actual, _k_np(expected), rtol=RTOL, atol=ATOL, err_msg=what)
    assert actual.shape == _k_np(expected).shape, what


def _pair(name, kwargs):
    return getattr(gmetrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name, kwargs, kind", CASES, ids=_IDS)
def test_results_match_keras(name, kwargs, kind, weighted):
    _needs_losses(name)
    ours, theirs = _pair(name, kwargs)
    rng = np.random.default_rng((zlib.crc32(f"{name}{kwargs}{kind}".encode()), int(weighted)))
    for step, n in enumerate(BATCHES + ("reset",) + BATCHES[:1]):
        if n == "reset":
            ours.reset_state()
            theirs.reset_state()
            _assert_same(ours.result(), theirs.result(), "after reset_state")
            continue
        y_true, y_pred = _batch(kind, rng, n)
        weights = _weights(rng, n) if weighted else None
        _update(ours, y_true, y_pred, weights)
        _update(theirs, y_true, y_pred, weights)
        _assert_same(ours.result(), theirs.result(), f"after update {step}")
    assert isinstance(ours.result(), np.ndarray)
    # The metric's dtype (Keras' torch backend gives float32 for a float64 Mean: its
    # divide_no_nan drops to floatx; gpuconv keeps float64).
    assert str(ours.result().dtype) == ours.dtype
    if ours.dtype != "float64":
        assert ours.dtype == keras.backend.standardize_dtype(theirs.result().dtype)


def _plain(config):
    """A Keras config as plain data (its label_weights are a tensor)."""
    return {key: (_k_np(value).tolist() if hasattr(value, "shape") else value) for key, value in config.items()}


@pytest.mark.parametrize("name, kwargs, kind", CASES, ids=_IDS)
def test_configs_match_keras(name, kwargs, kind):
    ours, theirs = _pair(name, kwargs)
    assert ours.name == theirs.name
    assert ours.get_config() == _plain(theirs.get_config())
    # Configs cross libraries: each rebuilds the other's metric with the same config.
    assert type(ours).from_config(_plain(theirs.get_config())).get_config() == ours.get_config()
    assert _plain(type(theirs).from_config(ours.get_config()).get_config()) == ours.get_config()


@pytest.mark.parametrize("name, kwargs, kind", CASES, ids=_IDS)
def test_variables_match_keras(name, kwargs, kind):
    """State variables: same names, paths, shapes and dtypes, in the same order (AUC with
    multi_label builds them at the first update)."""
    _needs_losses(name)
    ours, theirs = _pair(name, kwargs)
    y_true, y_pred = _batch(kind, np.random.default_rng(0), 4)
    _update(ours, y_true, y_pred, None)
    _update(theirs, y_true, y_pred, None)
    assert [(v.name, v.path, v.shape, v.dtype) for v in ours.variables] == \
        [(v.name, v.path, tuple(v.shape), v.dtype) for v in theirs.variables]


def _keras_names_we_have():
    ours = set(gmetrics.ALL_OBJECTS_DICT)
    return sorted(name for name, cls in keras.src.metrics.ALL_OBJECTS_DICT.items()
                  if name in ours or cls.__name__ in {c.__name__ for c in gmetrics.ALL_OBJECTS_DICT.values()})


@pytest.mark.parametrize("identifier", _keras_names_we_have())
def test_get_by_every_keras_name(identifier):
    if identifier in ("MeanMetricWrapper", "mean_metric_wrapper"):
        for get in (gmetrics.get, keras.metrics.get):
            with pytest.raises(TypeError, match="fn"):
                get(identifier)  # needs `fn`: neither library can build it bare
        return
    ours, theirs = gmetrics.get(identifier), keras.metrics.get(identifier)
    assert type(ours).__name__ == type(theirs).__name__
    assert ours.get_config() == _plain(theirs.get_config())


def test_every_keras_name_we_lack_is_a_keras_extra():
    """The Keras names gpuconv does not provide: the metrics outside this issue's list."""
    missing = {cls.__name__ for name, cls in keras.src.metrics.ALL_OBJECTS_DICT.items()
               if name not in gmetrics.ALL_OBJECTS_DICT}
    assert missing == {"R2Score", "ConcordanceCorrelation", "PearsonCorrelation", "F1Score", "FBetaScore", "IoU",
                       "BinaryIoU", "MeanIoU", "OneHotIoU", "OneHotMeanIoU", "PrecisionAtRecall", "RecallAtPrecision",
                       "SensitivityAtSpecificity", "SpecificityAtSensitivity"}


@pytest.mark.parametrize("name, kwargs, kind", [case for case in CASES if case[0] not in ("Mean", "Sum")],
                         ids=[i for i, case in zip(_IDS, CASES) if case[0] not in ("Mean", "Sum")])
def test_serialized_dicts_match_keras(name, kwargs, kind):
    ours, theirs = _pair(name, kwargs)
    mine, keras_dict = gmetrics.serialize(ours), keras.metrics.serialize(theirs)
    keras_dict["config"] = _plain(keras_dict["config"])
    if isinstance(keras_dict["config"].get("label_weights"), dict):  # Keras' "__tensor__" wrapper
        keras_dict["config"]["label_weights"] = keras_dict["config"]["label_weights"]["config"]["value"]
    assert mine == keras_dict
    assert gmetrics.deserialize(keras.metrics.serialize(theirs)).get_config() == ours.get_config()


@pytest.mark.parametrize("fn_name", sorted(gmetrics.registry.METRIC_FUNCTIONS))
def test_metric_functions_match_keras(fn_name):
    kind = {"accuracy": "exact", "binary_accuracy": "binary_grid", "categorical_accuracy": "categorical",
            "top_k_categorical_accuracy": "categorical"}.get(fn_name, "sparse_col")
    y_true, y_pred = _batch(kind, np.random.default_rng(3), 12)
    keras_fn = getattr(keras.src.metrics.accuracy_metrics, fn_name)  # keras.metrics lacks `accuracy`
    _assert_same(getattr(gmetrics, fn_name)(y_true, y_pred), keras_fn(y_true, y_pred), fn_name)
    # A MeanMetricWrapper around the function: same config as Keras' (module 'builtins').
    wrapped = gmetrics.MeanMetricWrapper(getattr(gmetrics, fn_name))
    keras_wrapped = keras.metrics.MeanMetricWrapper(keras_fn)
    assert wrapped.get_config() == keras_wrapped.get_config()
    rebuilt = gmetrics.MeanMetricWrapper.from_config(keras_wrapped.get_config())
    assert rebuilt._fn is getattr(gmetrics, fn_name)


def test_top_k_ties_follow_keras_in_top_k():
    """A score tied with the k-th largest counts as inside the top k, in both libraries."""
    y_true = np.array([0, 1, 2, 3])
    y_pred = np.array([[0.3, 0.3, 0.3, 0.1], [0.5, 0.2, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25], [0.4, 0.2, 0.2, 0.2]],
                      np.float32)
    for k in (1, 2, 3):
        ours = gmetrics.sparse_top_k_categorical_accuracy(y_true, y_pred, k=k)
        theirs = keras.metrics.sparse_top_k_categorical_accuracy(y_true, y_pred, k=k)
        _assert_same(ours, theirs, f"k={k}")


def test_empty_weight_sums_give_zero_like_keras():
    for name in ("Mean", "Accuracy", "Precision", "Recall", "AUC", "BinaryAccuracy"):
        ours, theirs = _pair(name, {})
        y_true, y_pred = np.array([[1.0], [0.0]], np.float32), np.array([[0.7], [0.2]], np.float32)
        weights = np.zeros(2, np.float32)
        if name == "Mean":
            ours.update_state(y_pred, sample_weight=weights)
            theirs.update_state(y_pred, sample_weight=weights)
        else:
            ours.update_state(y_true, y_pred, sample_weight=weights)
            theirs.update_state(y_true, y_pred, sample_weight=weights)
        _assert_same(ours.result(), theirs.result(), name)
        assert float(ours.result()) == 0.0


def test_shape_mismatches_keras_refuses_are_refused():
    """Keras' binary crossentropy wants equal shapes ((n,) labels against (n, 1) scores fail)."""
    _needs_losses("BinaryCrossentropy")
    y_true, y_pred = np.array([0, 1, 1]), np.array([[0.2], [0.6], [0.9]], np.float32)
    for metric in _pair("BinaryCrossentropy", {}):
        with pytest.raises(ValueError, match="same shape"):
            metric.update_state(y_true, y_pred)


@pytest.mark.parametrize("name", sorted({cls.__name__ for cls in gmetrics.ALL_OBJECTS_DICT.values()}))
def test_constructor_signatures_match_keras(name):
    def parameters(cls):
        return [(p.name, p.default, p.kind) for p in inspect.signature(cls.__init__).parameters.values()]

    assert parameters(getattr(gmetrics, name)) == parameters(getattr(keras.metrics, name))


@pytest.mark.parametrize("loss_name", ["mean_squared_error", "binary_crossentropy", "sparse_categorical_crossentropy"])
def test_wrapped_keras_loss_config_rebuilds_with_gpuconv_losses(loss_name):
    """A Keras MeanMetricWrapper around one of its losses names the loss; gpuconv rebuilds it
    around gpuconv.losses' function of that name, with the same numbers."""
    _needs_losses({"mean_squared_error": "MeanSquaredError", "binary_crossentropy": "BinaryCrossentropy",
                   "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy"}[loss_name])
    theirs = keras.metrics.MeanMetricWrapper(getattr(keras.losses, loss_name), name="w")
    ours = gmetrics.MeanMetricWrapper.from_config(theirs.get_config())
    assert ours.get_config() == theirs.get_config()
    kind = {"mean_squared_error": "regression", "binary_crossentropy": "binary"}.get(loss_name, "sparse")
    rng = np.random.default_rng(5)
    for n in BATCHES:
        y_true, y_pred = _batch(kind, rng, n)
        ours.update_state(y_true, y_pred)
        theirs.update_state(y_true, y_pred)
        _assert_same(ours.result(), theirs.result(), loss_name)


@pytest.mark.parametrize("name", sorted({cls.__name__ for cls in gmetrics.ALL_OBJECTS_DICT.values()}
                                        - {"Metric", "MeanMetricWrapper"}))
def test_optimization_direction_matches_keras(name):
    """``_direction`` ('up', 'down' or absent) decides callbacks' mode='auto', as in Keras."""
    ours, theirs = _pair(name, {})
    assert getattr(ours, "_direction", "absent") == getattr(theirs, "_direction", "absent")

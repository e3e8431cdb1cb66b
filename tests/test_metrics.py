"""``gpuconv.metrics`` on its own: hand-computed results for the edge cases (empty weight sums,
top-k ties, scores exactly on a threshold, class_id, AUC with one class), the state contract
(0-d float32 arrays, reset, ``__call__``, the array module the state lives in, nothing on a
gradient tape), name resolution and config safety, and the errors for bad arguments.

Parity with real Keras is tests/test_metrics_keras_parity.py.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import metrics
from gpuconv.metrics import loss_metrics
from conftest import CUDA_MARKS, gpu_xp


@pytest.fixture(autouse=True)
def _fresh_names():
    gpuconv.clear_session()


def _value(x):
    return float(gpuconv.to_numpy(x))


# ------------------------------------------------------------------------------------------
# State contract
# ------------------------------------------------------------------------------------------
def test_result_is_a_0d_float32_array_and_accumulates_batch_totals():
    m = metrics.Mean()
    first = m([1.0, 2.0, 3.0])
    assert isinstance(first, np.ndarray) and first.shape == () and first.dtype == np.float32
    assert _value(first) == 2.0
    m.update_state([[10.0, 20.0]], sample_weight=[0.5])  # per-sample mean 15, weight 0.5
    assert _value(m.result()) == pytest.approx((6.0 + 7.5) / 3.5)
    assert _value(first) == 2.0  # an earlier result keeps its value
    assert [v.path for v in m.variables] == ["mean/total", "mean/count"]
    m.reset_state()
    assert _value(m.result()) == 0.0 and m.variables[1].numpy() == 0.0


def test_empty_weight_sum_gives_zero():
    for m in (metrics.Mean(), metrics.SparseCategoricalAccuracy(), metrics.Precision(), metrics.Recall()):
        y_true, y_pred = (([1.0, 2.0],) if isinstance(m, metrics.Mean) and not isinstance(m, metrics.MeanMetricWrapper)
                          else ([1, 0], [[0.2, 0.8], [0.6, 0.4]]) if isinstance(m, metrics.MeanMetricWrapper)
                          else ([1, 0], [0.9, 0.1]), None)
        args = y_true if y_pred is None else (y_true, y_pred)
        m.update_state(*args, sample_weight=[0.0, 0.0])
        assert _value(m.result()) == 0.0, m


def test_sum_and_weighted_sum():
    s = metrics.Sum()
    s.update_state([[1.0, 2.0], [3.0, 4.0]])
    s.update_state([1.0, 1.0], sample_weight=[2.0, 0.0])
    assert _value(s.result()) == 12.0


def test_sample_weight_per_entry_is_reduced_per_sample():
    m = metrics.Mean()
    m.update_state([[1.0, 3.0], [5.0, 7.0]], sample_weight=[[1.0, 0.0], [1.0, 1.0]])
    # values * weights -> [[1, 0], [5, 7]], mean per sample [0.5, 6]; weights mean [0.5, 1]
    assert _value(m.result()) == pytest.approx(6.5 / 1.5)


def test_metrics_are_not_recorded_on_a_tape():
    x = np.array([[0.2, 0.8], [0.7, 0.3]], np.float32)
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = gpuconv.ops.multiply(x, 2.0)
        result = metrics.CategoricalAccuracy()([[0, 1], [1, 0]], y)
    assert _value(result) == 1.0
    with pytest.raises(ValueError, match="not produced by any operation recorded on this tape"):
        tape.gradient(result, x)


def test_nested_metric_state_is_part_of_the_outer_metric():
    class Pair(metrics.Metric):
        def __init__(self):
            super().__init__(name="pair")
            self.inner = metrics.Mean(name="inner")
            self.extra = self.add_variable(shape=(2,), name="extra")

    assert [v.path for v in Pair().variables] == ["pair/extra", "inner/total", "inner/count"]


def test_forgetting_super_init_is_a_clear_error():
    class Broken(metrics.Metric):
        def __init__(self):
            pass

    with pytest.raises(RuntimeError, match="super"):
        Broken()([1], [1])


# ------------------------------------------------------------------------------------------
# Accuracy edge cases
# ------------------------------------------------------------------------------------------
def test_threshold_exactly_at_the_score_is_negative():
    # y_pred > threshold is positive; 0.5 is not above 0.5
    got = metrics.binary_accuracy(np.array([[1.0], [0.0], [1.0]]), np.array([[0.5], [0.5], [0.51]], np.float32))
    assert gpuconv.to_numpy(got).tolist() == [[0.0], [1.0], [1.0]]  # Keras keeps the (n, 1) shape
    p = metrics.Precision(thresholds=[0.0, 0.5, 1.0])
    p.update_state([1, 0, 1], [0.0, 0.5, 1.0])
    # t=0: positives {0.5, 1.0} -> 1 tp / 2; t=0.5: {1.0} -> 1/1; t=1: none -> 0
    assert gpuconv.to_numpy(p.result()).tolist() == [0.5, 1.0, 0.0]


def test_top_k_ties_count_as_inside():
    y_pred = np.array([[0.4, 0.3, 0.3], [0.4, 0.3, 0.3], [0.2, 0.2, 0.6]], np.float32)
    got = metrics.sparse_top_k_categorical_accuracy([2, 0, 1], y_pred, k=2)
    assert gpuconv.to_numpy(got).tolist() == [1.0, 1.0, 1.0]  # 0.3 ties the 2nd largest; 0.2 ties too
    got = metrics.sparse_top_k_categorical_accuracy([2, 0, 1], y_pred, k=1)
    assert gpuconv.to_numpy(got).tolist() == [0.0, 1.0, 0.0]
    # k at least the number of classes: every label is inside
    assert gpuconv.to_numpy(metrics.sparse_top_k_categorical_accuracy([2, 0, 1], y_pred, k=5)).tolist() == [1.0] * 3


def test_argmax_ties_take_the_first_class():
    got = metrics.sparse_categorical_accuracy([0, 1], np.array([[0.5, 0.5], [0.5, 0.5]], np.float32))
    assert gpuconv.to_numpy(got).tolist() == [1.0, 0.0]


def test_precision_top_k_ties_keep_the_lower_index():
    p = metrics.Precision(top_k=1)
    p.update_state([[0, 1, 0]], [[0.5, 0.5, 0.1]])  # class 0 kept (lower index): a false positive
    assert _value(p.result()) == 0.0
    p = metrics.Precision(top_k=1)
    p.update_state([[1, 0, 0]], [[0.5, 0.5, 0.1]])
    assert _value(p.result()) == 1.0


def test_class_id_looks_at_one_column():
    y_true = [[1, 0], [0, 1], [0, 1]]
    y_pred = [[0.9, 0.8], [0.2, 0.7], [0.6, 0.4]]
    r = metrics.Recall(class_id=1)
    r.update_state(y_true, y_pred)  # column 1: labels [0, 1, 1], predicted [1, 1, 0]
    assert _value(r.result()) == 0.5
    p = metrics.Precision(class_id=0)
    p.update_state(y_true, y_pred)  # column 0: labels [1, 0, 0], predicted [1, 0, 1]
    assert _value(p.result()) == 0.5


def test_confusion_counts_by_hand():
    y_true, y_pred = [1, 1, 0, 0], [0.9, 0.2, 0.7, 0.1]
    expected = {"TruePositives": 1, "FalsePositives": 1, "TrueNegatives": 1, "FalseNegatives": 1}
    for name, count in expected.items():
        m = getattr(metrics, name)()
        m.update_state(y_true, y_pred, sample_weight=[2.0, 1.0, 1.0, 1.0])
        assert _value(m.result()) == (2.0 if name == "TruePositives" else count)


# ------------------------------------------------------------------------------------------
# AUC
# ------------------------------------------------------------------------------------------
def test_auc_perfect_and_reversed_ranking():
    perfect = metrics.AUC()
    perfect.update_state([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert _value(perfect.result()) == pytest.approx(1.0, abs=1e-6)
    reversed_ = metrics.AUC()
    reversed_.update_state([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9])
    assert _value(reversed_.result()) == pytest.approx(0.0, abs=1e-6)


def test_auc_with_a_single_class_is_zero_not_nan():
    for curve in ("ROC", "PR", "PRGAIN"):
        m = metrics.AUC(curve=curve)
        m.update_state([0, 0, 0], [0.1, 0.5, 0.9])
        assert _value(m.result()) == 0.0, curve


def test_auc_multi_label_builds_its_state_from_the_first_batch():
    m = metrics.AUC(multi_label=True)
    assert m.variables == []
    m.update_state([[0, 1], [1, 0]], [[0.1, 0.9], [0.8, 0.3]])
    assert [v.shape for v in m.variables] == [(200, 2)] * 4
    assert _value(m.result()) == pytest.approx(1.0, abs=1e-6)
    m.reset_state()
    assert m.variables[0].numpy().sum() == 0.0


# ------------------------------------------------------------------------------------------
# Device state (cuda-emulator or a real GPU)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs, y_true, y_pred", [
    ("Mean", {}, None, [[1.0, 2.0], [3.0, 5.0]]),
    ("SparseCategoricalAccuracy", {}, [1, 0], [[0.2, 0.8], [0.3, 0.7]]),
    ("TopKCategoricalAccuracy", {"k": 1}, [[0, 1], [1, 0]], [[0.2, 0.8], [0.3, 0.7]]),
    ("Precision", {"thresholds": [0.25, 0.5]}, [1, 0, 1], [0.3, 0.6, 0.9]),
    ("AUC", {}, [0, 1, 1, 0], [0.1, 0.6, 0.9, 0.7]),
    ("AUC", {"multi_label": True, "curve": "PR"}, [[0, 1], [1, 1]], [[0.1, 0.6], [0.9, 0.7]]),
    ("Recall", {"top_k": 1}, [[0, 1, 1], [1, 0, 0]], [[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]),
    ("MeanSquaredError", {}, [[0.0, 1.0], [2.0, 2.0]], [[0.5, 1.0], [1.0, 4.0]]),
    ("SparseCategoricalCrossentropy", {"ignore_class": 0}, [1, 0], [[0.2, 0.8], [0.3, 0.7]]),
])
@pytest.mark.parametrize("gpu", [pytest.param(True, marks=CUDA_MARKS)], ids=["device"])
def test_state_stays_on_the_device(name, kwargs, y_true, y_pred, gpu):
    xp = gpu_xp()
    if getattr(getattr(metrics, name), "_loss_name", None):
        try:
            loss_metrics.loss_function(getattr(metrics, name)._loss_name)
        except (ImportError, AttributeError) as exc:
            pytest.skip(f"gpuconv.losses is not available yet: {exc}")
    host, device = getattr(metrics, name)(**kwargs), getattr(metrics, name)(**kwargs)
    weights = np.array([1.0, 0.5] + [2.0] * (len(y_pred) - 2), np.float32)
    for metric, move in ((host, np.asarray), (device, xp.asarray)):
        pred = move(np.asarray(y_pred, np.float32))
        args = (pred,) if y_true is None else (move(np.asarray(y_true)), pred)
        metric.update_state(*args, sample_weight=move(weights))
        metric.update_state(*args)
    result = device.result()
    assert gpuconv.arrays.array_module(result) is xp
    assert all(gpuconv.arrays.array_module(v.value) is xp for v in device.variables)
    np.testing.assert_allclose(gpuconv.to_numpy(result), host.result(), rtol=1e-6)
    device.reset_state()
    device.variables[0].assign(0.0)  # a Python number does not pull the state to the host
    assert all(gpuconv.arrays.array_module(v.value) is xp for v in device.variables)
    np.testing.assert_array_equal(gpuconv.to_numpy(device.result()), np.zeros_like(host.result()))


# ------------------------------------------------------------------------------------------
# Names and configs
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("identifier, cls", [
    ("accuracy", "Accuracy"), ("binary_accuracy", "BinaryAccuracy"), ("categorical_accuracy", "CategoricalAccuracy"),
    ("sparse_categorical_accuracy", "SparseCategoricalAccuracy"), ("top_k_categorical_accuracy",
                                                                   "TopKCategoricalAccuracy"),
    ("sparse_top_k_categorical_accuracy", "SparseTopKCategoricalAccuracy"), ("auc", "AUC"), ("AUC", "AUC"),
    ("precision", "Precision"), ("recall", "Recall"), ("mse", "MeanSquaredError"), ("MAE", "MeanAbsoluteError"),
    ("mape", "MeanAbsolutePercentageError"), ("msle", "MeanSquaredLogarithmicError"), ("bce", "BinaryCrossentropy"),
    ("categorical_crossentropy", "CategoricalCrossentropy"), ("kl_divergence", "KLDivergence"),
    ("log_cosh_error", "LogCoshError"), ("true_positives", "TruePositives"), ("mean", "Mean"), ("sum", "Sum"),
])
def test_get_by_name(identifier, cls):
    assert type(metrics.get(identifier)).__name__ == cls


def test_get_other_identifiers():
    assert metrics.get(None) is None
    m = metrics.AUC()
    assert metrics.get(m) is m
    assert isinstance(metrics.get(metrics.Recall), metrics.Recall)
    assert metrics.get(metrics.binary_accuracy) is metrics.binary_accuracy
    got = metrics.get({"class_name": "BinaryAccuracy", "config": {"threshold": 0.2, "name": "b"}})
    assert (got.threshold, got.name) == (0.2, "b")
    fn = {"module": "builtins", "class_name": "function", "config": "categorical_accuracy", "registered_name": "function"}
    assert metrics.get(fn) is metrics.categorical_accuracy


@pytest.mark.parametrize("identifier", ["acc", "no_such_metric", 3, {"class_name": "Nope", "config": {}},
                                        {"module": "os", "class_name": "function", "config": "system"},
                                        {"module": "evil.module", "class_name": "AUC", "config": {}}])
def test_unknown_identifiers_are_refused(identifier):
    with pytest.raises(ValueError, match="Could not interpret metric identifier"):
        metrics.get(identifier)


def test_custom_objects_resolve_only_for_the_caller():
    class MyMetric(metrics.Mean):
        pass

    config = {"module": "user.code", "class_name": "MyMetric", "config": {"name": "mine"}, "registered_name": None}
    with pytest.raises(ValueError):
        metrics.deserialize(config)
    got = metrics.deserialize(config, custom_objects={"MyMetric": MyMetric})
    assert isinstance(got, MyMetric) and got.name == "mine"


def test_wrapper_config_round_trip():
    m = metrics.MeanMetricWrapper(metrics.binary_accuracy, name="ba", threshold=0.25)
    config = m.get_config()
    assert config == {"name": "ba", "dtype": "float32", "threshold": 0.25,
                      "fn": {"module": "builtins", "class_name": "function", "config": "binary_accuracy",
                             "registered_name": "function"}}
    rebuilt = metrics.MeanMetricWrapper.from_config(config)
    rebuilt.update_state([[1.0]], [[0.3]])
    assert _value(rebuilt.result()) == 1.0


def test_auc_label_weights_config_accepts_keras_tensor_dict():
    m = metrics.AUC.from_config({"label_weights": {"class_name": "__tensor__",
                                                   "config": {"value": [1.0, 2.0], "dtype": "float32"}}})
    assert m.get_config()["label_weights"] == [1.0, 2.0]


def test_loss_metric_config_does_not_need_the_losses_module():
    m = metrics.SparseCategoricalCrossentropy(from_logits=True, ignore_class=3)
    assert m.get_config() == {"name": "sparse_categorical_crossentropy", "dtype": "float32", "from_logits": True,
                              "ignore_class": 3, "axis": -1}
    assert metrics.LogCoshError().name == "logcosh"


def test_loss_metric_uses_gpuconv_losses():
    try:
        loss = loss_metrics.loss_function("mean_squared_error")
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"gpuconv.losses.mean_squared_error is not available yet: {exc}")
    y_true, y_pred = np.array([[1.0, 2.0]], np.float32), np.array([[2.0, 4.0]], np.float32)
    assert metrics.mean_squared_error is loss
    assert _value(metrics.MeanSquaredError()(y_true, y_pred)) == 2.5
    assert _value(metrics.RootMeanSquaredError()(y_true, y_pred)) == pytest.approx(2.5 ** 0.5)


def test_cosine_similarity_uses_the_metric_sign():
    got = loss_metrics.cosine_similarity(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[2.0, 0.0], [0.0, -1.0]]))
    assert gpuconv.to_numpy(got).tolist() == [1.0, -1.0]
    assert _value(loss_metrics.cosine_similarity(np.zeros((1, 2)), np.ones((1, 2)))[0]) == 0.0


def test_default_names_are_numbered_like_keras():
    assert [metrics.AUC().name for _ in range(3)] == ["auc", "auc_1", "auc_2"]
    assert [metrics.Mean().name for _ in range(2)] == ["mean", "mean"]  # an explicit default is not numbered


# ------------------------------------------------------------------------------------------
# Bad arguments
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("build, error, pattern", [
    (lambda: metrics.Mean(dtype="int32"), ValueError, "dtype"),
    (lambda: metrics.Mean(dtype="nonsense"), ValueError, "dtype='nonsense'"),
    (lambda: metrics.Mean(name=3), TypeError, "name=3"),
    (lambda: metrics.MeanMetricWrapper("mse"), TypeError, "fn='mse'"),
    (lambda: metrics.TopKCategoricalAccuracy(k=0), ValueError, "k=0"),
    (lambda: metrics.SparseTopKCategoricalAccuracy(k=2.5), ValueError, "k=2.5"),
    (lambda: metrics.BinaryAccuracy(threshold="high"), ValueError, "threshold='high'"),
    (lambda: metrics.Precision(thresholds=[0.5, 1.5]), ValueError, r"Threshold values must be in \[0, 1\]"),
    (lambda: metrics.Recall(thresholds=["a"]), ValueError, "Threshold values"),
    (lambda: metrics.Recall(top_k=0), ValueError, "top_k=0"),
    (lambda: metrics.Precision(class_id="1"), ValueError, "class_id='1'"),
    (lambda: metrics.AUC(num_thresholds=1), ValueError, "num_thresholds=1"),
    (lambda: metrics.AUC(curve="XY"), ValueError, 'Invalid AUC curve value: "XY"'),
    (lambda: metrics.AUC(summation_method="mean"), ValueError, 'summation method value: "mean"'),
    (lambda: metrics.AUC(num_labels=3), ValueError, "only when `multi_label` is True"),
    (lambda: metrics.AUC(multi_label=True, num_labels=0), ValueError, "num_labels=0"),
    (lambda: metrics.AUC(label_weights=[[1.0]]), ValueError, "label_weights"),
    (lambda: metrics.AUC(label_weights=[-1.0, 1.0]), ValueError, "label_weights"),
])
def test_bad_constructor_arguments(build, error, pattern):
    with pytest.raises(error, match=pattern):
        build()


def test_bad_update_arguments():
    with pytest.raises(ValueError, match="sample_weight"):
        metrics.Mean().update_state([[1.0, 2.0], [3.0, 4.0]], sample_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="class_id=5"):
        metrics.Precision(class_id=5).update_state([[1, 0]], [[0.5, 0.5]])
    with pytest.raises(ValueError, match="y_pred must be a 2D array"):
        metrics.Recall(class_id=0).update_state([1, 0], [0.5, 0.5])
    with pytest.raises(ValueError, match="must have rank 2"):
        metrics.AUC(multi_label=True).update_state(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="same shape"):
        metrics.AUC().update_state([[1, 0, 1]], [[0.5, 0.5]])

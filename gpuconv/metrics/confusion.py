"""Threshold metrics over confusion-matrix counts: TruePositives, FalsePositives,
TrueNegatives, FalseNegatives (the weighted counts), Precision and Recall (with ``top_k`` and
``class_id``), as Keras 3 defines them.

``thresholds`` is one value or a list in [0, 1] (default 0.5; with ``top_k`` the default is
Keras' -1e10, so every kept score is positive); ``result()`` is a scalar for one threshold and
one value per threshold otherwise.
"""
import numbers

from .base import Metric, scalar
from .confusion_matrix import (
    FALSE_NEGATIVES, FALSE_POSITIVES, NEG_INF, TRUE_NEGATIVES, TRUE_POSITIVES, is_evenly_distributed_thresholds,
    update_confusion_matrix_variables,
)
from .state import divide_no_nan, module_of


def _to_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_init_thresholds(thresholds, default_threshold=0.5):
    """The list of thresholds; given ones must be numbers in [0, 1] (Keras' check and message)."""
    if thresholds is None:
        return [default_threshold]
    values = _to_list(thresholds)
    invalid = [t for t in values
               if t is None or isinstance(t, bool) or not isinstance(t, numbers.Real) or t < 0 or t > 1]
    if invalid or not values:
        raise ValueError(f"Threshold values must be in [0, 1]. Received: {invalid or values}")
    return [float(t) for t in values]


def _check_optional_index(value, argument):
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise ValueError(f"Argument `{argument}` must be an integer or None. Received: {argument}={value!r}")
    if argument == "top_k" and value is not None and value < 1:
        raise ValueError(f"Argument `top_k` must be a positive integer or None. Received: top_k={value!r}")
    return value


class _ThresholdMetric(Metric):
    """State: one or more counts per threshold; update: Keras' confusion-matrix counting."""

    _counts = ()  # (attribute, kind) pairs

    def _init_thresholds(self, thresholds, default_threshold=0.5):
        self.init_thresholds = thresholds
        self.thresholds = parse_init_thresholds(thresholds, default_threshold)
        self._thresholds_distributed_evenly = is_evenly_distributed_thresholds(self.thresholds)
        for attribute, _ in self._counts:
            setattr(self, attribute, self.add_variable(shape=(len(self.thresholds),), name=attribute))

    def _update(self, y_true, y_pred, sample_weight, **options):
        update_confusion_matrix_variables(
            {kind: getattr(self, attribute) for attribute, kind in self._counts}, y_true, y_pred,
            thresholds=self.thresholds, thresholds_distributed_evenly=self._thresholds_distributed_evenly,
            sample_weight=sample_weight, **options)

    def _per_threshold(self, values, xp):
        return scalar(values[0] if len(self.thresholds) == 1 else values, xp)


class _ConfusionMatrixConditionCount(_ThresholdMetric):
    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._init_thresholds(thresholds)

    def update_state(self, y_true, y_pred, sample_weight=None):
        self._update(y_true, y_pred, sample_weight)

    def result(self):
        value = self.accumulator.value
        return self._per_threshold(value, module_of(value))

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(_ConfusionMatrixConditionCount):
    _counts = (("accumulator", TRUE_POSITIVES),)


class FalsePositives(_ConfusionMatrixConditionCount):
    _counts = (("accumulator", FALSE_POSITIVES),)


class TrueNegatives(_ConfusionMatrixConditionCount):
    _counts = (("accumulator", TRUE_NEGATIVES),)


class FalseNegatives(_ConfusionMatrixConditionCount):
    _counts = (("accumulator", FALSE_NEGATIVES),)


class _PrecisionOrRecall(_ThresholdMetric):
    """tp / (tp + other), where ``other`` is the second count (fp: precision, fn: recall)."""

    _direction = "up"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.top_k = _check_optional_index(top_k, "top_k")
        self.class_id = _check_optional_index(class_id, "class_id")
        self._init_thresholds(thresholds, 0.5 if top_k is None else NEG_INF)

    def update_state(self, y_true, y_pred, sample_weight=None):
        self._update(y_true, y_pred, sample_weight, top_k=self.top_k, class_id=self.class_id)

    def result(self):
        (tp_name, _), (other_name, _) = self._counts
        tp, other = getattr(self, tp_name).value, getattr(self, other_name).value
        xp = module_of(tp, other)
        return self._per_threshold(divide_no_nan(tp, tp + other, xp), xp)

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Precision(_PrecisionOrRecall):
    _counts = (("true_positives", TRUE_POSITIVES), ("false_positives", FALSE_POSITIVES))


class Recall(_PrecisionOrRecall):
    _counts = (("true_positives", TRUE_POSITIVES), ("false_negatives", FALSE_NEGATIVES))

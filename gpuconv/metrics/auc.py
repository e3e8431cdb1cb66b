"""``AUC``: the area under the ROC, PR or PR-gain curve from per-threshold confusion counts,
Keras 3's approximation (``num_thresholds`` buckets, Riemann sums by "interpolation", "minoring"
or "majoring", Davis & Goadrich's interpolation for PR).

The thresholds are ``[-eps, 1/(n-1), ..., (n-2)/(n-1), 1 + eps]`` (eps = 1e-7) or the given ones
between -eps and 1 + eps. With ``multi_label`` the counts are kept per label (built from the
first batch's ``y_pred`` unless ``num_labels`` is given) and the AUCs are averaged, weighted by
``label_weights`` when given; otherwise the labels are flattened and ``label_weights`` weight them.
"""
import numbers

import numpy as np

from .base import Metric, scalar
from .confusion_matrix import KINDS, is_evenly_distributed_thresholds, update_confusion_matrix_variables
from .state import as_array, divide_no_nan, module_of

EPSILON = 1e-7  # Keras' backend.epsilon()
_CURVES = {"roc": "ROC", "ROC": "ROC", "pr": "PR", "PR": "PR", "prgain": "PRGAIN", "PRGAIN": "PRGAIN"}
_SUMMATIONS = {"interpolation": "interpolation", "Interpolation": "interpolation", "majoring": "majoring",
               "Majoring": "majoring", "minoring": "minoring", "Minoring": "minoring"}
_STATE_NAMES = ("true_positives", "false_positives", "true_negatives", "false_negatives")
_STATE_KINDS = dict(zip(_STATE_NAMES, KINDS))


def _curve(curve):
    curve = getattr(curve, "value", curve)  # a Keras AUCCurve enum member
    if curve not in _CURVES:
        raise ValueError(f'Invalid AUC curve value: "{curve}". Expected values are ["PR", "ROC", "PRGAIN"]')
    return _CURVES[curve]


def _summation(method):
    method = getattr(method, "value", method)
    if method not in _SUMMATIONS:
        raise ValueError(f'Invalid AUC summation method value: "{method}". '
                         'Expected values are ["interpolation", "majoring", "minoring"]')
    return _SUMMATIONS[method]


def _label_weights(value):
    """label_weights as a float32 vector: a list, an array, or Keras' serialized tensor dict."""
    if value is None:
        return None
    if isinstance(value, dict) and value.get("class_name") == "__tensor__":
        value = (value.get("config") or {}).get("value")
    try:
        weights = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        weights = None
    if weights is None or weights.ndim != 1 or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("Argument `label_weights` must be a 1D list of non-negative numbers, one per label. "
                         f"Received: label_weights={value!r}")
    return weights


class AUC(Metric):
    _direction = "up"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None, dtype=None,
                 thresholds=None, multi_label=False, num_labels=None, label_weights=None, from_logits=False):
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            thresholds = sorted(float(t) for t in thresholds)
            self.num_thresholds = len(thresholds) + 2
            self._thresholds_distributed_evenly = is_evenly_distributed_thresholds([0.0] + thresholds + [1.0])
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, numbers.Integral) \
                    or num_thresholds <= 1:
                raise ValueError("Argument `num_thresholds` must be an integer > 1. "
                                 f"Received: num_thresholds={num_thresholds}")
            self.num_thresholds = int(num_thresholds)
            thresholds = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._thresholds_distributed_evenly = True
        self._thresholds = np.array([0.0 - EPSILON] + thresholds + [1.0 + EPSILON])
        self.curve = _curve(curve)
        self.summation_method = _summation(summation_method)
        super().__init__(name=name, dtype=dtype)
        self.multi_label = bool(multi_label)
        if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, numbers.Integral)
                                       or num_labels < 1):
            raise ValueError(f"Argument `num_labels` must be a positive integer or None. Received: num_labels={num_labels!r}")
        self.num_labels = num_labels
        self.label_weights = _label_weights(label_weights)
        self._from_logits = from_logits
        self._built = False
        if self.multi_label:
            if num_labels:
                self._build([None, num_labels])
        else:
            if num_labels:
                raise ValueError("`num_labels` is needed only when `multi_label` is True.")
            self._build(None)

    @property
    def thresholds(self):
        return list(self._thresholds)

    def _build(self, shape):
        if self.multi_label:
            if len(shape) != 2:
                raise ValueError(f"`y_pred` must have rank 2 when `multi_label=True`. Found rank {len(shape)}. "
                                 f"Full shape received for `y_pred`: {tuple(shape)}")
            self._num_labels = shape[1]
            variable_shape = (self.num_thresholds, self._num_labels)
        else:
            variable_shape = (self.num_thresholds,)
        self._build_input_shape = shape
        for state in _STATE_NAMES:
            setattr(self, state, self.add_variable(shape=variable_shape, name=state))
        self._built = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        xp = module_of(y_pred, y_true)
        y_pred = as_array(y_pred, xp)
        if not self._built:
            self._build(y_pred.shape)
        if self._from_logits:
            y_pred = 1.0 / (1.0 + xp.exp(-y_pred.astype(self.dtype)))
        update_confusion_matrix_variables(
            {_STATE_KINDS[state]: getattr(self, state) for state in _STATE_NAMES}, y_true, y_pred,
            self._thresholds, thresholds_distributed_evenly=self._thresholds_distributed_evenly,
            sample_weight=sample_weight, multi_label=self.multi_label,
            label_weights=None if self.multi_label else self.label_weights)

    def _counts(self):
        values = [getattr(self, state).value for state in _STATE_NAMES]
        xp = module_of(*values)
        return (xp,) + tuple(as_array(v, xp) for v in values)

    def _by_label(self, increments, xp):
        """The total over thresholds; with multi_label, the (weighted) mean over labels."""
        if not self.multi_label:
            return scalar(xp.sum(increments), xp)
        by_label = xp.sum(increments, axis=0)
        if self.label_weights is None:
            return scalar(xp.mean(by_label), xp)
        weights = as_array(self.label_weights, xp)
        return scalar(divide_no_nan(xp.sum(by_label * weights), xp.sum(weights), xp), xp)

    def interpolate_pr_auc(self):
        """Davis & Goadrich's interpolated area under the PR curve (Keras' formula)."""
        xp, tp, fp, _, fn = self._counts()
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        prec_slope = divide_no_nan(dtp, xp.maximum(dp, 0), xp)
        intercept = tp[1:] - prec_slope * p[1:]
        both_positive = (p[:-1] > 0) & (p[1:] > 0)
        safe_p_ratio = xp.where(both_positive, divide_no_nan(p[:-1], xp.maximum(p[1:], 0), xp),
                                xp.ones_like(p[1:]))
        increments = divide_no_nan(prec_slope * (dtp + intercept * xp.log(safe_p_ratio)),
                                   xp.maximum(tp[1:] + fn[1:], 0), xp)
        return self._by_label(increments, xp)

    def result(self):
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self.interpolate_pr_auc()
        xp, tp, fp, tn, fn = self._counts()
        recall = divide_no_nan(tp, tp + fn, xp)
        if self.curve == "ROC":
            x, y = divide_no_nan(fp, fp + tn, xp), recall
        elif self.curve == "PR":
            x, y = recall, divide_no_nan(tp, tp + fp, xp)
        else:  # PRGAIN
            scaling = divide_no_nan(tp + fn, tn + fp, xp)
            recall_gain = 1.0 - scaling * divide_no_nan(fn, tp, xp)
            precision_gain = 1.0 - scaling * divide_no_nan(fp, tp, xp)
            x = xp.maximum(xp.where(tp == 0, xp.zeros_like(recall_gain), recall_gain), 0.0)
            y = xp.where(tp == 0, xp.ones_like(precision_gain), precision_gain)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = xp.minimum(y[:-1], y[1:])
        else:
            heights = xp.maximum(y[:-1], y[1:])
        return self._by_label((x[:-1] - x[1:]) * heights, xp)

    def reset_state(self):
        if self._built:
            super().reset_state()

    def get_config(self):
        config = {
            "num_thresholds": self.num_thresholds,
            "curve": self.curve,
            "summation_method": self.summation_method,
            "multi_label": self.multi_label,
            "num_labels": self.num_labels,
            "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
            "from_logits": self._from_logits,
        }
        if self._init_from_thresholds:
            config["thresholds"] = [float(t) for t in self.thresholds[1:-1]]
        return {**super().get_config(), **config}

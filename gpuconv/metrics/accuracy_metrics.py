"""The accuracy family: Keras' per-sample functions (``binary_accuracy``,
``categorical_accuracy``, ``sparse_categorical_accuracy``, ``top_k_categorical_accuracy``,
``sparse_top_k_categorical_accuracy``) and the metrics averaging them.

Each function returns float32 matches (1.0 / 0.0), one per sample, of the inputs' array module.
Ties: ``argmax`` takes the first maximal class, as NumPy, CuPy and torch do; top-k counts a
class tied with the k-th largest score as inside the top k (Keras' ``in_top_k``), and a ``k`` at
least the number of classes puts every class inside.
"""
import numbers

from .reduction import BuiltinMeanMetric
from .state import as_array, module_of, squeeze_or_expand_to_same_rank

_MATCH_DTYPE = "float32"  # Keras casts matches to floatx


def _inputs(y_true, y_pred, true_dtype="pred"):
    """(xp, y_true, y_pred) as arrays of one module; y_true cast to y_pred's dtype by default."""
    xp = module_of(y_pred, y_true)
    y_pred = as_array(y_pred, xp)
    dtype = y_pred.dtype if true_dtype == "pred" else true_dtype
    return xp, as_array(y_true, xp, dtype), y_pred


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"Argument `k` must be a positive integer. Received: k={k!r}")
    return int(k)


def accuracy(y_true, y_pred):
    """1.0 where ``y_true == y_pred`` (after Keras' rank alignment)."""
    _, y_true, y_pred = _inputs(y_true, y_pred)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    return (y_true == y_pred).astype(_MATCH_DTYPE)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """1.0 where ``y_pred > threshold`` agrees with ``y_true``."""
    xp, y_true, y_pred = _inputs(y_true, y_pred, true_dtype=None)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    predicted = (y_pred > as_array(threshold, xp, "float32")).astype(y_true.dtype)  # Keras: a floatx tensor
    return (y_true == predicted).astype(_MATCH_DTYPE)


def _label_matches(xp, labels, y_pred):
    """Matches of ``labels`` (already in y_pred's dtype) against ``argmax(y_pred)``, with Keras'
    handling of a trailing label axis of size 1."""
    original_shape = labels.shape
    reshaped = labels.ndim == y_pred.ndim and labels.shape[-1] == 1
    if reshaped:
        labels = labels[..., 0]
    predicted = xp.argmax(y_pred, axis=-1).astype(labels.dtype)
    matches = (labels == predicted).astype(_MATCH_DTYPE)
    return matches.reshape(original_shape) if reshaped else matches


def categorical_accuracy(y_true, y_pred):
    """1.0 where the arg max of the one-hot ``y_true`` is the arg max of ``y_pred``."""
    xp, y_true, y_pred = _inputs(y_true, y_pred)
    labels = xp.argmax(y_true, axis=-1).astype(y_pred.dtype)
    return _label_matches(xp, labels, y_pred)


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where the integer label ``y_true`` is the arg max of ``y_pred``."""
    xp, y_true, y_pred = _inputs(y_true, y_pred)
    matches = _label_matches(xp, y_true, y_pred)
    if matches.ndim > 1 and matches.shape[-1] == 1:
        matches = matches[..., 0]
    return matches


def in_top_k(targets, predictions, k):
    """Whether each target's score is among the ``k`` largest of its row (ties count as inside)."""
    xp = module_of(predictions)
    num_classes = predictions.shape[-1]
    target_scores = xp.take_along_axis(predictions, targets.astype("int64")[:, None], axis=-1)[:, 0]
    if k >= num_classes:
        return target_scores == target_scores  # every class is inside (False only for NaN)
    kth_largest = xp.sort(predictions, axis=-1)[:, num_classes - k]
    return target_scores >= kth_largest


def _top_k_matches(xp, labels, y_pred, k, from_sorted_ids=False):
    """In-top-k matches of ``labels`` over y_pred flattened to rows, in the labels' shape."""
    original_shape = labels.shape
    if y_pred.ndim > 2:
        y_pred = y_pred.reshape(-1, y_pred.shape[-1])
    labels = labels.reshape(-1)
    if from_sorted_ids:  # y_pred holds class ids, best first: is the label among the first k?
        matches = xp.any(labels[:, None] == y_pred[:, :k], axis=1)
    else:
        matches = in_top_k(labels, y_pred, k)
    return matches.astype(_MATCH_DTYPE).reshape(original_shape)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the one-hot ``y_true``'s class is among the ``k`` highest scores."""
    k = _check_k(k)
    xp, y_true, y_pred = _inputs(y_true, y_pred)
    return _top_k_matches(xp, xp.argmax(y_true, axis=-1).astype("int32"), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    """1.0 where the integer label is among the ``k`` highest scores (or, with
    ``from_sorted_ids=True``, among the first ``k`` ids of ``y_pred``, ids sorted best first)."""
    k = _check_k(k)
    xp = module_of(y_pred, y_true)
    y_pred = as_array(y_pred, xp)
    y_true = as_array(y_true, xp, y_pred.dtype if from_sorted_ids else "int32")
    return _top_k_matches(xp, y_true, y_pred, k, from_sorted_ids=from_sorted_ids)


class _MaximizedMeanMetric(BuiltinMeanMetric):
    """An accuracy: a mean of matches, to be maximised."""

    _direction = "up"


class Accuracy(_MaximizedMeanMetric):
    def __init__(self, name="accuracy", dtype=None):
        super().__init__(fn=accuracy, name=name, dtype=dtype)


class BinaryAccuracy(_MaximizedMeanMetric):
    _config_keys = ("threshold",)

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise ValueError(f"Argument `threshold` must be a number. Received: threshold={threshold!r}")
        super().__init__(fn=binary_accuracy, name=name, dtype=dtype, threshold=threshold)
        self.threshold = threshold


class CategoricalAccuracy(_MaximizedMeanMetric):
    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(fn=categorical_accuracy, name=name, dtype=dtype)


class SparseCategoricalAccuracy(_MaximizedMeanMetric):
    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(fn=sparse_categorical_accuracy, name=name, dtype=dtype)


class TopKCategoricalAccuracy(_MaximizedMeanMetric):
    _config_keys = ("k",)

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(fn=top_k_categorical_accuracy, name=name, dtype=dtype, k=_check_k(k))
        self.k = k


class SparseTopKCategoricalAccuracy(_MaximizedMeanMetric):
    _config_keys = ("k",)

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None, from_sorted_ids=False):
        super().__init__(fn=sparse_top_k_categorical_accuracy, name=name, dtype=dtype, k=_check_k(k),
                         from_sorted_ids=from_sorted_ids)
        self.k = k
        self.from_sorted_ids = from_sorted_ids

    def get_config(self):
        config = super().get_config()
        if self.from_sorted_ids:  # Keras writes the key only when it is set
            config["from_sorted_ids"] = True
        return config

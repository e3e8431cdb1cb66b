"""Counting true/false positives/negatives per threshold: Keras'
``update_confusion_matrix_variables``, which Precision, Recall, AUC and the four counts share.

A prediction is positive at threshold t when ``y_pred > t``; a label is positive when non-zero.
Two ways to count, chosen as Keras chooses them so the numbers agree at the thresholds
themselves: for evenly spaced thresholds ``i / (n - 1)``, each prediction falls in the bucket
``ceil(y_pred * (n - 1)) - 1`` and the counts are reverse cumulative sums of the buckets (one
pass, as Keras' optimised path; the outer thresholds of AUC, -eps and 1 + eps, take bucket 0
for a prediction of 0); otherwise every prediction is compared with every threshold.

``top_k`` keeps the k largest scores of each row and makes the others negative at every
threshold; among equal scores the lower index is kept (TensorFlow's ``top_k`` rule; torch's
order for ties is unspecified).
"""
import numpy as np

from .state import as_array, module_of, squeeze_or_expand_to_same_rank

TRUE_POSITIVES, FALSE_POSITIVES, TRUE_NEGATIVES, FALSE_NEGATIVES = "tp", "fp", "tn", "fn"
KINDS = (TRUE_POSITIVES, FALSE_POSITIVES, TRUE_NEGATIVES, FALSE_NEGATIVES)
NEG_INF = -1e10  # Keras' stand-in score for the classes top_k drops


def is_evenly_distributed_thresholds(thresholds):
    """Whether ``thresholds`` are ``i / (n - 1)`` for i = 0..n-1, n >= 3 (Keras' test)."""
    count = len(thresholds)
    if count < 3:
        return False
    even = np.arange(count, dtype=np.float32) / (count - 1)
    return bool(np.allclose(np.asarray(thresholds, dtype=np.float64), even, atol=1e-7))


def filter_top_k(x, k):
    """``x`` with every score outside the k largest of its row replaced by NEG_INF."""
    xp = module_of(x)
    order = xp.argsort(-x, axis=-1, kind="stable")
    rank = xp.argsort(order, axis=-1, kind="stable")
    keep = (rank < k).astype(x.dtype)
    return x * keep + NEG_INF * (1 - keep)


def _align_weights(y_true, sample_weight, xp, dtype):
    """Keras' alignment of sample weights with labels: one more axis, then dropped again where
    the labels are a vector."""
    sample_weight = as_array(sample_weight, xp, dtype)[..., None]
    return squeeze_or_expand_to_same_rank(y_true, sample_weight, expand_rank_1=False)[1]


def update_confusion_matrix_variables(variables, y_true, y_pred, thresholds, top_k=None, class_id=None,
                                      sample_weight=None, multi_label=False, label_weights=None,
                                      thresholds_distributed_evenly=False):
    """Add this batch's counts to ``variables`` ({kind: MetricVariable}, kinds from KINDS); each
    variable has one entry per threshold (per threshold and label with ``multi_label``)."""
    if multi_label and label_weights is not None:
        raise ValueError("`label_weights` for multilabel data should be handled outside of "
                         "`update_confusion_matrix_variables` when `multi_label` is True.")
    invalid = [key for key in variables if key not in KINDS]
    if invalid or not variables:
        raise ValueError(f"Invalid keys: {invalid}. Valid variable key options are: {list(KINDS)}")
    dtype = next(iter(variables.values())).dtype
    xp = module_of(y_pred, y_true, sample_weight)
    y_true = as_array(y_true, xp, dtype)
    y_pred = as_array(y_pred, xp, dtype)
    with_epsilon = bool(thresholds[0] < 0.0 or thresholds[-1] > 1.0)
    y_pred, y_true = squeeze_or_expand_to_same_rank(y_pred, y_true)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"`y_true` and `y_pred` must have the same shape. Received: y_true.shape={y_true.shape}, "
                         f"y_pred.shape={y_pred.shape}")
    if sample_weight is not None:
        sample_weight = _align_weights(y_true, sample_weight, xp, dtype)
    if top_k is not None:
        y_pred = filter_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.ndim == 1:
            raise ValueError("When class_id is provided, y_pred must be a 2D array with shape "
                             f"(num_samples, num_classes), found shape: {y_pred.shape}")
        if not -y_pred.shape[-1] <= class_id < y_pred.shape[-1]:
            raise ValueError(f"Argument `class_id` must be a class index below {y_pred.shape[-1]}. "
                             f"Received: class_id={class_id}")
        y_true = y_true[..., class_id, None]
        y_pred = y_pred[..., class_id, None]
    weights = _weights(xp, y_pred, sample_weight, label_weights, dtype, multi_label)
    thresholds = xp.asarray(np.asarray(thresholds, dtype=dtype))
    if thresholds_distributed_evenly:
        counts = _bucketed_counts(xp, variables, y_true, y_pred, thresholds.shape[0], weights, multi_label,
                                  with_epsilon)
    else:
        counts = _compared_counts(xp, variables, y_true, y_pred, thresholds, weights, multi_label)
    for kind, variable in variables.items():
        variable.assign_add(counts[kind].astype(dtype))


def _weights(xp, y_pred, sample_weight, label_weights, dtype, multi_label):
    """Per-prediction weights in y_pred's shape (flattened unless multi_label), or None."""
    weights = None
    if sample_weight is not None:
        weights = xp.broadcast_to(sample_weight, y_pred.shape)
    if label_weights is not None:
        label_weights = xp.broadcast_to(as_array(label_weights, xp, dtype)[None], y_pred.shape)
        weights = label_weights if weights is None else weights * label_weights
    if weights is not None and not multi_label:
        weights = weights.reshape(-1)
    return weights


def _bucketed_counts(xp, variables, y_true, y_pred, num_thresholds, weights, multi_label, with_epsilon):
    """Keras' optimised path for evenly spaced thresholds."""
    y_pred = xp.clip(y_pred, 0.0, 1.0)
    y_true = (y_true != 0).astype(y_pred.dtype)
    if not multi_label:
        y_true, y_pred = y_true.reshape(-1, 1), y_pred.reshape(-1, 1)
        if weights is not None:
            weights = weights.reshape(-1, 1)
    true_labels = y_true if weights is None else y_true * weights.astype(y_pred.dtype)
    false_labels = (1.0 - y_true) if weights is None else (1.0 - y_true) * weights.astype(y_pred.dtype)
    buckets = xp.ceil(y_pred * y_pred.dtype.type(num_thresholds - 1)) - 1
    if with_epsilon:
        buckets = xp.maximum(buckets, 0)
    buckets = xp.where(xp.isnan(buckets), -1, buckets)  # a NaN score is positive nowhere (as in Keras)
    # One bincount over (label, bucket + 1) pairs; bucket -1 (a prediction of 0 with no -eps
    # threshold) is positive at no threshold and lands in the column dropped below.
    labels = y_pred.shape[1]
    slots = (buckets.astype("int64") + 1) + (num_thresholds + 1) * xp.arange(labels)[None, :]
    size = labels * (num_thresholds + 1)

    def per_threshold(values):
        sums = xp.bincount(slots.reshape(-1), weights=values.reshape(-1).astype("float64"), minlength=size)
        sums = sums.reshape(labels, num_thresholds + 1)[:, 1:]
        return xp.cumsum(sums[:, ::-1], axis=1)[:, ::-1].T  # (thresholds, labels)

    tp = per_threshold(true_labels)
    fp = per_threshold(false_labels)
    counts = {TRUE_POSITIVES: tp, FALSE_POSITIVES: fp}
    if TRUE_NEGATIVES in variables:
        counts[TRUE_NEGATIVES] = xp.sum(false_labels.astype("float64"), axis=0) - fp
    if FALSE_NEGATIVES in variables:
        counts[FALSE_NEGATIVES] = xp.sum(true_labels.astype("float64"), axis=0) - tp
    if not multi_label:
        counts = {kind: value[:, 0] for kind, value in counts.items()}
    return counts


def _compared_counts(xp, variables, y_true, y_pred, thresholds, weights, multi_label):
    """Every prediction against every threshold."""
    if multi_label:
        predictions, labels = y_pred[None], (y_true != 0)[None]
        thresholds = thresholds.reshape(-1, 1, 1)
        weights = None if weights is None else weights[None]
    else:
        predictions, labels = y_pred.reshape(1, -1), (y_true != 0).reshape(1, -1)
        thresholds = thresholds.reshape(-1, 1)
        weights = None if weights is None else weights.reshape(1, -1)
    pred_is_pos = predictions > thresholds
    label_is_pos = xp.broadcast_to(labels, pred_is_pos.shape)

    def count(label, pred):
        both = label & pred
        values = both.astype(y_pred.dtype) if weights is None else xp.where(both, weights, 0).astype(y_pred.dtype)
        return xp.sum(values, axis=1)

    counts = {TRUE_POSITIVES: count(label_is_pos, pred_is_pos)}
    if FALSE_POSITIVES in variables:
        counts[FALSE_POSITIVES] = count(~label_is_pos, pred_is_pos)
    if TRUE_NEGATIVES in variables:
        counts[TRUE_NEGATIVES] = count(~label_is_pos, ~pred_is_pos)
    if FALSE_NEGATIVES in variables:
        counts[FALSE_NEGATIVES] = count(label_is_pos, ~pred_is_pos)
    return counts

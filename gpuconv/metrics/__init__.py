"""``gpuconv.metrics``: Keras 3's metrics with their state semantics (``update_state``,
``result``, ``reset_state``), their configs and their string names.

State is float32 (the metric's dtype) and stays in the inputs' array module (NumPy, CuPy, the
cuda-emulator's ``xp``); ``result()`` returns a 0-d array of that module. Nothing a metric
computes is recorded on a gradient tape.

The per-sample loss functions Keras re-exports here (``gpuconv.metrics.mean_squared_error``, ...)
are gpuconv.losses' own, looked up when first used.
"""
from .accuracy_metrics import (  # noqa: F401
    Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy, accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
    sparse_top_k_categorical_accuracy, top_k_categorical_accuracy,
)
from .auc import AUC  # noqa: F401
from .base import Metric  # noqa: F401
from .confusion import FalseNegatives, FalsePositives, Precision, Recall, TrueNegatives, TruePositives  # noqa: F401
from .loss_metrics import (  # noqa: F401
    BinaryCrossentropy, CategoricalCrossentropy, CategoricalHinge, CosineSimilarity, Hinge, KLDivergence,
    LogCoshError, MeanAbsoluteError, MeanAbsolutePercentageError, MeanSquaredError, MeanSquaredLogarithmicError,
    Poisson, RootMeanSquaredError, SparseCategoricalCrossentropy, SquaredHinge,
)
from .loss_metrics import LOSS_FUNCTION_NAMES as _LOSS_FUNCTION_NAMES
from .loss_metrics import loss_function as _loss_function
from .reduction import Mean, MeanMetricWrapper, Sum  # noqa: F401
from .registry import ALL_OBJECTS_DICT, deserialize, get, serialize  # noqa: F401
from .state import MetricVariable  # noqa: F401


def __getattr__(name):
    """``gpuconv.metrics.mean_squared_error`` and the other loss functions Keras exports here."""
    if name in _LOSS_FUNCTION_NAMES:
        return _loss_function(name)
    raise AttributeError(f"module 'gpuconv.metrics' has no attribute {name!r}")

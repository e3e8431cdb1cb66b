"""Metric names and configs: ``get``, ``serialize``, ``deserialize`` with Keras 3's names.

Strings resolve, as in ``keras.metrics.get``, to an instance of a metric class: every class
under its class name and its snake_case name, plus Keras' aliases ('mse', 'mae', 'mape', 'msle',
'bce', upper case too). So 'accuracy' is ``Accuracy`` (exact equality of y_true and y_pred),
'binary_accuracy' ``BinaryAccuracy``, 'categorical_accuracy' ``CategoricalAccuracy``,
'sparse_categorical_accuracy' ``SparseCategoricalAccuracy``, 'top_k_categorical_accuracy' and
'sparse_top_k_categorical_accuracy' the top-k classes (k=5), 'auc' ``AUC``, 'precision'
``Precision``, 'recall' ``Recall``, 'mse' ``MeanSquaredError``, 'categorical_crossentropy'
``CategoricalCrossentropy``, ... 'acc' is not a metric name (Keras' ``get`` refuses it too):
``compile(metrics=["accuracy" or "acc"])`` chooses Binary-, Sparse- or CategoricalAccuracy from
the loss and shapes, which is the training loop's job, not this lookup's.

Configs are data (see gpuconv/serialization.py): a name resolves only among gpuconv's metrics
(functions for a ``{'class_name': 'function'}`` dict: the accuracy functions and gpuconv.losses'
per-sample losses) and the caller's objects. A function of gpuconv is written as Keras writes its
own, ``{'module': 'builtins', 'class_name': 'function', 'config': name, ...}``.
"""
import inspect

from .. import serialization as _serialization
from . import accuracy_metrics as accuracy
from . import auc, confusion, loss_metrics, reduction
from .base import Metric

_KIND = "metric"
_MODULE = "keras.metrics"

ALL_CLASSES = (
    Metric, reduction.Mean, reduction.Sum, reduction.MeanMetricWrapper,
    loss_metrics.MeanSquaredError, loss_metrics.RootMeanSquaredError, loss_metrics.MeanAbsoluteError,
    loss_metrics.MeanAbsolutePercentageError, loss_metrics.MeanSquaredLogarithmicError,
    loss_metrics.CosineSimilarity, loss_metrics.LogCoshError,
    auc.AUC, confusion.FalseNegatives, confusion.FalsePositives, confusion.Precision, confusion.Recall,
    confusion.TrueNegatives, confusion.TruePositives,
    loss_metrics.Hinge, loss_metrics.SquaredHinge, loss_metrics.CategoricalHinge,
    loss_metrics.KLDivergence, loss_metrics.Poisson, loss_metrics.BinaryCrossentropy,
    loss_metrics.CategoricalCrossentropy, loss_metrics.SparseCategoricalCrossentropy,
    accuracy.Accuracy, accuracy.BinaryAccuracy, accuracy.CategoricalAccuracy, accuracy.SparseCategoricalAccuracy,
    accuracy.TopKCategoricalAccuracy, accuracy.SparseTopKCategoricalAccuracy,
)
_ALIASES = {
    "bce": loss_metrics.BinaryCrossentropy, "BCE": loss_metrics.BinaryCrossentropy,
    "mse": loss_metrics.MeanSquaredError, "MSE": loss_metrics.MeanSquaredError,
    "mae": loss_metrics.MeanAbsoluteError, "MAE": loss_metrics.MeanAbsoluteError,
    "mape": loss_metrics.MeanAbsolutePercentageError, "MAPE": loss_metrics.MeanAbsolutePercentageError,
    "msle": loss_metrics.MeanSquaredLogarithmicError, "MSLE": loss_metrics.MeanSquaredLogarithmicError,
}
ALL_OBJECTS_DICT = _serialization.registry(ALL_CLASSES, _ALIASES)

METRIC_FUNCTIONS = {
    fn.__name__: fn for fn in (
        accuracy.accuracy, accuracy.binary_accuracy, accuracy.categorical_accuracy,
        accuracy.sparse_categorical_accuracy, accuracy.top_k_categorical_accuracy,
        accuracy.sparse_top_k_categorical_accuracy,
    )
}


def function_table():
    """The functions a config may name: the accuracy functions and, when gpuconv.losses is
    importable, its per-sample losses."""
    table = dict(METRIC_FUNCTIONS)
    try:
        table.update({name: loss_metrics.loss_function(name) for name in loss_metrics.LOSS_FUNCTION_NAMES})
    except (ImportError, AttributeError):  # gpuconv.losses absent, or without one of them
        pass
    return table


def serialize(metric):
    """Keras' dict for a metric instance or function (a string stays a string)."""
    if isinstance(metric, str) or metric is None:
        return metric
    if inspect.isfunction(metric) and metric.__module__.startswith("gpuconv."):
        return {"module": "builtins", "class_name": "function", "config": metric.__name__,
                "registered_name": "function"}
    return _serialization.serialize_object(metric, _MODULE)


def deserialize(config, custom_objects=None):
    """The metric (an instance, or a function for a 'function' dict) a Keras dict or name describes."""
    if isinstance(config, str):
        return get(config, custom_objects)
    is_function = isinstance(config, dict) and config.get("class_name") == "function"
    table = function_table() if is_function else ALL_OBJECTS_DICT
    return _serialization.deserialize_object(config, table, _KIND, custom_objects)


def get(identifier, custom_objects=None):
    """Keras' ``metrics.get``: None -> None; a name or a class -> a new instance with defaults;
    a config dict -> the object it describes; a metric instance or any callable -> itself."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        obj = deserialize(identifier, custom_objects)
    elif isinstance(identifier, str):
        obj = _serialization.lookup_name(identifier, ALL_OBJECTS_DICT, custom_objects)
    else:
        obj = identifier
    if inspect.isclass(obj):
        obj = obj()
    if callable(obj) or isinstance(obj, Metric):
        return obj
    raise _serialization.unknown_identifier(_KIND, identifier)

"""Keras 3.15's optimizers (``keras.optimizers``) on gpuconv variables: the classes, the
learning-rate schedules, and ``get`` / ``serialize`` / ``deserialize``.

Resolution is by name among gpuconv's optimizer classes (case-insensitively, as Keras) and the
caller's own objects only: a config never makes this package import or look anything up elsewhere.
"""
from ..serialization import deserialize_object, serialize_object
from . import schedules
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .lion import Lion
from .nadam import Nadam
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .rules import RULES
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Lion",
           "schedules", "get", "serialize", "deserialize", "RULES"]

_MODULE = "keras.optimizers"
_KIND = "optimizer"
ALL_OBJECTS = (Optimizer, Adam, SGD, RMSprop, Adadelta, AdamW, Adagrad, Adamax, Nadam, Lion)
ALL_OBJECTS_DICT = {cls.__name__.lower(): cls for cls in ALL_OBJECTS}


def serialize(optimizer):
    return serialize_object(optimizer, _MODULE)


def deserialize(config, custom_objects=None):
    """The optimizer a Keras dict describes; built-in class names match case-insensitively."""
    if isinstance(config, dict) and isinstance(config.get("class_name"), str):
        if config["class_name"].lower() in ALL_OBJECTS_DICT:
            config = {**config, "class_name": config["class_name"].lower()}
    obj = deserialize_object(config, ALL_OBJECTS_DICT, _KIND, custom_objects)
    if not isinstance(obj, Optimizer):
        raise ValueError(f"Could not interpret optimizer identifier: {config}")
    return obj


def get(identifier):
    """An optimizer from a name ('adam', 'RMSprop', ...), a config dict, or an instance."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        obj = deserialize(identifier)
    elif isinstance(identifier, str):
        obj = deserialize({"class_name": identifier, "config": {}})
    else:
        obj = identifier
    if isinstance(obj, Optimizer):
        return obj
    raise ValueError(f"Could not interpret optimizer identifier: {identifier}")

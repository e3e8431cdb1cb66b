"""``gpuconv.losses``: Keras 3.15's losses as functions and classes, differentiable under
``gpuconv.GradientTape``, with Keras' names, reductions and configs; ``get``, ``serialize``
and ``deserialize`` as ``keras.losses`` has them.

Why a package: the reductions (``loss``), the regression, probabilistic and hinge functions and
the classes binding them are separate ideas. Names resolve exactly as ``keras.losses.get``
resolves them (class and function names, and the aliases bce/BCE, kld/KLD, mae/MAE, mse/MSE,
mape/MAPE, msle/MSLE), plus 'logcosh' (the Keras 2 spelling). A config resolves only to these
built-ins and to objects the caller supplies (``gpuconv.serialization``'s rule): a module named
in a config is never imported.
"""
import inspect

from ..serialization import deserialize_object, lookup_name, serialize_object, unknown_identifier
from .hinge_losses import categorical_hinge, hinge, squared_hinge
from .loss import Loss, reduce_values, reduce_weighted_values, squeeze_or_expand_to_same_rank  # noqa: F401
from .probabilistic import (
    binary_crossentropy, binary_focal_crossentropy, categorical_crossentropy, categorical_focal_crossentropy,
    kl_divergence, poisson, sparse_categorical_crossentropy,
)
from .regression import (
    cosine_similarity, huber, log_cosh, mean_absolute_error, mean_absolute_percentage_error, mean_squared_error,
    mean_squared_logarithmic_error,
)
from .wrappers import *  # noqa: F401,F403  (the classes)
from .wrappers import CLASSES, LossFunctionWrapper

_KIND = "loss"
_MODULE = "keras.losses"

FUNCTIONS = [
    kl_divergence, poisson, binary_crossentropy, binary_focal_crossentropy, categorical_crossentropy,
    categorical_focal_crossentropy, sparse_categorical_crossentropy, mean_squared_error, mean_absolute_error,
    mean_absolute_percentage_error, mean_squared_logarithmic_error, cosine_similarity, log_cosh, huber, hinge,
    squared_hinge, categorical_hinge,
]

# Keras' table: every class and function under its __name__ (no snake_case forms: those are the
# functions' names), then the aliases.
ALL_OBJECTS_DICT = {obj.__name__: obj for obj in [Loss, *CLASSES, *FUNCTIONS]}
ALL_OBJECTS_DICT.update({
    "bce": binary_crossentropy, "BCE": binary_crossentropy,
    "kld": kl_divergence, "KLD": kl_divergence,
    "mae": mean_absolute_error, "MAE": mean_absolute_error,
    "mse": mean_squared_error, "MSE": mean_squared_error,
    "mape": mean_absolute_percentage_error, "MAPE": mean_absolute_percentage_error,
    "msle": mean_squared_logarithmic_error, "MSLE": mean_squared_logarithmic_error,
    "logcosh": log_cosh,
})
_BUILTIN_FUNCTIONS = {id(fn) for fn in FUNCTIONS}


def serialize(loss):
    """Keras' dict for a loss: a built-in function by name (module 'builtins', as Keras writes
    it), a class instance with its config; None and strings pass through."""
    if loss is None or isinstance(loss, str):
        return loss
    if id(loss) in _BUILTIN_FUNCTIONS:
        return {"module": "builtins", "class_name": "function", "config": loss.__name__, "registered_name": "function"}
    if type(loss) is LossFunctionWrapper:  # not public in keras.losses: Keras names its source module
        return {"module": "keras.src.losses.losses", "class_name": "LossFunctionWrapper",
                "config": loss.get_config(), "registered_name": "LossFunctionWrapper"}
    return serialize_object(loss, _MODULE)


def _instance(obj, identifier):
    if inspect.isclass(obj):
        obj = obj()
    if not callable(obj):
        raise unknown_identifier(_KIND, identifier)
    return obj


def deserialize(config, custom_objects=None):
    """The loss a Keras config (or a name) describes, among gpuconv's losses and the caller's
    ``custom_objects``; anything else is Keras' "Could not interpret loss identifier" ValueError."""
    if isinstance(config, str):
        found = lookup_name(config, ALL_OBJECTS_DICT, custom_objects)
        if found is None:
            raise unknown_identifier(_KIND, config)
        return _instance(found, config)
    return deserialize_object(config, ALL_OBJECTS_DICT, _KIND, custom_objects)


def get(identifier, custom_objects=None):
    """Keras' ``losses.get``: None; a function or class name ('mse', 'MeanSquaredError', ...);
    a config dict; a ``Loss`` class (instantiated) or instance; any other callable."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        obj = deserialize(identifier, custom_objects)
    elif isinstance(identifier, str):
        obj = lookup_name(identifier, ALL_OBJECTS_DICT, custom_objects)
    else:
        obj = identifier
    if obj is None:
        raise unknown_identifier(_KIND, identifier)
    return _instance(obj, identifier)

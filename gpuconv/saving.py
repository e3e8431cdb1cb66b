"""``keras.saving``'s object registration for gpuconv: how a config reaches a user's own objects.

A config is data: it resolves only to gpuconv's built-in layers, activations, initializers,
regularizers and constraints, and to objects the caller supplies in one of three ways, as in
Keras 3:

- ``custom_objects={name: obj}`` on ``from_config`` / ``deserialize`` / ``get``;
- ``with custom_object_scope({name: obj}):`` around the call (per thread, as Keras' scope);
- ``@register_serializable(package="my_pkg")`` on the class or function, which then serializes
  with ``registered_name`` "my_pkg>Name" and resolves from that name anywhere.

A module named in a config is never imported, and no attribute of any module is looked up by a
name from a config: ``{"module": "os", "class_name": "system"}`` is an unknown identifier
(``ValueError``), not a function.
"""
import inspect

from . import serialization as _s
from .serialization import DeserializationError

__all__ = [
    "CustomObjectScope", "DeserializationError", "custom_object_scope", "deserialize_keras_object",
    "get_custom_objects", "get_registered_name", "get_registered_object", "register_serializable",
    "serialize_keras_object",
]


def register_serializable(package="Custom", name=None):
    """Keras' ``register_keras_serializable``: a decorator registering a class (which must have
    ``get_config``) or a function under ``"package>name"`` (``name`` defaults to ``__name__``)."""
    for arg, value in (("package", package), ("name", name)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"Argument `{arg}` must be a string. Received: {arg}={value!r}")

    def decorator(obj):
        if inspect.isclass(obj) and not hasattr(obj, "get_config"):
            raise ValueError("Cannot register a class that does not have a get_config() method.")
        _s.register(obj, f"{package}>{obj.__name__ if name is None else name}")
        return obj

    return decorator


def get_registered_object(name, custom_objects=None, module_objects=None):
    """The object known under ``name``: the thread's custom_object_scope, the registered objects,
    ``custom_objects``, then ``module_objects`` (Keras' order); None when none has it."""
    found = _s.lookup_custom((name,), custom_objects)
    if found is None and module_objects and isinstance(name, str):
        found = module_objects.get(name)
    return found


def get_registered_name(obj):
    """The name ``obj`` was registered under, else its ``__name__`` (Keras)."""
    return _s.registered_name_of(obj)


def get_custom_objects():
    """The live global registry {"package>name": object} (Keras' ``get_custom_objects``)."""
    return _s.global_custom_objects()


class CustomObjectScope(_s._Scope):
    """``with CustomObjectScope({name: obj}):`` makes the objects resolvable by name in this
    thread (other threads never see them). Nested scopes add to the enclosing one's names."""


custom_object_scope = CustomObjectScope


# --------------------------------------------------------------------------------------------
# Generic (de)serialization of any gpuconv object
# --------------------------------------------------------------------------------------------
def model_classes():
    """The model classes a config may name (Keras' module strings for them are 'keras' and
    'keras.src.models.functional')."""
    from .functional import Functional
    from .models import Sequential

    return {"Sequential": Sequential, "Functional": Functional, "Model": Functional}


def _tables():
    """{Keras module: {name: built-in}} for every family (imported here: layers import saving's
    lower half, serialization, themselves)."""
    from . import activations, constraints, initializers, regularizers
    from .models import _layer_classes

    tables = {
        "keras.activations": activations.ALL_OBJECTS_DICT,
        "keras.initializers": initializers.ALL_OBJECTS_DICT,
        "keras.regularizers": regularizers.ALL_OBJECTS_DICT,
        "keras.constraints": constraints.ALL_OBJECTS_DICT,
        "keras.layers": _layer_classes(),
        "keras": model_classes(),
    }
    tables["builtins"] = tables["keras.activations"]  # Keras' module for functions stored by name
    return tables


def _table_for(module):
    """The built-ins a config's ``module`` may reach: its family's, or, for another Keras or
    gpuconv module name (or none), all of them. Foreign modules get none (``_resolve`` never
    consults a table for them)."""
    tables = _tables()
    if isinstance(module, str) and module in tables:
        return tables[module]
    merged = {}
    for table in tables.values():
        merged.update(table)
    return merged


def serialize_keras_object(obj):
    """Keras' dict for a layer, model, initializer, regularizer, constraint or activation (a
    built-in activation function as Keras 3.15 writes it: ``{'module': 'builtins', 'class_name':
    'function', 'config': name, 'registered_name': 'function'}``); None and plain Python values
    pass through; lists element by element."""
    from . import activations, constraints, initializers, regularizers
    from .layers.base_layer import Layer

    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(serialize_keras_object(x) for x in obj)
    if isinstance(obj, Layer) and hasattr(obj, "layers"):  # Sequential, Functional
        from .functional_config import serialize_operation

        return serialize_operation(obj)
    if isinstance(obj, Layer):
        return _s.serialize_object(obj, "keras.layers")
    for base, family in ((initializers.Initializer, initializers), (regularizers.Regularizer, regularizers),
                         (constraints.Constraint, constraints)):
        if isinstance(obj, base):
            return family.serialize(obj)
    name = activations.serialize(obj)
    if isinstance(name, str):  # a built-in activation: Keras 3.15 stores it by name, as below
        return {"module": "builtins", "class_name": "function", "config": name, "registered_name": "function"}
    return name


def deserialize_keras_object(config, custom_objects=None):
    """The object a Keras dict describes, resolved only among gpuconv's built-ins (of the family
    its ``module`` names) and the caller's objects; None and plain values pass through; a list
    element by element; a string names a caller-supplied object or stays a string (Keras)."""
    if config is None or isinstance(config, (int, float, bool)):
        return config
    if isinstance(config, str):
        found = _s.lookup_custom((config,), custom_objects)
        return config if found is None else found
    if isinstance(config, (list, tuple)):
        return [deserialize_keras_object(x, custom_objects) for x in config]
    if not isinstance(config, dict):
        raise _s.unknown_identifier("serialized object", config)
    return _s.deserialize_object(config, _table_for(config.get("module")), "serialized object", custom_objects)

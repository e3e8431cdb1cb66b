"""Keras-style ``get`` / ``serialize`` / ``deserialize`` for the object registries (initializers,
regularizers, constraints, activations, layers), written once.

A serialized object is Keras 3's dict: ``{'module', 'class_name', 'config', 'registered_name'}``.
The ``module`` strings are Keras' own ('keras.initializers', ...) so configs move between Keras
and gpuconv unchanged.
"""
import importlib
import inspect
import re


def to_snake_case(name):
    """Keras' ``to_snake_case``: 'GlorotUniform' -> 'glorot_uniform', 'Conv2D' -> 'conv2d',
    'MaxPooling2D' -> 'max_pooling2d', 'L1L2' -> 'l1l2' (a digit never starts a new word)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def registry(classes, aliases=None):
    """{name: class} under each class name and its snake_case form, plus ``aliases``."""
    table = {cls.__name__: cls for cls in classes}
    table.update({to_snake_case(cls.__name__): cls for cls in classes})
    table.update(aliases or {})
    return table


def serialize_object(obj, module):
    """Keras' dict for an object with ``get_config``; None stays None.

    Objects of this library report Keras' ``module`` (``module`` argument); a user's object
    reports its own Python module, and a plain function is stored by name, as Keras does.
    """
    if obj is None:
        return None
    if inspect.isfunction(obj):
        return {"module": obj.__module__, "class_name": "function", "config": obj.__name__,
                "registered_name": "function"}
    if not hasattr(obj, "get_config"):
        raise TypeError(f"Cannot serialize {obj!r}: it has no `get_config()` method.")
    own = type(obj).__module__.startswith("gpuconv.")
    return {
        "module": module if own else type(obj).__module__,
        "class_name": type(obj).__name__,
        "config": obj.get_config(),
        "registered_name": None,
    }


def _import_attr(module, name):
    """``module.name`` for a user's object named in a config, or None."""
    if not isinstance(module, str) or not isinstance(name, str):
        return None
    try:
        return getattr(importlib.import_module(module), name, None)
    except Exception:  # an unimportable module is reported by the caller's "Could not interpret"
        return None


def deserialize_object(config, table, kind, original=None):
    """The object a Keras dict describes, looked up in ``table`` (then in the named module).

    Classes are rebuilt with ``from_config(config['config'])``; a dict whose class_name is
    'function' names a function. Anything unknown raises Keras' "Could not interpret" error.
    """
    original = config if original is None else original
    error = ValueError(f"Could not interpret {kind} identifier: {original}")
    if not isinstance(config, dict) or "class_name" not in config:
        raise error
    class_name = config["class_name"]
    inner = config.get("config")
    if class_name == "function":
        module = config.get("module")
        # Keras' own modules (or none named) mean a built-in; otherwise the function lives in
        # the named module, even when a built-in has the same name (np.tanh vs our tanh).
        builtin = module is None or str(module).startswith(("keras", "gpuconv", "builtins"))
        fn = table.get(inner) if builtin and isinstance(inner, str) else _import_attr(module, inner)
        if fn is None or not callable(fn):
            raise error
        return fn
    cls = table.get(class_name) if isinstance(class_name, str) else None
    if cls is None:
        cls = _import_attr(config.get("module"), class_name)
    if cls is None:
        raise error
    if not inspect.isclass(cls):  # a function registered under that name
        return cls
    inner = {} if inner is None else inner
    if not isinstance(inner, dict):
        raise error
    return cls.from_config(dict(inner))


def get_object(identifier, table, kind):
    """Keras' ``get`` for initializers, regularizers and constraints.

    None -> None; a dict is deserialized; a string is an exact name in ``table``; a class is
    instantiated with no arguments; any other callable is returned as is.
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        obj = deserialize_object(identifier, table, kind)
    elif isinstance(identifier, str):
        obj = table.get(identifier)
    else:
        obj = identifier
    if inspect.isclass(obj):
        obj = obj()
    if callable(obj):
        return obj
    raise ValueError(f"Could not interpret {kind} identifier: {identifier}")

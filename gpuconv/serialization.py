"""Keras-style ``get`` / ``serialize`` / ``deserialize`` for the object registries (initializers,
regularizers, constraints, activations, layers), written once, and the custom-object registry
behind ``gpuconv.saving``.

A serialized object is Keras 3's dict: ``{'module', 'class_name', 'config', 'registered_name'}``.
The ``module`` strings are Keras' own ('keras.initializers', ...) so configs move between Keras
and gpuconv unchanged.

Security rule: a config is data, never code. A name in a config resolves only to an object the
caller supplied (``custom_objects=``, ``custom_object_scope``, ``register_serializable``) or to
one of gpuconv's own built-ins (the ``table`` of each registry); a module a config names is never
imported and never searched (``module`` only says whether the built-in table may be consulted).
"""
import inspect
import re
import threading


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


class DeserializationError(TypeError, ValueError):
    """A layer config ``from_config`` could not rebuild.

    Keras wraps every failure of ``Layer.from_config`` in a TypeError; this is that TypeError,
    and a ValueError too, so ``except ValueError`` around an untrusted config catches every
    refusal (an unknown identifier is a ValueError everywhere else).
    """


# --------------------------------------------------------------------------------------------
# Custom objects: the only names a config can reach besides gpuconv's built-ins
# --------------------------------------------------------------------------------------------
_GLOBAL_CUSTOM_OBJECTS = {}  # "package>name" -> object, filled by register_serializable
_GLOBAL_CUSTOM_NAMES = {}  # object -> "package>name"
_registry_lock = threading.Lock()
# custom_object_scope's objects, per thread, as Keras keeps them (keras' global_state is a
# threading.local): a scope opened in one thread never leaks into a config read by another.
_scope = threading.local()


def register(obj, registered_name):
    with _registry_lock:
        _GLOBAL_CUSTOM_OBJECTS[registered_name] = obj
        _GLOBAL_CUSTOM_NAMES[obj] = registered_name


def global_custom_objects():
    return _GLOBAL_CUSTOM_OBJECTS


def registered_name_of(obj):
    """The "package>name" an object was registered under, else its ``__name__`` (Keras)."""
    try:
        return _GLOBAL_CUSTOM_NAMES.get(obj, obj.__name__)
    except TypeError:  # an unhashable object cannot have been registered
        return obj.__name__


def scoped_custom_objects():
    return getattr(_scope, "objects", {})


def set_scoped_custom_objects(objects):
    _scope.objects = objects


def lookup_custom(names, custom_objects=None):
    """The first caller-supplied object found under one of ``names``, else None.

    Keras' order for each name: the thread's custom_object_scope, then the registered objects,
    then ``custom_objects``. Names that are not strings (a config may hold anything) match nothing.
    """
    sources = (scoped_custom_objects(), _GLOBAL_CUSTOM_OBJECTS, custom_objects or {})
    for name in names:
        if not isinstance(name, str):
            continue
        for source in sources:
            if name in source:
                return source[name]
    return None


class _Scope:
    """``with _Scope(objects):`` makes ``objects`` visible to every lookup in this thread, on top
    of any enclosing scope's (inner names win)."""

    def __init__(self, objects):
        self.objects = dict(objects or {})
        self._saved = None

    def __enter__(self):
        self._saved = scoped_custom_objects()
        set_scoped_custom_objects({**self._saved, **self.objects})
        return self

    def __exit__(self, *exc_info):
        set_scoped_custom_objects(self._saved)
        return False


# --------------------------------------------------------------------------------------------
# Serialize
# --------------------------------------------------------------------------------------------
def serialize_object(obj, module):
    """Keras' dict for an object with ``get_config``; None stays None.

    Objects of this library report Keras' ``module`` (``module`` argument); a user's object
    reports its own Python module and, as ``registered_name``, the name it was registered under
    (``register_serializable``) or its class name, as Keras does. A plain function is stored by
    (registered) name.
    """
    if obj is None:
        return None
    if inspect.isfunction(obj):
        return {"module": obj.__module__, "class_name": "function", "config": registered_name_of(obj),
                "registered_name": "function"}
    if not hasattr(obj, "get_config"):
        raise TypeError(f"Cannot serialize {obj!r}: it has no `get_config()` method.")
    own = type(obj).__module__.startswith("gpuconv.")
    return {
        "module": module if own else type(obj).__module__,
        "class_name": type(obj).__name__,
        "config": obj.get_config(),
        "registered_name": None if own else registered_name_of(type(obj)),
    }


# --------------------------------------------------------------------------------------------
# Deserialize
# --------------------------------------------------------------------------------------------
# Modules whose objects are built-ins: Keras' own ('keras', 'keras.layers', 'keras.src...'),
# ours, and 'builtins', which Keras writes for plain functions it stores by name. None (Keras
# writes it for classes defined in __main__) and a missing key mean the same.
_BUILTIN_PACKAGES = frozenset({"keras", "gpuconv", "builtins"})


def _names_builtins(module):
    if module is None:
        return True
    return isinstance(module, str) and module.split(".", 1)[0] in _BUILTIN_PACKAGES


def unknown_identifier(kind, identifier):
    """Keras' "Could not interpret" ValueError; for a dict, with the rule that refused it."""
    message = f"Could not interpret {kind} identifier: {identifier}"
    if isinstance(identifier, dict):
        message += (
            ". A config resolves only gpuconv's built-in objects and objects the caller supplies "
            "(`custom_objects=`, `gpuconv.saving.custom_object_scope`, "
            "`@gpuconv.saving.register_serializable`); modules named in a config are never imported."
        )
    return ValueError(message)


def _resolve(config, table, custom_objects):
    """The class or function a Keras dict names, or None: caller-supplied objects first
    (Keras' precedence), then ``table`` when the dict's module is a built-in one."""
    class_name = config["class_name"]
    if class_name == "function":
        name = config.get("config")
        custom_names = (name,)
    else:
        name = class_name
        custom_names = (config.get("registered_name"), class_name)
    found = lookup_custom(custom_names, custom_objects)
    if found is not None:
        return found
    if isinstance(name, str) and _names_builtins(config.get("module")):
        return table.get(name)
    return None


def deserialize_object(config, table, kind, custom_objects=None):
    """The object a Keras dict describes, looked up as ``_resolve`` says.

    Classes are rebuilt with ``from_config(config['config'])`` inside a custom_object_scope of
    ``custom_objects`` (so the objects they deserialize in turn see them too); a dict whose
    class_name is 'function' names a function. Anything unknown raises Keras' "Could not
    interpret" ValueError.
    """
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise unknown_identifier(kind, config)
    obj = _resolve(config, table, custom_objects)
    if obj is None or not callable(obj):
        raise unknown_identifier(kind, config)
    if not inspect.isclass(obj):  # a function, or one registered under a class name
        return obj
    inner = config.get("config")
    inner = {} if inner is None else inner
    if not isinstance(inner, dict) or not hasattr(obj, "from_config"):
        raise unknown_identifier(kind, config)
    with _Scope(custom_objects):
        return obj.from_config(dict(inner))


def lookup_name(identifier, table, custom_objects=None):
    """A string identifier: a caller-supplied object of that name, else the built-in, else None."""
    found = lookup_custom((identifier,), custom_objects)
    return found if found is not None else table.get(identifier)


def get_object(identifier, table, kind, custom_objects=None):
    """Keras' ``get`` for initializers, regularizers and constraints.

    None -> None; a dict is deserialized; a string is an exact name (caller-supplied objects,
    then ``table``); a class is instantiated with no arguments; any other callable is returned
    as is.
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        obj = deserialize_object(identifier, table, kind, custom_objects)
    elif isinstance(identifier, str):
        obj = lookup_name(identifier, table, custom_objects)
    else:
        obj = identifier
    if inspect.isclass(obj):
        obj = obj()
    if callable(obj):
        return obj
    raise unknown_identifier(kind, identifier)

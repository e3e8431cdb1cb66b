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
    "CustomObjectScope", "DeserializationError", "custom_object_scope", "deserialize_keras_object", "from_keras",
    "get_custom_objects", "get_registered_name", "get_registered_object", "load_model", "register_serializable",
    "save_model", "serialize_keras_object",
]


def from_keras(obj, custom_objects=None):
    """The gpuconv equivalent of a live Keras 3 layer or model, weights included
    (``gpuconv.keras_interop``)."""
    from .keras_interop import from_keras as convert

    return convert(obj, custom_objects=custom_objects)


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


# --------------------------------------------------------------------------------------------
# Model files: Keras 3 `.keras` archives (read and written) and Keras 2 `.h5` files (read)
# --------------------------------------------------------------------------------------------
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _file_kind(path):
    """'zip', 'hdf5' or None, from the file's first bytes (HDF5 may sit after a user block of
    512, 1024, 2048, ... bytes): the suffix of an untrusted file proves nothing."""
    with open(path, "rb") as f:
        head = f.read(8)
        if head[:4] in _ZIP_MAGIC:
            return "zip"
        offset = 0
        while True:
            if head == _HDF5_MAGIC:
                return "hdf5"
            offset = 512 if offset == 0 else offset * 2
            f.seek(offset)
            head = f.read(8)
            if len(head) < 8 or offset > (1 << 20):
                return None


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Keras' ``load_model``: a model from a Keras 3 ``.keras`` archive (or a directory saved with
    ``zipped=False``) or from a Keras 2 legacy ``.h5`` model file, told apart by their contents.

    Files are untrusted: nothing is unpickled, no module a file names is imported, and code
    stored in a file (``Lambda`` layers, Python lambdas) is refused. ``compile=True`` restores
    the optimizer, loss and metrics the file records.
    """
    import os

    from . import keras_archive, legacy_h5, weights_file

    path = weights_file._filepath(filepath)
    compile = weights_file._check_bool(compile, "compile")
    safe_mode = weights_file._check_bool(safe_mode, "safe_mode")
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise TypeError(f"Argument `custom_objects` must be a dict. Received: custom_objects={custom_objects!r}")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, keras_archive.CONFIG_FILENAME)):
            return keras_archive.load_directory(path, custom_objects, compile, safe_mode)
        raise ValueError(
            f"File format not supported: filepath={path} is a directory without a {keras_archive.CONFIG_FILENAME}."
        )
    if not os.path.exists(path):
        raise ValueError(
            f"File not found: filepath={path}. Please ensure the file is an accessible `.keras` zip file or `.h5` file."
        )
    if not os.path.isfile(path):
        raise ValueError(f"File format not supported: filepath={path} is not a regular file.")
    kind = _file_kind(path)
    if kind == "zip":
        return keras_archive.load_archive(path, custom_objects, compile, safe_mode)
    if kind == "hdf5":
        return legacy_h5.load_legacy_h5(path, custom_objects, compile, safe_mode)
    raise ValueError(
        f"File format not supported: filepath={path}. gpuconv loads Keras 3 `.keras` archives (zip) and Keras 2 "
        "legacy `.h5` model files (HDF5); this file is neither."
    )


def save_model(model, filepath, overwrite=True, zipped=None):
    """Keras' ``save_model``: ``model`` as a Keras 3 ``.keras`` archive that real Keras loads
    (``zipped=False``: a model directory)."""
    from . import keras_archive

    keras_archive.save_archive(model, filepath, overwrite=overwrite, zipped=zipped)

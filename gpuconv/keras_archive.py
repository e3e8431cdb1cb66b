"""Keras 3's ``.keras`` model archives: ``save_archive`` writes one, ``load_archive`` reads one.

The layout is Keras' own (keras/src/saving/saving_lib.py), so real Keras 3 loads what is written
here and the reverse. A ``.keras`` file is a zip of three members, stored uncompressed:

- ``metadata.json``: ``{"keras_version": "3.15.0", "date_saved": "2026-01-31@12:00:00"}``;
- ``config.json``: the model's serialized dict (``serialize_keras_object``) plus, at its top
  level, ``build_config`` and ``compile_config`` (``{}`` when not compiled: Keras' optimizer,
  loss and metric arguments, which ``compile=True`` replays through ``compile_from_config``);
- ``model.weights.h5``: the ``.weights.h5`` layout of ``gpuconv.weights_file``.

``zipped=False`` writes the same three files into a directory instead (Keras too).

Archives are untrusted. Before anything is read: member names that are absolute or climb with
'..' are refused, as is any member whose declared size is over a cap (config.json: 64 MiB) or
looks like a decompression bomb (Keras' rule). Before any object is built, the whole config is
walked: a Python lambda (``__lambda__``) or a ``Lambda`` layer is refused with Keras' safe-mode
message (gpuconv never runs code from a file, even with ``safe_mode=False``), and every layer
class must be one of gpuconv's or the caller's ("Could not locate class '...'"): no module a
config names is ever imported. Weights go through ``weights_file.read_h5`` (links refused, each
dataset checked against its variable before it is read).
"""
import datetime
import json
import os
import shutil
import tempfile
import uuid
import warnings
import zipfile

import numpy as np

from . import serialization as _s
from . import weights_file

__all__ = ["KERAS_VERSION", "load_archive", "load_directory", "model_from_config", "save_archive"]

KERAS_VERSION = "3.15.0"  # the Keras version gpuconv's files claim (the one it follows)
CONFIG_FILENAME = "config.json"
METADATA_FILENAME = "metadata.json"
WEIGHTS_FILENAME = "model.weights.h5"
_NPZ_WEIGHTS = "model.weights.npz"

_MAX_CONFIG_BYTES = 64 << 20  # far above any real model's config
_MAX_METADATA_BYTES = 1 << 20
_MAX_MEMBERS = 100_000
# Keras' decompression-bomb rule: a member that declares more than 4 GiB *and* more than 100x
# what it stores on disk. Keras itself stores members uncompressed.
_BOMB_FLOOR_BYTES = 1 << 32
_BOMB_MAX_EXPANSION = 100
_COPY_CHUNK = 1 << 20

_LAMBDA_LAYER_MESSAGE = (
    "Requested the deserialization of a `Lambda` layer whose `function` is a Python lambda. This carries a "
    "potential risk of arbitrary code execution and thus it is disallowed by default. If you trust the source "
    "of the artifact, you can override this error by passing `safe_mode=False` to the loading function, or "
    "calling `keras.config.enable_unsafe_deserialization()."
)
_LAMBDA_MESSAGE = (
    "Requested the deserialization of a Python lambda. This carries a potential risk of arbitrary code "
    "execution and thus it is disallowed by default. If you trust the source of the artifact, you can "
    "override this error by passing `safe_mode=False` to the loading function, or calling "
    "`keras.config.enable_unsafe_deserialization()."
)
_NO_CODE = (
    "gpuconv never runs code stored in a model file, even with `safe_mode=False`: rebuild the model in "
    "Python and load only its weights (`model.load_weights`)."
)


# ------------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------------
def _check_model(model):
    from .layers.base_layer import Layer

    if not isinstance(model, Layer) or not hasattr(model, "layers"):
        raise TypeError(f"Argument `model` must be a gpuconv model (Sequential or Model). Received: model={model!r}")


def _json_default(value):
    """NumPy scalars and arrays a config may hold become plain JSON values; nothing else does."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Cannot save a config value of type {type(value).__name__}: {value!r}")


def archive_config(model):
    """The ``config.json`` dict Keras writes for ``model``."""
    from .saving import serialize_keras_object

    config = serialize_keras_object(model)
    build = _build_config(model)
    if build is not None:
        config["build_config"] = build
    config["compile_config"] = model.get_compile_config() if hasattr(model, "get_compile_config") else {}
    return config


def _build_config(model):
    from .functional import Functional

    if isinstance(model, Functional):
        return {"input_shape": None}  # Keras: a functional model is built at construction
    shape = getattr(model, "_build_input_shape", None)
    if model.built and shape is not None:
        return {"input_shape": list(shape)}
    return None


def _metadata():
    return {"keras_version": KERAS_VERSION, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}


def save_archive(model, filepath, overwrite=True, zipped=None):
    """Write ``model`` as a Keras 3 ``.keras`` archive (``zipped=None`` or True; the path must end
    in ``.keras``) or, with ``zipped=False``, as a Keras model directory. The archive is written
    under a temporary name beside the target and then moved into place."""
    _check_model(model)
    filepath = weights_file._filepath(filepath)
    overwrite = weights_file._check_bool(overwrite, "overwrite")
    zipped = True if zipped is None else weights_file._check_bool(zipped, "zipped")
    if zipped and not filepath.endswith(".keras"):
        raise ValueError(f"Invalid `filepath` argument: expected a `.keras` extension. Received: filepath={filepath}")
    if not zipped and filepath.endswith(".keras"):
        raise ValueError(
            "When using `zipped=False`, the `filepath` argument should not end in `.keras`. "
            f"Received: filepath={filepath}"
        )
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(
            f"The file {filepath} already exists and `overwrite=False`. Pass `overwrite=True` to replace it."
        )
    if not model.built:
        warnings.warn(
            "You are saving a model that has not yet been built. It might not contain any weights yet. "
            "Consider building the model first by calling it on some data.",
            stacklevel=3,
        )
    config_json = json.dumps(archive_config(model), default=_json_default).encode("utf-8")
    metadata_json = json.dumps(_metadata()).encode("utf-8")
    directory = os.path.dirname(os.path.abspath(filepath))
    with tempfile.TemporaryDirectory(dir=directory, prefix=".gpuconv-save-") as work:
        weights_path = os.path.join(work, WEIGHTS_FILENAME)
        h5py = weights_file._h5py()
        with h5py.File(weights_path, "w") as f:
            if model.built:
                weights_file.write_h5(f, model)
        if zipped:
            _write_zip(filepath, directory, config_json, metadata_json, weights_path)
        else:
            _write_directory(filepath, config_json, metadata_json, weights_path)


def _write_zip(filepath, directory, config_json, metadata_json, weights_path):
    tmp = os.path.join(directory, f".{os.path.basename(filepath)}.{uuid.uuid4().hex}.tmp")
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the umask's mode
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(METADATA_FILENAME, metadata_json)
            zf.writestr(CONFIG_FILENAME, config_json)
            zf.write(weights_path, WEIGHTS_FILENAME)
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_directory(dirpath, config_json, metadata_json, weights_path):
    if os.path.exists(dirpath) and not os.path.isdir(dirpath):
        raise ValueError(f"Cannot save a model directory at {dirpath}: it exists and is not a directory.")
    os.makedirs(dirpath, exist_ok=True)
    for name, data in ((METADATA_FILENAME, metadata_json), (CONFIG_FILENAME, config_json)):
        with open(os.path.join(dirpath, name), "wb") as f:
            f.write(data)
    shutil.copyfile(weights_path, os.path.join(dirpath, WEIGHTS_FILENAME))


# ------------------------------------------------------------------------------------------------
# Loading: the archive
# ------------------------------------------------------------------------------------------------
def _check_member_names(zf, filepath):
    """Refuse archives whose member names could escape a directory (absolute, drive, '..')."""
    infos = zf.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise ValueError(f"Not allowed: the archive {filepath} has {len(infos)} members (more than {_MAX_MEMBERS}).")
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise ValueError(f"Not allowed: archive member {name!r} in {filepath} has an absolute path or '..'.")


def _member_info(zf, name, filepath, limit=None):
    """The member's ZipInfo after Keras' bomb check and gpuconv's size cap (declared sizes,
    checked before a byte is decompressed)."""
    info = zf.getinfo(name)
    if info.file_size > _BOMB_FLOOR_BYTES and info.file_size > _BOMB_MAX_EXPANSION * info.compress_size:
        raise ValueError(
            f"Not allowed: ZIP member '{name}' of {filepath} declares {info.file_size} bytes but only "
            f"{info.compress_size} are stored on disk; refusing to load a potential decompression bomb."
        )
    if limit is not None and info.file_size > limit:
        raise ValueError(
            f"Not allowed: ZIP member '{name}' of {filepath} declares {info.file_size} bytes, more than the "
            f"{limit} gpuconv reads for it."
        )
    return info


def _read_member(zf, name, filepath, limit):
    info = _member_info(zf, name, filepath, limit)
    with zf.open(info) as f:
        data = f.read(limit + 1)  # never more than the cap, whatever the stream holds
    if len(data) > limit:
        raise ValueError(f"Not allowed: ZIP member '{name}' of {filepath} holds more than {limit} bytes.")
    return data


def _parse_json(data, what, filepath):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"Invalid {what} in {filepath}: {type(e).__name__}: {str(e)[:200]}") from None


def _weights_limit(model):
    """At most what the model's variables hold, 16 times over (a compiled optimizer's slots and
    HDF5's overhead fit easily), plus 64 MiB: a small archive cannot make us write gigabytes."""
    held = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in getattr(model, "weights", []))
    return 16 * held + (64 << 20)


def load_archive(filepath, custom_objects=None, compile=True, safe_mode=True):
    """The model a ``.keras`` zip archive holds, with its weights (and compiled, when
    ``compile`` and the archive has a compile config)."""
    try:
        zf = zipfile.ZipFile(filepath, "r")
    except zipfile.BadZipFile as e:
        raise ValueError(f"Cannot read {filepath} as a `.keras` zip archive: {e}") from None
    with zf:
        _check_member_names(zf, filepath)
        names = set(zf.namelist())
        if CONFIG_FILENAME not in names:
            raise ValueError(f"Invalid `.keras` archive {filepath}: it has no {CONFIG_FILENAME}.")
        config = _parse_json(_read_member(zf, CONFIG_FILENAME, filepath, _MAX_CONFIG_BYTES), CONFIG_FILENAME, filepath)
        if METADATA_FILENAME in names:  # checked for sanity only (Keras does not read it back either)
            _parse_json(_read_member(zf, METADATA_FILENAME, filepath, _MAX_METADATA_BYTES), METADATA_FILENAME, filepath)
        model = model_from_config(config, custom_objects, compile, safe_mode)
        weights_name = _weights_member(names, filepath)
        info = _member_info(zf, weights_name, filepath)
        limit = _weights_limit(model)
        if info.file_size > limit:
            raise ValueError(
                f"Not allowed: ZIP member '{weights_name}' of {filepath} declares {info.file_size} bytes, more than "
                f"{limit} for a model whose variables hold {sum(w.numpy().nbytes for w in model.weights)} bytes."
            )
        with tempfile.TemporaryFile() as tmp:
            _copy_member(zf, info, tmp, limit, filepath)
            tmp.seek(0)
            _read_weights(model, tmp, filepath)
    return model


def _weights_member(names, filepath):
    if WEIGHTS_FILENAME in names:
        return WEIGHTS_FILENAME
    if _NPZ_WEIGHTS in names:
        raise ValueError(
            f"The archive {filepath} stores its weights as {_NPZ_WEIGHTS} (Keras' `weights_format='npz'`); "
            f"gpuconv reads {WEIGHTS_FILENAME} archives only. Re-save it with Keras' default `weights_format='h5'`."
        )
    raise ValueError(f"Invalid `.keras` archive {filepath}: expected a {WEIGHTS_FILENAME} member.")


def _copy_member(zf, info, out, limit, filepath):
    copied = 0
    with zf.open(info) as f:
        while True:
            chunk = f.read(_COPY_CHUNK)
            if not chunk:
                break
            copied += len(chunk)
            if copied > limit:
                raise ValueError(
                    f"Not allowed: ZIP member '{info.filename}' of {filepath} holds more than {limit} bytes."
                )
            out.write(chunk)


def _read_weights(model, source, filepath):
    h5py = weights_file._h5py()
    try:
        f = h5py.File(source, "r")
    except OSError as e:
        raise ValueError(f"Cannot read the weights of {filepath} as HDF5: {e}") from None
    with f:
        weights_file.read_h5(model, f)


def load_directory(dirpath, custom_objects=None, compile=True, safe_mode=True):
    """A model saved with ``zipped=False`` (a directory with config.json and model.weights.h5)."""
    config_path = os.path.join(dirpath, CONFIG_FILENAME)
    weights_path = os.path.join(dirpath, WEIGHTS_FILENAME)
    for path in (config_path, weights_path):
        if os.path.islink(path) or not os.path.isfile(path):
            raise ValueError(
                f"Invalid Keras model directory {dirpath}: {os.path.basename(path)} is missing or not a regular file."
            )
    if os.path.getsize(config_path) > _MAX_CONFIG_BYTES:
        raise ValueError(f"Not allowed: {config_path} is larger than {_MAX_CONFIG_BYTES} bytes.")
    with open(config_path, "rb") as f:
        config = _parse_json(f.read(_MAX_CONFIG_BYTES + 1), CONFIG_FILENAME, dirpath)
    model = model_from_config(config, custom_objects, compile, safe_mode)
    _read_weights(model, weights_path, dirpath)
    return model


# ------------------------------------------------------------------------------------------------
# Loading: the config
# ------------------------------------------------------------------------------------------------
def model_from_config(config, custom_objects=None, compile=True, safe_mode=True):
    """The model ``config.json`` describes, after the security walk; built from its
    ``build_config`` and compiled from its ``compile_config`` (when ``compile``)."""
    from .saving import deserialize_keras_object

    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"A model config must be a dict with a `class_name`. Received: {str(config)[:300]}")
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise TypeError(f"Argument `custom_objects` must be a dict. Received: custom_objects={custom_objects!r}")
    check_config(config, custom_objects, safe_mode)
    config = dict(config)
    compile_config = config.pop("compile_config", None)
    build_config = config.pop("build_config", None)
    model = deserialize_keras_object(config, custom_objects)
    if not hasattr(model, "layers"):
        raise ValueError(f"The config describes a {type(model).__name__}, not a model: {str(config)[:300]}")
    if not model.built and isinstance(build_config, dict) and build_config.get("input_shape") is not None:
        model.build(tuple(build_config["input_shape"]))
    if not model.built and getattr(model, "_build_input_shape", None) is not None:
        model.build(tuple(model._build_input_shape))  # a Sequential that starts with an Input (Keras builds it)
    if compile and isinstance(compile_config, dict) and compile_config:
        with _s._Scope(custom_objects):
            model.compile_from_config(_compile_objects(compile_config, custom_objects))
    return model


def _compile_objects(config, custom_objects):
    """The compile config with its serialized losses and metrics rebuilt as objects (Keras'
    ``compile_from_config`` deserializes the whole config first); names stay names."""
    from . import losses, metrics

    config = dict(config)
    for key, family in (("loss", losses), ("metrics", metrics), ("weighted_metrics", metrics)):
        if key in config:
            config[key] = _rebuild(config[key], family, custom_objects)
    return config


def _rebuild(value, family, custom_objects):
    if isinstance(value, dict) and isinstance(value.get("class_name"), str):
        return family.deserialize(value, custom_objects)
    if isinstance(value, dict):  # one spec per output name
        return {k: _rebuild(v, family, custom_objects) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebuild(v, family, custom_objects) for v in value]
    return value


def _model_classes():
    from .saving import model_classes

    return model_classes()


def _layer_table():
    from .models import _layer_classes

    return {**_layer_classes(), **_model_classes()}


def _class_of(entry, custom_objects, table):
    """The class a layer entry names (caller's objects first, then built-ins when its module is
    a built-in one), or None: the same rule deserialization applies."""
    return _s._resolve(entry, table, custom_objects)


def _is_lambda_function(value):
    if isinstance(value, dict) and value.get("class_name") == "__lambda__":
        return True
    # Keras 2 stored a lambda as [code, defaults, closure].
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)


def check_config(config, custom_objects=None, safe_mode=True):
    """Walk the whole config before anything is built: Python lambdas and Lambda layers are
    refused, and every layer class must resolve (else Keras' "Could not locate class")."""
    _check_layer(config, custom_objects, safe_mode, _layer_table(), top=True)  # Lambda layers: Keras' own message
    _refuse_lambdas(config, safe_mode)


def _refuse_lambdas(value, safe_mode, depth=0):
    if depth > 200:
        raise ValueError("Invalid model config: nested more than 200 levels deep.")
    if isinstance(value, dict):
        if value.get("class_name") == "__lambda__":
            unsafe = _LAMBDA_MESSAGE.split(" If you trust")[0] + " " + _NO_CODE
            raise ValueError(_LAMBDA_MESSAGE if safe_mode else unsafe)
        for item in value.values():
            _refuse_lambdas(item, safe_mode, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _refuse_lambdas(item, safe_mode, depth + 1)


def _not_located(entry):
    return _s.DeserializationError(
        f"Could not locate class '{entry.get('class_name')}'. Make sure custom classes and functions are "
        "decorated with `@gpuconv.saving.register_serializable()` or passed in `custom_objects`: gpuconv "
        f"never imports a module a config names. Full object config: {str(entry)[:500]}"
    )


def _check_layer(entry, custom_objects, safe_mode, table, top=False):
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ValueError(f"Each layer of a model config must be a serialized layer dict. Received: {str(entry)[:300]}")
    module = entry.get("module")
    if isinstance(module, str) and module.startswith("keras.src.ops"):
        return  # an array operation: functional_config resolves it from its own table only
    cls = _class_of(entry, custom_objects, table)
    if cls is None and entry["class_name"] == "Lambda":
        function = (entry.get("config") or {}).get("function") if isinstance(entry.get("config"), dict) else None
        if _is_lambda_function(function):
            raise ValueError(_LAMBDA_LAYER_MESSAGE if safe_mode else _NO_CODE)
    if cls is None:
        raise _not_located(entry)
    inner = entry.get("config")
    if isinstance(inner, dict) and isinstance(inner.get("layers"), list) and issubclass_safe(cls, _model_classes()):
        for layer in inner["layers"]:
            _check_layer(layer, custom_objects, safe_mode, table)
    elif top and not issubclass_safe(cls, _model_classes()) and not hasattr(cls, "layers"):
        raise ValueError(f"The config describes a {entry['class_name']}, not a model: {str(entry)[:300]}")


def issubclass_safe(cls, classes):
    return isinstance(cls, type) and any(issubclass(cls, c) for c in classes.values())

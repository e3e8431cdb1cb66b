"""Keras 2 legacy ``.h5`` model files, read: ``load_legacy_h5``.

A Keras 2 (tf.keras) ``model.save("m.h5")`` file is one HDF5 file with:

- root attribute ``model_config``: the model's config as JSON, in Keras 2's form: ``{"class_name",
  "config"}`` without ``module``; the first layer of a Sequential (or an InputLayer) carries
  ``batch_input_shape``; a functional layer's ``inbound_nodes`` are lists of calls, each a list
  of ``[layer name, node index, tensor index, kwargs]``; ``input_layers`` / ``output_layers``
  are lists of triples even for one tensor;
- root attribute ``training_config``: ``{"loss", "metrics", "weighted_metrics", "loss_weights",
  "optimizer_config": {"class_name", "config"}}`` when the model was compiled;
- group ``model_weights``: attribute ``layer_names``; one group per layer, whose attribute
  ``weight_names`` lists its weights (trainable first) as paths under that group
  (``dense/kernel:0``).

The config is converted to the Keras 3 form gpuconv reads (``convert_config``: Keras 2 keys that
Keras 3 renamed or dropped are mapped), then built exactly like a ``.keras`` archive's, with the
same security walk (``keras_archive.check_config``). Weights are matched as Keras 2 matched them:
in order, the model's layers that have weights against the file's layers that list weights.
Each dataset is reached without following links and checked (shape, dtype) against its variable
before it is read; nothing is assigned unless every layer fits. Optimizer state is not restored
(Keras 2's slot layout is not Keras 3's): a compiled model starts with a fresh optimizer.
"""
import json
import warnings

import numpy as np

from . import keras_archive
from . import weights_file

__all__ = ["convert_config", "convert_training_config", "load_legacy_h5"]

_MAX_ATTR_BYTES = 64 << 20
_MAX_NAMES = 1_000_000

# Keras 2 layer arguments Keras 3 renamed: {class name: {old: new}}.
_RENAMED = {
    "LeakyReLU": {"alpha": "negative_slope"},
}
# Keras 2 layer arguments Keras 3 dropped, with the value that means "feature unused": a file
# using a feature gpuconv (and Keras 3) lacks is refused rather than silently changed.
_DROPPED = {
    "BatchNormalization": {"fused": None, "virtual_batch_size": None, "adjustment": None},
}
_DROPPED_ANY_VALUE = {"BatchNormalization": {"fused"}}  # a kernel choice, not a different result
_FUNCTIONAL_NAMES = ("Functional", "Model")
# Keras 2 optimizer config keys Keras 3 no longer has.
_OPTIMIZER_DROPPED = ("jit_compile", "is_legacy_optimizer", "decay")


def _h5py():
    return weights_file._h5py()


# ------------------------------------------------------------------------------------------------
# Config conversion
# ------------------------------------------------------------------------------------------------
def _dtype(value):
    """Keras 2's dtype: a string, or a mixed-precision ``Policy`` dict (its name)."""
    if isinstance(value, dict) and value.get("class_name") in ("Policy", "DTypePolicy"):
        return (value.get("config") or {}).get("name")
    return value


def _layer_config(class_name, config):
    """A Keras 2 layer config in Keras 3's keys (a copy)."""
    if not isinstance(config, dict):
        raise ValueError(
            f"Invalid Keras 2 config for a {class_name} layer: expected a dict. Received: {str(config)[:300]}"
        )
    config = dict(config)
    if "dtype" in config:
        config["dtype"] = _dtype(config["dtype"])
    axis = config.get("axis")
    if isinstance(axis, list) and len(axis) == 1 and isinstance(axis[0], int):
        config["axis"] = axis[0]  # Keras 2 normalization layers stored [axis]
    for old, new in _RENAMED.get(class_name, {}).items():
        if old in config:
            if new in config:
                raise ValueError(f"The Keras 2 config of a {class_name} layer has both `{old}` and `{new}`.")
            config[new] = config.pop(old)
    for key, unused in _DROPPED.get(class_name, {}).items():
        if key not in config:
            continue
        value = config.pop(key)
        if key not in _DROPPED_ANY_VALUE.get(class_name, ()) and value != unused:
            raise ValueError(
                f"The Keras 2 {class_name} layer '{config.get('name')}' uses `{key}={value!r}`, which Keras 3 (and "
                "gpuconv) no longer support."
            )
    return config


def _input_entry(name, batch_shape, dtype):
    return {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
            "config": {"batch_shape": list(batch_shape), "dtype": _dtype(dtype) or "float32", "sparse": False,
                       "ragged": False, "name": name}}


def _entry(class_name, config):
    return {"module": "keras.layers", "class_name": class_name, "config": config, "registered_name": None}


def convert_config(entry):
    """A Keras 2 ``model_config`` (Sequential or functional) in the Keras 3 form gpuconv reads."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ValueError(f"A Keras 2 model config must be a dict with a `class_name`. Received: {str(entry)[:300]}")
    if "module" in entry:  # already Keras 3's form (an .h5 file written by Keras 3)
        return entry
    class_name = entry["class_name"]
    if class_name == "Sequential":
        return _convert_sequential(entry.get("config"))
    if class_name in _FUNCTIONAL_NAMES:
        return _convert_functional(entry.get("config"))
    return _convert_layer(entry)


def _convert_layer(entry):
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ValueError(
            f"Each layer of a Keras 2 model config must be a dict with a `class_name`. Received: {str(entry)[:300]}"
        )
    class_name = entry["class_name"]
    if class_name in ("Sequential",) + _FUNCTIONAL_NAMES:
        return convert_config(entry)
    if "module" in entry:  # already Keras 3's form (a .h5 file written by Keras 3)
        return dict(entry)
    config = _layer_config(class_name, entry.get("config"))
    if class_name == "InputLayer" and "batch_input_shape" in config:
        config["batch_shape"] = config.pop("batch_input_shape")
    converted = _entry(class_name, config)
    if isinstance(entry.get("registered_name"), str):
        converted["registered_name"] = entry["registered_name"]
    return converted


def _convert_sequential(config):
    if isinstance(config, list):  # Keras 2.0-2.1: the layers list itself
        config = {"layers": config}
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError(f"A Keras 2 Sequential config must hold a `layers` list. Received: {str(config)[:300]}")
    layers = []
    for i, layer in enumerate(config["layers"]):
        inner = layer.get("config") if isinstance(layer, dict) else None
        if isinstance(inner, dict) and "batch_input_shape" in inner and layer.get("class_name") != "InputLayer":
            inner = dict(inner)
            batch_shape = inner.pop("batch_input_shape")
            if i == 0 and batch_shape is not None:  # Keras 2 made this InputLayer itself
                layers.append(_input_entry(f"{inner.get('name', 'input')}_input", batch_shape, inner.get("dtype")))
            layer = {**layer, "config": inner}
        layers.append(_convert_layer(layer))
    out = {"name": config.get("name"), "trainable": config.get("trainable", True), "layers": layers}
    if "build_input_shape" in config and config["build_input_shape"] is not None:
        out["build_input_shape"] = config["build_input_shape"]
    return {"module": "keras", "class_name": "Sequential", "config": out, "registered_name": None}


def _history(triple, shifted):
    """[name, node, tensor] with a nested graph network's node renumbered (see ``_graph_networks``)."""
    if not (isinstance(triple, list) and len(triple) in (3, 4) and isinstance(triple[0], str)
            and isinstance(triple[1], int) and isinstance(triple[2], int)):
        raise ValueError(
            f"A Keras 2 tensor reference must be [layer name, node index, tensor index(, kwargs)]. Received: {triple!r}"
        )
    name, index = triple[0], triple[1]
    if name in shifted:
        if index < 1:
            raise ValueError(f"Invalid Keras 2 reference {triple!r}: node 0 of a nested model is its own graph.")
        index -= 1
    return [name, index, triple[2]]


def _convert_node(node, shifted):
    """Keras 2's ``[[name, node, tensor, kwargs], ...]`` call as Keras 3's ``{"args", "kwargs"}``
    (one tensor, or a list of them, as the layer was called)."""
    if isinstance(node, dict):  # already Keras 3's form
        return node
    if not isinstance(node, list) or not node:
        raise ValueError(f"A Keras 2 inbound node must be a non-empty list. Received: {node!r}")
    tensors = [{"class_name": "__keras_tensor__",
                "config": {"shape": None, "dtype": None, "keras_history": _history(t, shifted)}} for t in node]
    return {"args": [tensors[0] if len(tensors) == 1 else tensors], "kwargs": {}}


def _triples(value, what, shifted):
    """Keras 2's list of triples; one triple when the list holds one (Keras 2 returned a single
    tensor, not a list of one, for such models)."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return _history(value, shifted)
    if not isinstance(value, list) or not value:
        raise ValueError(f"Invalid `{what}` in a Keras 2 functional config: {value!r}")
    triples = [_history(v, shifted) for v in value]
    return triples[0] if len(triples) == 1 else triples


def _graph_networks(layers):
    """Names of the nested models Keras 2 built as graph networks: functional models, and
    Sequential models that start with an input. Keras 2 counted such a model's own graph as its
    node 0, so every reference to one is a call number + 1."""
    names = set()
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        class_name = layer.get("class_name")
        inner = layer.get("config")
        if class_name in _FUNCTIONAL_NAMES:
            names.add(layer.get("name"))
        elif class_name == "Sequential":
            inner_layers = inner.get("layers") if isinstance(inner, dict) else inner
            first = inner_layers[0] if isinstance(inner_layers, list) and inner_layers else None
            first_config = first.get("config") if isinstance(first, dict) else None
            if isinstance(first, dict) and (first.get("class_name") == "InputLayer" or (
                    isinstance(first_config, dict) and first_config.get("batch_input_shape") is not None)):
                names.add(layer.get("name"))
    return names


def _convert_functional(config):
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError(f"A Keras 2 functional config must hold a `layers` list. Received: {str(config)[:300]}")
    graphs = _graph_networks(config["layers"])
    functional = {layer.get("name") for layer in config["layers"]
                  if isinstance(layer, dict) and layer.get("class_name") in _FUNCTIONAL_NAMES}
    layers = []
    for layer in config["layers"]:
        converted = _convert_layer(layer)
        converted["name"] = layer.get("name", (converted.get("config") or {}).get("name"))
        converted["inbound_nodes"] = [_convert_node(n, graphs) for n in layer.get("inbound_nodes") or []]
        layers.append(converted)
    # Keras 3 still numbers a nested *functional* model's calls from 1 in output_layers
    # (keras_archive undoes that); a nested Sequential is no graph network in Keras 3.
    out = {"name": config.get("name"), "trainable": config.get("trainable", True), "layers": layers,
           "input_layers": _triples(config.get("input_layers"), "input_layers", graphs - functional),
           "output_layers": _triples(config.get("output_layers"), "output_layers", graphs - functional)}
    return {"module": "keras.src.models.functional", "class_name": "Functional", "config": out,
            "registered_name": "Functional"}


def convert_training_config(training_config):
    """Keras 2's ``training_config`` as ``compile`` arguments in Keras 3's form."""
    if not isinstance(training_config, dict):
        raise ValueError(f"Invalid Keras 2 training_config: expected a dict. Received: {str(training_config)[:300]}")
    optimizer = training_config.get("optimizer_config")
    if isinstance(optimizer, dict):
        opt_config = dict(optimizer.get("config") or {})
        if "lr" in opt_config and "learning_rate" not in opt_config:
            opt_config["learning_rate"] = opt_config.pop("lr")
        decay = opt_config.get("decay")
        if decay:
            warnings.warn(f"The Keras 2 optimizer's `decay={decay}` is no longer supported and is ignored.",
                          stacklevel=4)
        for key in _OPTIMIZER_DROPPED:
            opt_config.pop(key, None)
        class_name = optimizer.get("class_name")
        if isinstance(class_name, str) and class_name.startswith("Custom>"):
            class_name = class_name[len("Custom>"):]  # Keras 2.11's registered name for its built-ins
        optimizer = {"class_name": class_name, "config": opt_config}
    return {"optimizer": optimizer if optimizer is not None else "rmsprop",
            "loss": _convert_objects(training_config.get("loss")),
            "metrics": _convert_objects(training_config.get("metrics")),
            "weighted_metrics": _convert_objects(training_config.get("weighted_metrics")),
            "loss_weights": training_config.get("loss_weights")}


def _convert_objects(value):
    """Losses and metrics as tf.keras 2 serialized them: a ``MeanMetricWrapper`` becomes the name
    of the function it wraps, and a loss's ``reduction='auto'`` Keras 3's default."""
    if isinstance(value, list):
        return [_convert_objects(v) for v in value]
    if isinstance(value, dict) and isinstance(value.get("class_name"), str):
        config = value.get("config") if isinstance(value.get("config"), dict) else {}
        if value["class_name"] == "MeanMetricWrapper" and isinstance(config.get("fn"), str):
            return config["fn"]
        if config.get("reduction") == "auto":
            config = {**config, "reduction": "sum_over_batch_size"}
        return {**value, "config": config}
    if isinstance(value, dict):
        return {k: _convert_objects(v) for k, v in value.items()}
    return value


# ------------------------------------------------------------------------------------------------
# The file
# ------------------------------------------------------------------------------------------------
def _json_attr(f, name, filepath):
    if name not in f.attrs:
        return None
    value = f.attrs[name]
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value)
        if len(value) > _MAX_ATTR_BYTES:
            raise ValueError(
                f"Not allowed: the `{name}` attribute of {filepath} is larger than {_MAX_ATTR_BYTES} bytes."
            )
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"The `{name}` attribute of {filepath} is not UTF-8 text.") from None
    if not isinstance(value, str):
        raise ValueError(f"The `{name}` attribute of {filepath} must be JSON text. Received a {type(value).__name__}.")
    try:
        return json.loads(value)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"Invalid JSON in the `{name}` attribute of {filepath}: {str(e)[:200]}") from None


def _names_attr(group, name):
    """A list-of-strings attribute (Keras 2 splits long ones into ``name0``, ``name1``, ...)."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    else:
        chunks, i = [], 0
        while f"{name}{i}" in group.attrs and i < 10_000:
            chunks.append(group.attrs[f"{name}{i}"])
            i += 1
    names = []
    for chunk in chunks:
        values = np.atleast_1d(np.asarray(chunk))
        if values.size == 0:  # Keras 2 writes an empty list as an empty float array
            continue
        if values.dtype.kind not in "SUO" or values.ndim != 1:
            raise ValueError(f"Invalid `{name}` attribute at '{group.name}': expected a list of strings.")
        for value in values:
            if isinstance(value, (bytes, np.bytes_)):
                value = bytes(value).decode("utf-8", errors="strict")
            if not isinstance(value, str):
                raise ValueError(f"Invalid `{name}` attribute at '{group.name}': expected a list of strings.")
            names.append(value)
        if len(names) > _MAX_NAMES:
            raise ValueError(
                f"Not allowed: the `{name}` attribute at '{group.name}' lists more than {_MAX_NAMES} names."
            )
    return names


def _child(h5py, parent, path):
    """``parent[path]`` one component at a time, refusing links (weights_file's rule)."""
    node = parent
    for part in path.split("/"):
        if not part:
            continue
        if not isinstance(node, h5py.Group) or part not in node:
            raise ValueError(f"The file has no '{path}' under '{parent.name}'.")
        try:
            node = weights_file._link_target(h5py, node, part)
        except weights_file._Mismatch as e:
            raise ValueError(str(e)) from None
    return node


def _weighted_layers(model):
    """Keras 2's order: the model's layers that have weights, each as trainable + non-trainable."""
    layers = []
    for layer in model.layers:
        weights = list(layer.trainable_weights) + list(layer.non_trainable_weights)
        if weights:
            layers.append((layer, weights))
    return layers


def _plan_weights(h5py, group, model):
    file_layers = []
    for name in _names_attr(group, "layer_names"):
        layer_group = _child(h5py, group, name)
        if not isinstance(layer_group, h5py.Group):
            raise ValueError(f"Invalid legacy H5 file: '{layer_group.name}' is not a group.")
        weight_names = _names_attr(layer_group, "weight_names")
        if weight_names:
            file_layers.append((name, layer_group, weight_names))
    layers = _weighted_layers(model)
    if len(file_layers) != len(layers):
        raise ValueError(
            f"Layer count mismatch when loading weights from file. Model expected {len(layers)} layers, found "
            f"{len(file_layers)} saved layers."
        )
    plan = []
    for k, ((layer, variables), (name, layer_group, weight_names)) in enumerate(zip(layers, file_layers)):
        if len(weight_names) != len(variables):
            raise ValueError(
                f"Weight count mismatch for layer #{k} (named {layer.name} in the current model, {name} in the save "
                f"file). Layer expects {len(variables)} weight(s). Received {len(weight_names)} saved weight(s)"
            )
        for var, weight_name in zip(variables, weight_names):
            dataset = _child(h5py, layer_group, weight_name)
            plan.append((var, _checked_value(dataset, var, layer, h5py)))
    return plan


def _checked_value(dataset, var, layer, h5py):
    if not isinstance(dataset, h5py.Dataset):
        raise ValueError(f"Invalid legacy H5 file: expected a dataset at '{dataset.name}'.")
    if dataset.external or dataset.is_virtual:
        raise ValueError(f"Not allowed: H5 file with external or virtual dataset at '{dataset.name}'.")
    if dataset.shape is None or tuple(dataset.shape) != tuple(var.shape):
        raise ValueError(
            f"Shape mismatch in layer '{layer.name}' for weight {var.path}. Weight expects shape {tuple(var.shape)}. "
            f"Received saved weight with shape {dataset.shape}"
        )
    if dataset.dtype.fields is not None or dataset.dtype.kind not in "fiub":
        raise ValueError(f"Dataset '{dataset.name}' has dtype {dataset.dtype}, which cannot be assigned to {var.path}.")
    return np.asarray(dataset[()])


def load_legacy_h5(filepath, custom_objects=None, compile=True, safe_mode=True):
    """The model a Keras 2 ``.h5`` model file holds, with its weights (compiled from its
    training config when ``compile``)."""
    h5py = _h5py()
    try:
        f = h5py.File(filepath, "r")
    except OSError as e:
        raise ValueError(f"Cannot read {filepath} as an HDF5 file: {e}") from None
    with f:
        raw = _json_attr(f, "model_config", filepath)
        if raw is None:
            weights_only = "vars" in f or "layers" in f  # Keras 3's .weights.h5 layout
            hint = (" It looks like a weights-only file: build the model and call `model.load_weights`."
                    if weights_only else "")
            raise ValueError(f"No model config found in the file at {filepath}.{hint}")
        model = keras_archive.model_from_config(convert_config(raw), custom_objects, compile=False, safe_mode=safe_mode)
        if "model_weights" not in f:
            raise ValueError(f"Invalid legacy H5 file {filepath}: it has no `model_weights` group.")
        group = _child(h5py, f, "model_weights")
        if not isinstance(group, h5py.Group):
            raise ValueError(f"Invalid legacy H5 file {filepath}: `model_weights` is not a group.")
        plan = _plan_weights(h5py, group, model)
        training = _json_attr(f, "training_config", filepath) if compile else None
    for var, value in plan:
        var.assign(value)
    if compile and training is not None:
        from . import serialization as _s

        with _s._Scope(custom_objects):
            model.compile(**keras_archive._compile_objects(convert_training_config(training), custom_objects))
    return model


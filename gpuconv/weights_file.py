"""Keras 3's ``.weights.h5`` files for gpuconv models: ``save_weights`` and ``load_weights``.

A file written here loads into the same architecture in real Keras 3 (``model.load_weights``)
and the reverse, so the layout is Keras' own (keras/src/saving/saving_lib.py), found by writing
files with Keras and listing them with h5py:

- every object with state gets a group ``<path>/vars`` carrying the attribute ``name`` (the
  object's ``name``), holding one dataset per variable named ``"0"``, ``"1"``, ... in the
  layer's order (trainable variables first). Weightless layers get the empty group too; the
  model itself is the root (``/vars``, no datasets);
- a model's layers live under ``<path>/layers/<name>``, where ``<name>`` is the snake_case
  *class* name, numbered among its siblings (``conv2d``, ``conv2d_1``): the layers' own
  names are not part of the path, only of the ``name`` attribute. A nested model repeats the
  pattern (``layers/sequential/layers/dense``);
- a compiled model's optimizer is ``<path>/optimizer/vars`` with ``optimizer.variables``.

Loading walks the model, not the file: groups the model has no object for are ignored, and a
missing group reads as an empty one. A layer whose variable count or shapes disagree with the
file is an error naming the layer and the shapes (Keras' texts); with ``skip_mismatch=True``
it is skipped with a warning instead. Unlike Keras, nothing is assigned when loading fails,
and an optimizer's variables are checked all together before any is assigned, so a failed or
partial load never leaves a model half-overwritten or an optimizer misassigned. An optimizer
whose variable count differs from the file's (typically one not built yet) is skipped with
Keras' warning.

Files are untrusted: only groups, datasets and the attributes written here are touched with
h5py; soft, external and virtual links are refused; a dataset is read only after its shape and
dtype are checked against the variable it is for, so no file can make us allocate more than
the model already holds. Nothing is ever unpickled.

``read_h5`` / ``write_h5`` do the same on an open ``h5py.File`` (a ``.keras`` archive's
``model.weights.h5`` member, ``gpuconv.keras_archive``).

The walk (``weight_entries``) lists ``(path in file, object)`` pairs; any model-like object
with a ``layers`` list (Sequential today, a functional ``Model`` later) needs nothing else.
"""
import os
import uuid
import warnings

import numpy as np

from . import arrays as _arrays
from . import dtypes as _dtypes
from .serialization import to_snake_case

__all__ = ["load_weights", "read_h5", "save_weights", "weight_entries", "write_h5"]

_SUFFIX = ".weights.h5"
# A model's attributes that hold its layers a second time (the walk reaches them via `layers`).
_MODEL_INTERNALS = frozenset({"_layers", "_input_layer", "optimizer", "_optimizer"})


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise ImportError(
            "Saving and loading `.weights.h5` files requires the h5py package. Install it with "
            "`pip install h5py` (or `pip install gpuconv[training]`)."
        ) from e
    return h5py


# ------------------------------------------------------------------------------------------------
# What goes where
# ------------------------------------------------------------------------------------------------
def weight_entries(model):
    """``[(path, obj)]``: every object whose variables go into the file, depth first in Keras'
    order. ``path`` is the group above ``vars`` ("" for the model itself); ``obj`` is a layer, a
    model or an optimizer. An object reachable twice is listed once, at its first path."""
    entries = []
    _walk(model, "", entries, set())
    return entries


def _join(*parts):
    return "/".join(p for p in parts if p)


def _name_key(attr):
    return "~" + attr if attr.startswith("_") else attr  # Keras: private attributes last


def _unique(name, used):
    """Keras' sibling numbering: conv2d, conv2d_1, conv2d_2, ..."""
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _is_layer(obj):
    from .layers.base_layer import Layer

    return isinstance(obj, Layer)


def _walk(obj, path, entries, visited):
    if id(obj) in visited:
        return
    visited.add(id(obj))
    entries.append((path, obj))
    layers = getattr(obj, "layers", None) if _is_layer(obj) else None
    skip = ()
    if isinstance(layers, (list, tuple)):  # a model: its layers first, then its optimizer
        skip = _MODEL_INTERNALS
        _walk_container(layers, _join(path, "layers"), entries, visited, set())
        optimizer = getattr(obj, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "variables") and id(optimizer) not in visited:
            visited.add(id(optimizer))
            entries.append((_join(path, "optimizer"), optimizer))
    # Sub-layers a custom layer (or model subclass) keeps as attributes: Keras walks them too.
    for attr in sorted(vars(obj), key=_name_key):
        if attr in skip:
            continue
        value = vars(obj)[attr]
        if _is_layer(value):
            _walk(value, _join(path, attr), entries, visited)
        elif isinstance(value, (list, tuple, dict)):
            _walk_container(value, _join(path, attr), entries, visited, set())


def _walk_container(container, path, entries, visited, seen_containers):
    if id(container) in seen_containers:
        return
    seen_containers.add(id(container))
    used = {}
    for item in (container.values() if isinstance(container, dict) else container):
        if _is_layer(item):
            # The class name, not the layer's name: names are generated per process, the
            # architecture is what two equal models share.
            _walk(item, _join(path, _unique(to_snake_case(type(item).__name__), used)), entries, visited)
        elif isinstance(item, (list, tuple, dict)):
            _walk_container(item, _join(path, _unique("container", used)), entries, visited, seen_containers)


def _own_variables(layer):
    """The layer's variables in Keras' file order: trainable ones first, each in creation order."""
    own = list(getattr(layer, "_weights", ()))
    return [v for v in own if v.trainable] + [v for v in own if not v.trainable]


def _lora_on(layer):
    return bool(getattr(layer, "lora_enabled", False))


def _lora_targets(layer):
    """A LoRA layer stores (and loads into) the frozen kernel and the bias only (Keras)."""
    bias = getattr(layer, "bias", None)
    return [layer._kernel] + ([bias] if bias is not None else [])


def _values_to_save(obj):
    if not _is_layer(obj):  # an optimizer
        return [v.numpy() for v in obj.variables]
    if _lora_on(obj):  # Keras saves the merged kernel, so the file loads without LoRA
        return [np.asarray(_arrays.to_numpy(obj.kernel))] + [v.numpy() for v in _lora_targets(obj)[1:]]
    return [v.numpy() for v in _own_variables(obj)]


# ------------------------------------------------------------------------------------------------
# Arguments
# ------------------------------------------------------------------------------------------------
def _filepath(filepath):
    if isinstance(filepath, os.PathLike):
        filepath = os.fspath(filepath)
    if not isinstance(filepath, str):
        raise TypeError(f"Argument `filepath` must be a string or a path-like object. Received: filepath={filepath!r}")
    return filepath


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Argument `{name}` must be a boolean. Received: {name}={value!r}")
    return bool(value)


def _check_built(model, action):
    if not _is_layer(model):
        raise TypeError(f"Argument `model` must be a gpuconv model or layer. Received: model={model!r}")
    if not model.built:
        raise ValueError(
            f"You are {action} a model that has not yet been built. Try building the model first by "
            "calling it on some data or by using `build()`."
        )


# ------------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------------
def save_weights(model, filepath, overwrite=True):
    """Write ``model``'s weights (and its optimizer's variables, if it has one) to ``filepath``,
    which must end in ``.weights.h5``, in Keras 3's layout. The file is written next to the
    target under a temporary name and then moved into place, so an interrupted save never
    leaves a truncated file where a good one was. ``overwrite=False`` refuses an existing file
    (Keras asks on the terminal instead; a training script cannot answer)."""
    filepath = _filepath(filepath)
    overwrite = _check_bool(overwrite, "overwrite")
    if not filepath.endswith(_SUFFIX):
        raise ValueError(f"The filename must end in `.weights.h5`. Received: filepath={filepath}")
    _check_built(model, "saving")
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(
            f"The file {filepath} already exists and `overwrite=False`. Pass `overwrite=True` to replace it."
        )
    h5py = _h5py()
    entries = [(path, obj, _values_to_save(obj)) for path, obj in weight_entries(model)]
    directory = os.path.dirname(os.path.abspath(filepath))
    tmp = os.path.join(directory, f".{os.path.basename(filepath)}.{uuid.uuid4().hex}.tmp")
    try:
        # Created first with os.open so the file gets the mode the user's umask gives new files.
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        with h5py.File(tmp, "w") as f:
            _write_entries(f, entries)
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_h5(f, model):
    """Write ``model``'s weights into the open, empty ``h5py.File`` ``f`` (the ``model.weights.h5``
    member of a ``.keras`` archive uses this too)."""
    _check_built(model, "saving")
    _write_entries(f, [(path, obj, _values_to_save(obj)) for path, obj in weight_entries(model)])


def _write_entries(f, entries):
    for path, obj, values in entries:
        _write_entry(f, path, getattr(obj, "name", None), values)


def _write_entry(f, path, name, values):
    """One object's ``vars`` group: created when it has a name (even without variables, as Keras
    does for weightless layers) or when there is something to store."""
    if not isinstance(name, str) and not values:
        return
    group = f.create_group(_join(path, "vars"))
    if isinstance(name, str):
        group.attrs["name"] = name
    for i, value in enumerate(values):
        _write_value(group, str(i), np.asarray(value))


# Keras writes a bfloat16 variable as h5py makes of ml_dtypes' void-kind dtype, an opaque 2-byte
# dataset, tagged with the attribute dtype="bfloat16" by which it reads it back as bfloat16.
_DTYPE_ATTR = "dtype"


def _write_value(group, key, value):
    group[key] = value
    if _dtypes.is_bfloat16(value.dtype):
        group[key].attrs[_DTYPE_ATTR] = _dtypes.BFLOAT16_NAME


def _is_tagged_bfloat16(dataset):
    """Whether ``dataset`` is a bfloat16 variable as Keras (and gpuconv) write one."""
    tag = dataset.attrs.get(_DTYPE_ATTR)
    tag = tag.decode() if isinstance(tag, bytes) else tag
    return tag == _dtypes.BFLOAT16_NAME and dataset.dtype.kind == "V" and dataset.dtype.itemsize == 2


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------
class _Mismatch(Exception):
    """One object's reason for not loading (collected, reported all together as Keras does)."""


def load_weights(model, filepath, skip_mismatch=False):
    """Assign the weights a ``.weights.h5`` file holds (written by gpuconv or by Keras 3) to the
    same architecture's variables. Layers whose variables do not match the file raise a
    ValueError naming them, before anything is assigned; with ``skip_mismatch=True`` they keep
    their values, the rest is loaded and a warning lists them."""
    filepath = _filepath(filepath)
    skip_mismatch = _check_bool(skip_mismatch, "skip_mismatch")
    if not filepath.endswith(_SUFFIX):
        raise ValueError(
            f"File format not supported: filepath={filepath}. gpuconv loads weights from Keras 3's "
            "`.weights.h5` files only."
        )
    _check_built(model, "loading weights into")
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No such weights file: {filepath}")
    if not os.path.isfile(filepath):
        raise ValueError(f"Expected a `.weights.h5` file, but {filepath} is not a regular file.")
    h5py = _h5py()
    try:
        f = h5py.File(filepath, "r")
    except OSError as e:
        raise ValueError(f"Cannot read {filepath} as an HDF5 (`.weights.h5`) file: {e}") from e
    with f:
        read_h5(model, f, skip_mismatch=skip_mismatch, _stacklevel=3)


def read_h5(model, f, skip_mismatch=False, _stacklevel=2):
    """Assign the weights the open ``h5py.File`` ``f`` holds (Keras 3's layout) to ``model``:
    everything is checked before anything is assigned (``load_weights``' rules)."""
    h5py = _h5py()
    plan, failures = [], []
    for path, obj in weight_entries(model):
        try:
            plan.extend(_plan_entry(h5py, f, path, obj))
        except _Mismatch as e:
            failures.append((obj, str(e)))
    if failures and not skip_mismatch:
        raise ValueError(_failure_message(failures))
    for var, value in plan:
        var.assign(value)
    if failures:
        warnings.warn(_failure_message(failures), stacklevel=_stacklevel)


def _failure_message(failures):
    """Keras' report: how many objects failed, the first one's reason, the list of them."""
    first, reason = failures[0]
    return (
        f"A total of {len(failures)} objects could not be loaded. Example error message for object {first!r}:\n\n"
        f"{reason}\n\nList of objects that could not be loaded:\n{[obj for obj, _ in failures]!r}"
    )


def _plan_entry(h5py, f, path, obj):
    """[(variable, array)] to assign for one object; raises _Mismatch when its entry does not fit."""
    group = _vars_group(h5py, f, path)
    count = 0 if group is None else len(group)
    if not _is_layer(obj):
        return _plan_optimizer(h5py, group, count, obj)
    if _lora_on(obj):
        # Keras loads the frozen kernel and the bias without counting, then restarts the adapters.
        plan = _read_into(h5py, group, _lora_targets(obj))
        return plan + [(v, np.zeros(v.shape, v.dtype)) for v in (obj.lora_kernel_a, obj.lora_kernel_b)]
    own = _own_variables(obj)
    if count != len(own):
        if not own and not obj.built:
            raise _Mismatch(
                f"Layer '{obj.name}' was never built and thus it doesn't have any variables. "
                f"However the weights file lists {count} variables for this layer."
            )
        raise _Mismatch(
            f"Layer '{obj.name}' expected {len(own)} variables, but received {count} variables during loading. "
            f"Expected: {[v.name for v in own]}"
        )
    return _read_into(h5py, group, own)


def _plan_optimizer(h5py, group, count, optimizer):
    variables = list(optimizer.variables)
    if count != len(variables):
        msg = (
            f"Skipping variable loading for optimizer '{getattr(optimizer, 'name', type(optimizer).__name__)}', "
            f"because it has {len(variables)} variables whereas the saved optimizer has {count} variables. "
        )
        if not variables:
            msg += "This is likely because the optimizer has not been called/built yet."
        warnings.warn(msg, stacklevel=4)
        return []
    return _read_into(h5py, group, variables)


def _read_into(h5py, group, variables):
    """Each variable's dataset ("0", "1", ...), checked against it before it is read."""
    plan = []
    for i, var in enumerate(variables):
        dataset = _dataset(h5py, group, str(i))
        shape = dataset.shape
        if shape is None or tuple(shape) != tuple(var.shape):
            raise _Mismatch(
                "The shape of the target variable and the shape of the target value in `variable.assign(value)` "
                f"must match. variable.shape={tuple(var.shape)}, Received: value.shape={shape}. "
                f"Target variable: {var!r}"
            )
        if _is_tagged_bfloat16(dataset):
            plan.append((var, np.asarray(dataset[()]).view(_dtypes.bfloat16())))
            continue
        dtype = dataset.dtype
        if dtype.fields is not None or dtype.kind not in "fiub":
            raise _Mismatch(
                f"Dataset '{dataset.name}' has dtype {dtype}, which cannot be assigned to variable {var!r}: "
                "expected a real number array."
            )
        plan.append((var, np.asarray(dataset[()])))
    return plan


def _link_target(h5py, parent, name):
    """``parent[name]`` after refusing soft and external links (a file must not point elsewhere)."""
    link = parent.get(name, default=None, getclass=True, getlink=True)
    if link in (h5py.SoftLink, h5py.ExternalLink):
        raise _Mismatch(f"Not allowed: H5 file with {link.__name__} at '{parent.name}/{name}'.")
    return parent[name]


def _vars_group(h5py, f, path):
    """The ``vars`` group under ``path``, or None when the file has none (read as empty, as Keras
    does). Keras 2.13 files named the layers group ``_layer_checkpoint_dependencies``."""
    for candidate in (path, path.replace("layers", "_layer_checkpoint_dependencies")):
        group = f
        for part in (_join(candidate, "vars")).split("/"):
            if not isinstance(group, h5py.Group) or part not in group:
                group = None
                break
            group = _link_target(h5py, group, part)
        if group is not None:
            if not isinstance(group, h5py.Group):
                raise _Mismatch(f"Invalid H5 file: expected a group at '{group.name}', found {type(group).__name__}.")
            return group
        if "_layer_checkpoint_dependencies" not in f:
            return None
    return None


def _dataset(h5py, group, key):
    if group is None or key not in group:
        raise _Mismatch(f"The weights file has no dataset '{key}' under '{'' if group is None else group.name}'.")
    dataset = _link_target(h5py, group, key)
    if not isinstance(dataset, h5py.Dataset):
        raise _Mismatch(f"Invalid H5 file: expected a dataset at '{dataset.name}', found {type(dataset).__name__}.")
    if dataset.external:
        raise _Mismatch(f"Not allowed: H5 file with external dataset at '{dataset.name}'.")
    if dataset.is_virtual:
        raise _Mismatch(f"Not allowed: H5 file with virtual dataset at '{dataset.name}'.")
    return dataset

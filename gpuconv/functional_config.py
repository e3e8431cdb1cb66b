"""Keras 3's functional config, written from and read into a ``Functional`` model.

A config lists the model's operations in Keras' order; each entry is the operation's serialized
dict plus ``name``, ``build_config`` (layers) and ``inbound_nodes``: one ``{"args", "kwargs"}``
per call inside this model, where a symbolic tensor is
``{"class_name": "__keras_tensor__", "config": {"shape", "dtype", "keras_history": [operation
name, node index, tensor index]}}``. ``input_layers`` / ``output_layers`` hold the same
``[name, node, tensor]`` triples in the structure the model was given.

Reading is Keras' ``functional_from_config``: operations are created in order, then their
calls are replayed on the symbolic tensors they need, postponing a call whose inputs are not
made yet (a shared layer called at several depths) until a pass makes no progress. Names in a
config resolve only through gpuconv's tables and the caller's objects (``serialization``): an
array operation's class only from ``symbolic_ops.OPERATIONS``.
"""
from .layers import symbolic as _symbolic
from .layers.base_layer import Layer
from .layers.symbolic import SymbolicTensor
from .layers.symbolic_ops import OPERATIONS, SymbolicOperation
from .serialization import _Scope, deserialize_object, serialize_object

__all__ = ["from_config", "get_config", "serialize_operation"]

_KERAS_TENSOR = "__keras_tensor__"
_FUNCTIONAL_MODULE = "keras.src.models.functional"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def serialize_operation(operation):
    """The dict Keras writes for a layer, a model or an array operation inside a model."""
    from .functional import Functional
    from .models import Sequential

    if isinstance(operation, SymbolicOperation):
        name = type(operation).__name__
        return {"module": operation.module, "class_name": name, "config": operation.get_config(), "registered_name": name}
    if isinstance(operation, Functional) and type(operation) is Functional:
        return {"module": _FUNCTIONAL_MODULE, "class_name": "Functional", "config": operation.get_config(),
                "registered_name": "Functional"}
    if isinstance(operation, Sequential):
        return serialize_object(operation, "keras")
    return serialize_object(operation, "keras.layers")


def _tensor_entry(model, tensor):
    operation, node_index, tensor_index = model._history_in_model(tensor)
    return {"class_name": _KERAS_TENSOR,
            "config": {"shape": list(tensor.shape), "dtype": tensor.dtype,
                       "keras_history": [operation.name, node_index, tensor_index]}}


def _node_entry(model, node):
    encode = (lambda a: _tensor_entry(model, a) if isinstance(a, SymbolicTensor) else a)
    return {"args": _symbolic.map_structure(encode, list(node.args)),
            "kwargs": _symbolic.map_structure(encode, dict(node.kwargs))}


def _build_config(operation):
    from .layers.core import InputLayer

    if isinstance(operation, InputLayer) or not isinstance(operation, Layer) or getattr(operation, "_built_at_init", False):
        return None
    shapes = getattr(operation, "_build_shapes", None)
    if shapes is None:
        return None
    return {"input_shape": _symbolic.map_structure(lambda d: d, list(shapes) if isinstance(shapes, list) else shapes)}


def _is_functional(operation):
    from .functional import Functional

    return isinstance(operation, Functional)


def _triple(model, tensor, output=False):
    """[name, node, tensor]. In ``output_layers`` Keras numbers a nested functional model's
    calls from 1 (its own graph is its node 0 there; in ``inbound_nodes`` it is not counted)."""
    operation, node_index, tensor_index = model._history_in_model(tensor)
    shift = 1 if output and _is_functional(operation) else 0
    return [operation.name, node_index + shift, tensor_index]


def get_config(model):
    from .layers.core import InputLayer

    layers = []
    for operation in model._operations:
        entry = serialize_operation(operation)
        build = _build_config(operation)
        if build is not None:
            entry["build_config"] = build
        entry["name"] = operation.name
        nodes = [n for n in operation._inbound_nodes if n in model._nodes]
        entry["inbound_nodes"] = [] if isinstance(operation, InputLayer) else [_node_entry(model, n) for n in nodes]
        layers.append(entry)

    def triples(structure, outputs=False):
        if isinstance(structure, SymbolicTensor):
            return _triple(model, structure, outputs)
        if isinstance(structure, dict):
            return {k: triples(v, outputs) for k, v in structure.items()}
        return [triples(v, outputs) for v in structure]

    return {"name": model.name, "trainable": model.trainable, "layers": layers,
            "input_layers": triples(model._inputs_struct), "output_layers": triples(model._outputs_struct, True)}


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def _operation_from_entry(entry, custom_objects):
    from .models import _layer_classes
    from .saving import model_classes

    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ValueError(f"Each entry of a functional config's `layers` must be a serialized layer dict. Received: {entry!r}")
    module = entry.get("module")
    if isinstance(module, str) and module.startswith("keras.src.ops"):
        cls = OPERATIONS.get(entry["class_name"])
        if cls is None:
            raise ValueError(
                f"Could not locate class '{entry['class_name']}' (operation of module {module!r}): gpuconv records "
                f"{sorted(OPERATIONS)} from functional configs."
            )
        return cls.from_config(dict(entry.get("config") or {}))
    table = {**_layer_classes(), **model_classes()}
    return deserialize_object(entry, table, "layer", custom_objects)


class _Pending(Exception):
    """A call whose inputs are not made yet."""


def _decode(value, made):
    """A node's arguments with each ``__keras_tensor__`` replaced by the tensor it names."""
    if isinstance(value, dict) and value.get("class_name") == _KERAS_TENSOR:
        history = (value.get("config") or {}).get("keras_history")
        return _lookup(history, made)
    if isinstance(value, dict):
        return {k: _decode(v, made) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, made) for v in value]
    return value


def _lookup(history, made):
    if not (isinstance(history, (list, tuple)) and len(history) == 3):
        raise ValueError(f"A `keras_history` entry must be [name, node_index, tensor_index]. Received: {history!r}")
    name, node_index, tensor_index = history
    outputs = made.get((name, node_index))
    if outputs is None:
        raise _Pending
    if not isinstance(tensor_index, int) or not 0 <= tensor_index < len(outputs):
        raise ValueError(f"keras_history {history!r} names output {tensor_index} of a call with {len(outputs)} outputs.")
    return outputs[tensor_index]


def _replay(operation, node_data, made):
    """Call ``operation`` as ``node_data`` records; returns its output tensors, or raises
    ``_Pending`` if an input is not made yet."""
    if not isinstance(node_data, dict):  # Keras 2's [[name, node, tensor, kwargs], ...] lists
        raise ValueError(f"An inbound node must be a dict with 'args' and 'kwargs'. Received: {node_data!r}")
    args = _decode(list(node_data.get("args") or []), made)
    if isinstance(operation, SymbolicOperation):
        result = operation(*args)
    else:
        if not args:
            raise ValueError(f"Layer '{operation.name}' has an inbound node with no arguments.")
        result = operation(args[0])
    return list(result) if isinstance(result, list) else [result]


def _structure(value, made, what, functional_names=()):
    """``input_layers`` / ``output_layers``: a triple, or a list / dict of them, as tensors
    (``functional_names``: the nested functional models, numbered from 1 in ``output_layers``)."""
    if isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str):
        if value[0] in functional_names and isinstance(value[1], int):
            value = [value[0], value[1] - 1, value[2]]
        try:
            return _lookup(value, made)
        except _Pending:
            raise ValueError(f"`{what}` names {value[0]!r}, which the config does not make.") from None
    if isinstance(value, dict):
        return {k: _structure(v, made, what, functional_names) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_structure(v, made, what, functional_names) for v in value]
    raise ValueError(f"Invalid `{what}` entry in a functional config: {value!r}")


def from_config(cls, config, custom_objects=None):
    from .layers.core import InputLayer

    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError(f"A functional config is a dict with a `layers` list. Received: {config!r}"[:500])
    made = {}  # (operation name, node index) -> output tensors
    pending = []  # (operation, node index, node data)
    functional_names = set()
    with _Scope(custom_objects):
        for entry in config["layers"]:
            operation = _operation_from_entry(entry, custom_objects)
            name = entry.get("name", operation.name)
            if _is_functional(operation):
                functional_names.add(name)
            if isinstance(operation, InputLayer):
                made[(name, 0)] = [operation.output]
            for index, node_data in enumerate(entry.get("inbound_nodes") or []):
                pending.append((operation, name, index, node_data))
        while pending:
            waiting = []
            for item in pending:
                operation, name, index, node_data = item
                if any(key[0] == name and key[1] < index and key not in made for key in _expected(name, index)):
                    waiting.append(item)
                    continue
                try:
                    made[(name, index)] = _replay(operation, node_data, made)
                except _Pending:
                    waiting.append(item)
            if len(waiting) == len(pending):
                names = [item[1] for item in waiting]
                raise ValueError(f"The functional config cannot be connected: the calls of {names} need tensors it never makes.")
            pending = waiting
        inputs = _structure(config.get("input_layers"), made, "input_layers")
        outputs = _structure(config.get("output_layers"), made, "output_layers", functional_names)
    return cls(inputs=inputs, outputs=outputs, name=config.get("name"), trainable=config.get("trainable", True))


def _expected(name, index):
    """A shared layer's earlier calls must be replayed first (node indices follow call order)."""
    return [(name, i) for i in range(index)]

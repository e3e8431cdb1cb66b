"""Functional models: ``gpuconv.Model(inputs, outputs)`` over a graph of layer calls.

The graph is the nodes recorded when layers were called on symbolic tensors
(``gpuconv.layers.symbolic``). It is mapped as Keras 3 maps it (keras/src/ops/function.py), so
``model.layers``, the order of the weights, the layer paths in a ``.weights.h5`` file and the
functional config agree with Keras':

- a depth-first walk from each output lists the nodes inputs-to-outputs and the order in which
  operations are first met;
- a node's depth is the longest path from it to an output; operations are listed by
  decreasing depth, ties in order of first meeting;
- every input a node needs must be computable from the model's inputs ("Graph disconnected"),
  and operation names must be unique.

Calling the model runs the nodes in the walk's order (inputs before the nodes that read them);
``get_config`` / ``from_config`` use Keras' functional config (``inbound_nodes`` with
``__keras_tensor__`` references, ``input_layers`` / ``output_layers``).
"""
import numpy as np

from . import arrays as _arrays
from .layers import symbolic as _symbolic
from .layers.base_layer import Layer, unique_name
from .layers.core import InputLayer
from .layers.symbolic import SymbolicTensor
from .model import Model, _param_cell

__all__ = ["Functional"]


def _check_tensors(structure, what):
    for leaf in _symbolic.flatten(structure):
        if not isinstance(leaf, SymbolicTensor):
            raise ValueError(
                f"All `{what}` values must be symbolic tensors (from `gpuconv.Input` or a layer called on one). "
                f"Received: {what}={structure!r} (including {leaf!r} of type {type(leaf).__name__})"
            )


def _node_of(tensor):
    operation, node_index, _ = tensor._history
    return operation._inbound_nodes[node_index]


def _walk(inputs, outputs):
    """Keras' ``_build_map``: (nodes inputs-to-outputs, {operation: order first met})."""
    finished, in_progress, ordered, first_met = set(), set(), [], {}
    input_ids = {id(t) for t in inputs}

    def visit(tensor):
        if tensor._history is None:
            raise ValueError(f"The tensor {tensor!r} was not produced by a layer or an Input.")
        node = _node_of(tensor)
        if node in finished:
            return
        if not node.is_input and id(tensor) in input_ids:  # an input cut from a larger graph
            finished.add(node)
            return
        if node in in_progress:
            raise ValueError(f"Tensor {tensor!r} from operation '{node.operation.name}' is part of a cycle.")
        first_met.setdefault(node.operation, len(first_met))
        in_progress.add(node)
        for parent in node.inputs:
            visit(parent)
        finished.add(node)
        in_progress.discard(node)
        ordered.append(node)

    for output in outputs:
        visit(output)
    return ordered, first_met


def _map_graph(inputs, outputs):
    """(nodes in run order, operations in Keras' order, {node: depth}), with Keras' checks."""
    ordered, first_met = _walk(inputs, outputs)
    in_graph = set(ordered)
    node_depth, op_depth = {}, {}
    for node in reversed(ordered):
        depth = max(node_depth.setdefault(node, 0), op_depth.get(node.operation, 0))
        op_depth[node.operation] = depth
        node_depth[node] = depth
        for parent in node.parents:
            if parent in in_graph:
                node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    for tensor in inputs:
        node = _node_of(tensor)
        if node.operation not in op_depth and node.is_input:
            op_depth[node.operation], first_met[node.operation], node_depth[node] = 0, -1, 0
    operations = sorted(op_depth, key=lambda op: (-op_depth[op], first_met[op]))

    computable = {id(t) for t in inputs}
    reached = []
    for node in sorted(node_depth, key=lambda n: -node_depth[n]):
        if node.is_input:  # only the model's own inputs feed the graph
            continue
        for tensor in node.inputs:
            if id(tensor) not in computable:
                raise ValueError(
                    f"Graph disconnected: cannot find parent for tensor {tensor!r} at operation "
                    f"'{node.operation.name}'. The following previous operations were accessed without "
                    f"issue: {reached}"
                )
        reached.append(node.operation.name)
        computable.update(id(t) for t in node.outputs)

    names = [op.name for op in operations]
    for name in names:
        if names.count(name) != 1:
            raise ValueError(
                f'The name "{name}" is used {names.count(name)} times in the model. '
                "All operation names should be unique."
            )
    return [n for n in ordered if not n.is_input], operations, node_depth


class Functional(Model):
    """A model defined by its input and output symbolic tensors (a tensor, a list or a dict
    of them, kept as given: the outputs come back in the same structure)."""

    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        _check_tensors(inputs, "inputs")
        _check_tensors(outputs, "outputs")
        super().__init__(name=name or unique_name("functional"), trainable=trainable, **kwargs)
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        self.inputs = _symbolic.flatten(inputs)
        self.outputs = _symbolic.flatten(outputs)
        for tensor in self.inputs:
            if tensor._history is None or not _node_of(tensor).is_input:
                raise ValueError(
                    f"Model inputs must come from `gpuconv.Input`. Received inputs={tensor!r}, "
                    f"produced by '{tensor.operation.name if tensor.operation else None}'."
                )
        self._run_order, self._operations, self._node_depth = _map_graph(self.inputs, self.outputs)
        self._nodes = set(self._node_depth)
        self.built = True
        self._build_shapes = _symbolic.map_structure(lambda t: t.shape, inputs)

    # ---- structure ---------------------------------------------------------------------------
    @property
    def layers(self):
        """Every layer of the graph, InputLayers included, in Keras' order."""
        return [op for op in self._operations if isinstance(op, Layer)]

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def input_names(self):
        return [t._history[0].name for t in self.inputs]

    @property
    def output_names(self):
        return [t._history[0].name for t in self.outputs]

    # ---- running -------------------------------------------------------------------------------
    def _flat_inputs(self, inputs):
        """The values for ``self.inputs``, in order, from an array, a list or a dict."""
        if isinstance(inputs, dict):
            keys = (sorted(self._inputs_struct) if isinstance(self._inputs_struct, dict)
                    else [t._history[0].name for t in self.inputs])
            missing = [k for k in keys if k not in inputs]
            if missing:
                raise ValueError(
                    f'Model "{self.name}" expects inputs named {keys}; missing {missing}. Received keys: {sorted(inputs)}'
                )
            return [inputs[k] for k in keys]
        if len(self.inputs) == 1:
            # One input: the value itself, or a one-element list of it (Keras accepts both).
            single = isinstance(inputs, (list, tuple)) and len(inputs) == 1 and hasattr(inputs[0], "shape")
            return [inputs[0] if single else inputs]
        values = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(values) != len(self.inputs):
            raise ValueError(
                f'Model "{self.name}" expects {len(self.inputs)} input(s), but it received {len(values)} input tensors.'
            )
        return values

    def __call__(self, inputs, training=None):
        if _symbolic.any_symbolic(inputs):  # a model used as a layer of another model
            return _symbolic.symbolic_call(self, [inputs], kwargs={"mask": None})  # Keras records the mask
        if inputs is None:
            raise TypeError(f'Model "{self.name}" received inputs=None; expected an array.')
        values = {}
        for tensor, value in zip(self.inputs, self._flat_inputs(inputs)):
            values[id(tensor)] = tensor._history[0](value)  # the InputLayer: dtype conversion
        from . import fusion as _fusion  # inference: folded BatchNormalization, fused activations

        for node in _fusion.run_order(self, training):
            args = _symbolic.map_structure(
                lambda a: values[id(a)] if isinstance(a, SymbolicTensor) else a, node.args
            )
            result = _run_node(node, args, training)
            results = [result] if len(node.outputs) == 1 else list(result)
            for tensor, value in zip(node.outputs, results):
                values[id(tensor)] = value
        return _symbolic.map_structure(lambda t: values[id(t)], self._outputs_struct)

    def call(self, inputs, training=None):
        return self(inputs, training=training)

    def build(self, input_shape=None):
        """Built at construction (Keras' ``build(None)``)."""
        self.built = True

    def compute_output_shape(self, input_shape):
        """The outputs' shapes for inputs of ``input_shape`` (a shape, or a list / dict)."""
        flat = self._flat_inputs(input_shape) if not _is_shape(input_shape) else [input_shape]
        shapes = {id(t): tuple(s) for t, s in zip(self.inputs, flat)}
        for node in self._run_order:
            args = _symbolic.map_structure(
                lambda a: shapes[id(a)] if isinstance(a, SymbolicTensor) else None, node.args
            )
            in_shapes = args[0] if isinstance(node.operation, Layer) else args
            out = node.operation.compute_output_shape(in_shapes)
            outs = [tuple(out)] if _is_shape(out) else [tuple(s) for s in out]
            for tensor, shape in zip(node.outputs, outs):
                shapes[id(tensor)] = shape
        result = _symbolic.map_structure(lambda t: shapes[id(t)], self._outputs_struct)
        return result

    # ---- summary -------------------------------------------------------------------------------
    def _sequential_like(self):
        """Keras prints "Connected to" unless every depth has one node with one input and no
        layer is called twice."""
        by_depth = {}
        for node, depth in self._node_depth.items():
            by_depth.setdefault(depth, []).append(node)
        for nodes in by_depth.values():
            if len(nodes) > 1 or (len(nodes) == 1 and len(nodes[0].inputs) > 1):
                return False
        return all(sum(n in self._nodes for n in op._inbound_nodes) <= 1 for op in self._operations)

    def _connections(self, operation):
        parts = []
        for node in operation._inbound_nodes:
            if node not in self._nodes:
                continue
            for tensor in node.inputs:
                source, node_index, tensor_index = self._history_in_model(tensor)
                parts.append(f"{source.name}[{node_index}][{tensor_index}]")
        return ", ".join(parts) or "-"

    def _history_in_model(self, tensor):
        """(operation, node index among the nodes of this model, tensor index): Keras renumbers
        a shared layer's nodes per model."""
        operation, node_index, tensor_index = tensor._history
        kept = [n for n in operation._inbound_nodes if n in self._nodes]
        node = operation._inbound_nodes[node_index]
        return operation, (kept.index(node) if node in kept else node_index), tensor_index

    def _summary_rows(self):
        connected = not self._sequential_like()
        rows = []
        for op in self._operations:
            nodes = [n for n in op._inbound_nodes if n in self._nodes]
            shapes = [t.shape for t in nodes[-1].outputs] if nodes else []  # Keras shows the last node's
            shape = str(shapes[0]) if len(shapes) == 1 else str(shapes) if shapes else "?"
            shape = shape.replace("[", "(").replace("]", ")") if len(shapes) > 1 else shape
            params = _param_cell(op) if isinstance(op, Layer) else "0"
            row = (f"{op.name} ({type(op).__name__})", shape, params)
            rows.append(row + ((self._connections(op),) if connected else ()))
        return rows, connected

    # ---- config ----------------------------------------------------------------------------------
    def get_config(self):
        from . import functional_config

        return functional_config.get_config(self)

    def __repr__(self):
        return f"<Functional name={self.name}, inputs={len(self.inputs)}, outputs={len(self.outputs)}>"


def _is_shape(value):
    return isinstance(value, (tuple, list)) and all(d is None or isinstance(d, (int, np.integer)) for d in value)


def _run_node(node, args, training):
    if isinstance(node.operation, Layer):
        return node.operation(args[0], training=training)
    return node.operation(*args)

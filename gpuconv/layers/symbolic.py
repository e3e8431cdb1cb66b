"""Symbolic tensors and the nodes that connect them: what a functional model is made of.

``Input(...)`` returns a ``SymbolicTensor``; calling a layer (or a model) on symbolic tensors
builds the layer for their shapes, computes its output shapes with ``compute_output_shape``,
and records a ``Node`` (operation, the call's arguments, the output tensors) on the layer,
as Keras 3 records one per call. Each output remembers where it came from in ``_history``:
``(operation, node_index, tensor_index)``, Keras' ``keras_history``.

Arithmetic on symbolic tensors (``x + 3.0``, ``x * y``, ``-x``) is recorded as Keras records
it: one node of a named operation (``gpuconv.layers.symbolic_ops``), written to a functional
config under Keras' module and class names so configs move between Keras and gpuconv.
"""
import numbers

__all__ = ["Node", "SymbolicTensor", "any_symbolic", "flatten", "map_structure", "symbolic_call"]


# --------------------------------------------------------------------------------------------
# Nested structures (a layer's inputs: a tensor, a list / tuple of them, or a dict)
# --------------------------------------------------------------------------------------------
def flatten(structure):
    """The leaves of a nest of lists, tuples and dicts (dicts in key order, as Keras' tree)."""
    if isinstance(structure, dict):
        return [leaf for key in sorted(structure) for leaf in flatten(structure[key])]
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten(item)]
    return [structure]


def map_structure(fn, structure):
    """``structure`` with every leaf replaced by ``fn(leaf)`` (lists stay lists, tuples tuples)."""
    if isinstance(structure, dict):
        return {key: map_structure(fn, value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return type(structure)(map_structure(fn, item) for item in structure)
    return fn(structure)


def any_symbolic(structure):
    return any(isinstance(leaf, SymbolicTensor) for leaf in flatten(structure))


# --------------------------------------------------------------------------------------------
# Tensors and nodes
# --------------------------------------------------------------------------------------------
class SymbolicTensor:
    """A tensor of a model under construction: a shape (batch first, None where unknown), a
    dtype, and the node that produced it. ``Input`` makes the first ones; ``Sequential``
    accepts one as its first entry."""

    def __init__(self, shape, dtype, name=None, layer=None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.name = name
        self._input_layer = layer  # the InputLayer, for an Input's tensor
        self._history = None  # (operation, node_index, tensor_index), set by Node

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def operation(self):
        return None if self._history is None else self._history[0]

    def __repr__(self):
        return f"<SymbolicTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def __bool__(self):
        raise TypeError("A symbolic tensor has no truth value: it holds no numbers until the model runs.")

    def __array__(self, *args, **kwargs):
        # NumPy would otherwise make a 0-d object array of it and fail far from here.
        raise TypeError(
            f"A symbolic tensor ({self!r}) cannot be converted to an array: it is a placeholder in a "
            "model under construction. Call layers or gpuconv models on it, or build a "
            "gpuconv.Model(inputs, outputs) and call that on arrays."
        )

    # Arithmetic is recorded as Keras records it (keras.src.ops.numpy's operation names).
    def _op(self, name, *args):
        from . import symbolic_ops

        return symbolic_ops.apply(name, *args)

    def __add__(self, other):
        return self._op("Add", self, other)

    def __radd__(self, other):
        return self._op("Add", other, self)

    def __sub__(self, other):
        return self._op("Subtract", self, other)

    def __rsub__(self, other):
        return self._op("Subtract", other, self)

    def __mul__(self, other):
        return self._op("Multiply", self, other)

    def __rmul__(self, other):
        return self._op("Multiply", other, self)

    def __truediv__(self, other):
        return self._op("TrueDivide", self, other)

    def __rtruediv__(self, other):
        return self._op("TrueDivide", other, self)

    def __pow__(self, other):
        return self._op("Power", self, other)

    def __rpow__(self, other):
        return self._op("Power", other, self)

    def __matmul__(self, other):
        return self._op("Matmul", self, other)

    def __rmatmul__(self, other):
        return self._op("Matmul", other, self)

    def __neg__(self):
        return self._op("Negative", self)

    def __abs__(self):
        return self._op("Absolute", self)


class Node:
    """One call of an operation on symbolic arguments. ``args`` keeps the call's structure
    (a merge layer's list, a constant operand); ``inputs`` are its symbolic tensors in order."""

    def __init__(self, operation, args, outputs, kwargs=None):
        self.operation = operation
        self.args = args
        self.kwargs = dict(kwargs or {})
        self.inputs = [t for t in flatten(args) if isinstance(t, SymbolicTensor)]
        self.outputs = list(outputs)
        nodes = inbound_nodes(operation)
        self.index = len(nodes)
        nodes.append(self)
        for i, tensor in enumerate(self.outputs):
            tensor._history = (operation, self.index, i)

    @property
    def is_input(self):
        return not self.inputs

    @property
    def parents(self):
        """The nodes that produced this node's inputs."""
        return [t.operation._inbound_nodes[t._history[1]] for t in self.inputs]

    def __repr__(self):
        return f"<Node {self.operation.name}[{self.index}]>"


def inbound_nodes(operation):
    """The nodes recorded on ``operation`` (a list created on first use: layers made before
    the functional API existed, or by ``from_config``, have none)."""
    nodes = operation.__dict__.get("_inbound_nodes")
    if nodes is None:
        nodes = operation.__dict__["_inbound_nodes"] = []
    return nodes


def _shape_of(value):
    return value.shape if isinstance(value, SymbolicTensor) else None


def _is_single_shape(value):
    """A shape (a tuple or list of ints and None), as opposed to a list of shapes."""
    return isinstance(value, (tuple, list)) and all(d is None or isinstance(d, numbers.Integral) for d in value)


def symbolic_call(operation, args, kwargs=None, output_dtype=None):
    """Record ``operation(*args)`` on symbolic tensors: build the operation for the inputs'
    shapes, compute the outputs' shapes, and return new symbolic tensors (one, or a list when
    the operation has several outputs) produced by a new Node.

    A layer (or model) is called with one positional argument, its inputs (a tensor or a
    list of them): ``args == [inputs]``, and it is built and shaped from that structure. An
    array operation gets the shapes of each of its positional arguments (None for a constant)."""
    args = list(args)
    if hasattr(operation, "_ensure_built"):  # a layer or model: checked and built as a call would
        shapes = map_structure(_shape_of, args[0])
        _check_spec(operation, args[0])
        operation._ensure_built(shapes)
        _check_spec(operation, args[0])
    else:
        shapes = [_shape_of(a) for a in args]
    out_shapes = operation.compute_output_shape(shapes)
    dtype = output_dtype or _output_dtype(operation, args)
    single = _is_single_shape(out_shapes)
    outputs = [SymbolicTensor(tuple(s), dtype, name=operation.name) for s in ([out_shapes] if single else out_shapes)]
    Node(operation, args, outputs, kwargs)
    return outputs[0] if single else outputs


def _check_spec(layer, args):
    spec = getattr(layer, "input_spec", None)
    if spec is not None and isinstance(args, SymbolicTensor):
        spec.check(args.shape, layer.name)


def _output_dtype(operation, args):
    """The outputs' dtype: the layer's compute dtype (Keras' rule for float layers), else the
    first input's."""
    compute = getattr(operation, "compute_dtype", None)
    if compute is not None and getattr(operation, "autocast", True):
        return compute
    first = next((t for t in flatten(args) if isinstance(t, SymbolicTensor)), None)
    return first.dtype if first is not None else "float32"

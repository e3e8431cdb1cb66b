"""Arithmetic on symbolic tensors, recorded as Keras 3 records it in a functional model.

``x + 3.0`` in a Keras model becomes a node of the operation ``keras.src.ops.numpy.Add``
named ``add`` (``add_1``, ... as names repeat), with the constant kept in the node's args.
The operations here carry Keras' class names, config (``{"name": ...}``) and module string, so
a functional config written by Keras resolves to them (by name, from ``OPERATIONS`` only: the
module a config names is never imported) and one written here reads back in Keras.

Each runs through the recorded array functions, so a GradientTape differentiates it.
"""
from ..autodiff import functions as F
from ..serialization import to_snake_case
from . import symbolic
from .base_layer import unique_name

__all__ = ["OPERATIONS", "SymbolicOperation", "apply"]

MODULE = "keras.src.ops.numpy"


def _broadcast_dim(a, b, shapes):
    if a == 1:
        return b
    if b == 1 or a == b:
        return a
    if a is None or b is None:
        return a if b is None else b
    raise ValueError(f"Cannot broadcast shapes {shapes[0]} and {shapes[1]}.")


def broadcast_shapes(first, second):
    """NumPy's broadcasting of two shapes in which None is an unknown size."""
    a, b = tuple(first), tuple(second)
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    return tuple(_broadcast_dim(x, y, (first, second)) for x, y in zip(a, b))


def _matmul_shape(a, b):
    if len(a) < 1 or len(b) < 1:
        raise ValueError(f"matmul needs operands of rank >= 1. Received shapes {a} and {b}.")
    a2 = a if len(a) > 1 else (1,) + a
    b2 = b if len(b) > 1 else b + (1,)
    if None not in (a2[-1], b2[-2]) and a2[-1] != b2[-2]:
        raise ValueError(f"Incompatible shapes for matmul: {a} and {b}.")
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    out = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


class SymbolicOperation:
    """One of keras.ops' array operations as a node of a functional model."""

    arity = 2
    function = None  # the recorded array function
    module = MODULE

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Argument `name` must be a string. Received: name={name!r}")
        self.name = name or unique_name(to_snake_case(type(self).__name__))

    def compute_output_shape(self, shapes):
        if self.arity == 1:
            return tuple(shapes[0])
        known = [tuple(s) for s in shapes if s is not None]
        out = ()
        for shape in known:
            out = broadcast_shapes(out, shape)
        return out

    def __call__(self, *args):
        if symbolic.any_symbolic(args):
            return symbolic.symbolic_call(self, list(args))
        return type(self).function(*args)

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def _operation(class_name, fn, arity=2, shape=None):
    attrs = {"function": staticmethod(fn), "arity": arity, "__doc__": f"keras.ops' {class_name} in a functional model."}
    if shape is not None:
        attrs["compute_output_shape"] = lambda self, shapes: shape(*[tuple(s) for s in shapes])
    return type(class_name, (SymbolicOperation,), attrs)


OPERATIONS = {
    cls.__name__: cls
    for cls in (
        _operation("Add", F.add),
        _operation("Subtract", F.subtract),
        _operation("Multiply", F.multiply),
        _operation("TrueDivide", F.divide),
        _operation("Divide", F.divide),
        _operation("Power", F.power),
        _operation("Matmul", F.matmul, shape=_matmul_shape),
        _operation("Negative", F.negative, arity=1),
        _operation("Absolute", F.abs, arity=1),
    )
}


def apply(class_name, *args):
    """Record ``class_name``'s operation on ``args`` (symbolic tensors and constants)."""
    return OPERATIONS[class_name]()(*args)

"""The merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot, and
the functional forms Keras exports with them (``add(inputs)``, ``concatenate(inputs, axis=-1)``,
``dot(inputs, axes=-1)``, ...), with Keras 3.15's signatures, configs, shape rules and error
texts.

Each takes a list of inputs (``layer([a, b])``; on symbolic tensors that records one node) and
computes through the recorded array functions (``gpuconv.autodiff.functions``), so a
``GradientTape`` differentiates it, on NumPy or CuPy inputs alike.

Keras' shape rules, kept as Keras has them:
- elementwise layers broadcast size-1 dimensions, and an input of lower rank is expanded at
  axis 1 (just after the batch axis) until all ranks match, so its dimensions line up with the
  others' last ones; the batch sizes must agree (a known size and None do);
- one input is accepted (returned as it is) by every layer but Subtract and Dot, which take
  exactly 2;
- ``Maximum`` / ``Minimum`` at a tie split the gradient evenly (torch.maximum's rule, so
  Keras' on the torch backend).

Where gpuconv is stricter than Keras (which accepts these and fails later with a backend error
or a bare IndexError): an empty list, a rank-0 input, an ``axis`` / ``axes`` outside the inputs'
ranks, a non-int ``axis`` and a non-bool ``normalize`` are ValueErrors / TypeErrors naming the
argument; the shape checks of the first call are repeated on every later call, so a built layer
called on incompatible shapes names them instead of failing inside an array library.
Masks are not supported (Keras' merge layers take none in ``call``).
"""
import math
import numbers

import numpy as np

from ..autodiff import functions as F
from . import symbolic as _symbolic
from .base_layer import Layer

__all__ = [
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate", "dot",
]


def _is_int(value):
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def _shape_or_none(value):
    """The shape of an array or a symbolic tensor, as a tuple (None for a constant without one)."""
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(shape)


def _is_shape(value):
    return isinstance(value, (tuple, list)) and all(d is None or _is_int(d) for d in value)


# --------------------------------------------------------------------------------------------
# The shared base
# --------------------------------------------------------------------------------------------
class _Merge(Layer):
    """Keras' ``Merge``: a layer of a list of inputs. Subclasses give the merge of the aligned
    inputs (``_merge``); the elementwise layers share the shape rules here, Concatenate and Dot
    replace them (``_check_shapes``, ``compute_output_shape``, ``_align``)."""

    _multi_input = True

    # ---- the list ----------------------------------------------------------------------------
    def _not_a_list(self, shape):
        return (f"A merge layer should be called on a list of inputs. Received: input_shape={shape} "
                "(not a list of shapes)")

    def _check_list(self, inputs):
        """A list (or tuple) of at least one input, before anything is standardized or built
        (a single array would otherwise be read as a list of its rows)."""
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(self._not_a_list(_shape_or_none(inputs)))
        if not inputs:
            raise ValueError(
                "A merge layer should be called on a list of at least 1 input. Received 0 inputs. "
                "Full input_shape received: []"
            )

    def __call__(self, inputs, training=None):
        self._check_list(inputs)
        symbolic = [isinstance(x, _symbolic.SymbolicTensor) for x in inputs]
        if any(symbolic) and not all(symbolic):
            # A constant in a model's node could be neither shaped nor written to its config.
            raise ValueError(
                f"Layer '{self.name}' was called on a list mixing symbolic tensors and constants; inside a "
                "model every input of a merge layer must be a symbolic tensor (wrap a constant in a layer, "
                f"or use arithmetic such as `x + constant`). Received: inputs={list(inputs)!r}"
            )
        if self.built and any(symbolic):
            # A built layer is not built again: a later symbolic call gets the first call's
            # checks here (an array call gets them in `call`).
            self._check_shapes([_shape_or_none(x) for x in inputs])
        return super().__call__(inputs, training=training)

    # ---- shapes --------------------------------------------------------------------------------
    def _check_shapes(self, shapes):
        """Keras' build-time checks (a ValueError naming the shapes); returns nothing."""
        shapes = self._shape_list(shapes)
        known = [s for s in shapes if s is not None]
        if any(len(s) == 0 for s in known):
            raise ValueError(
                f"Layer '{self.name}' merges inputs along a batch axis; an input of rank 0 has none. "
                f"Received: input_shape={shapes}"
            )
        batch_sizes = {s[0] for s in known} - {None}
        if len(batch_sizes) > 1:
            raise ValueError(f"Cannot merge tensors with different batch sizes. Received tensors with shapes {shapes}")
        self._features_shape(shapes)

    def _shape_list(self, shapes):
        """``shapes`` as a list of tuples (None for an unknown shape), checked as ``_check_list``
        checks the inputs."""
        if not isinstance(shapes, (list, tuple)) or (shapes and _is_shape(shapes)):  # one shape
            raise ValueError(self._not_a_list(tuple(shapes) if isinstance(shapes, (list, tuple)) else shapes))
        self._check_list(shapes)
        return [None if s is None else tuple(s) for s in shapes]

    def _features_shape(self, shapes):
        """The broadcast shape of the inputs without their batch axis (None if a rank is unknown)."""
        out = None if shapes[0] is None else shapes[0][1:]
        for shape in shapes[1:]:
            out = _broadcast_features(out, None if shape is None else shape[1:])
        return out

    def compute_output_shape(self, input_shape):
        shapes = self._shape_list(input_shape)
        features = self._features_shape(shapes)
        batch_sizes = {s[0] for s in shapes if s} - {None}
        batch = batch_sizes.pop() if len(batch_sizes) == 1 else None
        return None if features is None else (batch,) + tuple(features)

    def build(self, input_shape):
        self._check_shapes(input_shape)

    # ---- computing ---------------------------------------------------------------------------
    def _align(self, inputs):
        """Keras' reshape for inputs of different ranks: each lower-rank input gets size-1 axes
        inserted at axis 1 until its rank is the highest."""
        rank = max(x.ndim for x in inputs)
        aligned = []
        for x in inputs:
            if x.ndim < rank:
                x = F.reshape(x, x.shape[:1] + (1,) * (rank - x.ndim) + x.shape[1:])
            aligned.append(x)
        return aligned

    def call(self, inputs):
        self._check_list(inputs)
        self._check_shapes([tuple(x.shape) for x in inputs])
        return self._merge(self._align(list(inputs)))

    def _merge(self, inputs):
        raise NotImplementedError


def _broadcast_features(first, second):
    """Keras' ``_compute_elemwise_op_output_shape``: shapes aligned at their last axes; a size 1
    takes the other's size, an unknown size stays unknown, other sizes must be equal."""
    if first is None or second is None:
        return None
    if len(first) < len(second):
        first, second = second, first
    if not second:
        return tuple(first)
    out = list(first[: len(first) - len(second)])
    for a, b in zip(first[len(first) - len(second):], second):
        if a is None or b is None:
            out.append(None)
        elif a == 1 or b == 1:
            out.append(b if a == 1 else a)
        elif a != b:
            raise ValueError(f"Inputs have incompatible shapes. Received shapes {tuple(first)} and {tuple(second)}")
        else:
            out.append(a)
    return tuple(out)


class _Fold(_Merge):
    """An elementwise merge that combines the inputs pairwise, left to right."""

    _combine = None  # the recorded binary function

    def _merge(self, inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = self._combine(out, x)
        return out


# --------------------------------------------------------------------------------------------
# The elementwise layers
# --------------------------------------------------------------------------------------------
class Add(_Fold):
    """The elementwise sum of the inputs."""

    _combine = staticmethod(F.add)


class Subtract(_Merge):
    """``inputs[0] - inputs[1]``: exactly two inputs."""

    def _check_shapes(self, shapes):
        super()._check_shapes(shapes)  # Keras checks the shapes first, then the count
        if len(shapes) != 2:
            raise ValueError(
                f"A `Subtract` layer should be called on exactly 2 inputs. Received: input_shape={self._shape_list(shapes)}"
            )

    def _merge(self, inputs):
        return F.subtract(inputs[0], inputs[1])


class Multiply(_Fold):
    """The elementwise product of the inputs."""

    _combine = staticmethod(F.multiply)


class Average(_Merge):
    """The elementwise mean of the inputs: their sum (left to right) divided by their number."""

    def _merge(self, inputs):
        total = inputs[0]
        for x in inputs[1:]:
            total = F.add(total, x)
        return F.divide(total, len(inputs))


class Maximum(_Fold):
    """The elementwise maximum of the inputs (a tie shares the gradient evenly)."""

    _combine = staticmethod(F.maximum)


class Minimum(_Fold):
    """The elementwise minimum of the inputs (a tie shares the gradient evenly)."""

    _combine = staticmethod(F.minimum)


# --------------------------------------------------------------------------------------------
# Concatenate
# --------------------------------------------------------------------------------------------
class Concatenate(_Merge):
    """The inputs joined along ``axis`` (the batch axis 0 included, as Keras allows); every
    other axis must match, where both sizes are known."""

    def __init__(self, axis=-1, **kwargs):
        if not _is_int(axis):
            raise TypeError(f"Argument `axis` must be an integer. Received: axis={axis!r}")
        super().__init__(**kwargs)
        self.axis = int(axis)

    def _not_a_list(self, shape):
        return f"A `Concatenate` layer should be called on a list of at least 1 input. Received: input_shape={shape}"

    def _check_list(self, inputs):
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise ValueError(self._not_a_list(_shape_or_none(inputs) if not isinstance(inputs, (list, tuple)) else []))

    def _check_axis(self, shapes):
        for shape in shapes:
            if shape is not None and not -len(shape) <= self.axis < len(shape):
                raise ValueError(
                    f"Argument `axis` is out of range for an input of rank {len(shape)} "
                    f"(expected -{len(shape)} <= axis < {len(shape)}). Received: axis={self.axis}, "
                    f"input_shape={shapes}"
                )

    def _check_shapes(self, shapes):
        shapes = self._shape_list(shapes)
        known = [s for s in shapes if s is not None]  # None: an input of unknown shape
        if not known:
            return
        self._check_axis(known)
        # Every axis but the concatenation axis must agree where both sizes are known, and the
        # ranks must be equal.
        rests = []
        for shape in known:
            rest = list(shape)
            del rest[self.axis]
            rests.append(rest)
        if len({len(r) for r in rests}) != 1 or any(
            len({r[i] for r in rests} - {None}) > 1 for i in range(len(rests[0]))
        ):
            raise ValueError(
                "A `Concatenate` layer requires inputs with matching shapes except for the concatenation axis. "
                f"Received: input_shape={shapes}"
            )

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, (tuple, list)) or not input_shape or not isinstance(input_shape[0], (tuple, list)):
            raise ValueError(f"A `Concatenate` layer should be called on a list of inputs. Received: input_shape={input_shape}")
        shapes = [tuple(s) for s in input_shape]
        self._check_axis(shapes)
        out = list(shapes[0])
        for shape in shapes[1:]:
            if out[self.axis] is None or shape[self.axis] is None:
                out[self.axis] = None
                break
            out[self.axis] += shape[self.axis]
        return tuple(out)

    def _align(self, inputs):
        return inputs  # ranks must already be equal

    def _merge(self, inputs):
        return F.concatenate(inputs, axis=self.axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


# --------------------------------------------------------------------------------------------
# Dot
# --------------------------------------------------------------------------------------------
def _validate_axes(axes):
    """Keras' checks of ``Dot(axes)``: an int, or a list / tuple of two ints."""
    if isinstance(axes, (list, tuple)):
        if len(axes) != 2:
            raise ValueError(f"Invalid format for argument `axes`: it should contain two elements. Received: axes={axes}")
        if not all(_is_int(a) for a in axes):
            raise ValueError(
                f"Invalid format for argument `axes`: list elements should be integers. Received: axes={axes}"
            )
    elif not _is_int(axes):
        raise TypeError(f"Invalid type for argument `axes`: it should be a list or an int. Received: axes={axes}")


class Dot(_Merge):
    """The dot product of two inputs along ``axes`` (an int for both, or one per input), per
    batch row (Keras' ``batch_dot``): the output has the first input's other axes, then the
    second's, after the batch axis ((batch, 1) when none is left). ``normalize=True`` L2-
    normalizes each input along its axis first: the cosine proximity."""

    def __init__(self, axes, normalize=False, **kwargs):
        _validate_axes(axes)
        if not isinstance(normalize, (bool, np.bool_)):
            raise TypeError(f"Argument `normalize` must be a bool. Received: normalize={normalize!r}")
        super().__init__(**kwargs)
        self.axes = axes
        self.normalize = bool(normalize)

    def _not_a_list(self, shape):
        return f"A `Dot` layer should be called on a list of 2 inputs. Received: input_shape={shape}"

    def _check_list(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(self._not_a_list(_shape_or_none(inputs)))
        if len(inputs) != 2:
            raise ValueError(self._not_a_list([_shape_or_none(x) for x in inputs]))

    def _axes_for(self, shape1, shape2):
        """Both reduced axes, non-negative (Keras resolves a negative int against each rank;
        a list's entries are used as given by Python indexing); a ValueError naming ``axes``
        when an axis does not exist."""
        pair = list(self.axes) if isinstance(self.axes, (list, tuple)) else [self.axes, self.axes]
        resolved = []
        for axis, shape in zip(pair, (shape1, shape2)):
            if not -len(shape) <= axis < len(shape):
                raise ValueError(
                    f"Argument `axes` is out of range for inputs of shapes {shape1} and {shape2}. "
                    f"Received: axes={self.axes}"
                )
            resolved.append(axis % len(shape))
        return resolved

    def _check_shapes(self, shapes):
        if _is_shape(shapes) or len(shapes) != 2:
            raise ValueError(self._not_a_list(list(shapes) if not _is_shape(shapes) else tuple(shapes)))
        shape1, shape2 = (None if s is None else tuple(s) for s in shapes)
        if shape1 is None or shape2 is None:
            return
        a1, a2 = self._axes_for(shape1, shape2)
        # Keras names a list's axes as given, an int's resolved against each rank.
        shown = list(self.axes) if isinstance(self.axes, (list, tuple)) else [a1, a2]
        # As Keras: an unknown size against a known one is a mismatch too.
        if shape1[a1] != shape2[a2]:
            raise ValueError(
                f"Incompatible input shapes: axis values {shape1[a1]} (at axis {shown[0]}) != {shape2[a2]} "
                f"(at axis {shown[1]}). Full input shapes: {shape1}, {shape2}"
            )

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, (tuple, list)) or _is_shape(input_shape) or len(input_shape) != 2:
            raise ValueError(f"A `Dot` layer should be called on a list of 2 inputs. Received: input_shape={input_shape}")
        shape1, shape2 = list(input_shape[0]), list(input_shape[1])
        a1, a2 = self._axes_for(tuple(shape1), tuple(shape2))
        del shape1[a1], shape2[a2]
        out = shape1 + shape2[1:]  # the second input's batch axis is the first's
        return tuple(out + [1] if len(out) == 1 else out)

    def call(self, inputs):
        self._check_list(inputs)
        x, y = inputs
        if x.ndim < 2 or y.ndim < 2:
            raise ValueError(
                f"Cannot do batch_dot on inputs with rank < 2. Received inputs with shapes {x.shape} and {y.shape}."
            )
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"Cannot do batch_dot on inputs with different batch sizes. Received inputs with shapes "
                f"{x.shape} and {y.shape}."
            )
        a1, a2 = self._axes_for(x.shape, y.shape)
        if 0 in (a1, a2):
            raise ValueError(
                "Cannot perform batch_dot over axis 0. If your inputs are not batched, add a dummy batch "
                f"dimension to your inputs. Received: axes={self.axes}"
            )
        if x.shape[a1] != y.shape[a2]:
            raise ValueError(
                f"Cannot do batch_dot on inputs with shapes {x.shape} and {y.shape} with axes={[a1, a2]}. "
                f"x.shape[{a1}] != y.shape[{a2}] ({x.shape[a1]} != {y.shape[a2]})."
            )
        if self.normalize:
            x, y = F.normalize(x, axis=a1), F.normalize(y, axis=a2)
        return _batch_dot(x, y, a1, a2)

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def _move_axis(x, source, destination):
    order = [a for a in range(x.ndim) if a != source]
    order.insert(destination, source)
    return x if order == list(range(x.ndim)) else F.transpose(x, order)


def _batch_dot(x, y, axis_x, axis_y):
    """Per batch row, the contraction of ``x``'s ``axis_x`` with ``y``'s ``axis_y``, as one
    batched matmul: x as (batch, rest of x, k), y as (batch, k, rest of y)."""
    x = _move_axis(x, axis_x, x.ndim - 1)
    y = _move_axis(y, axis_y, 1)
    batch, k = x.shape[0], x.shape[-1]
    rest_x, rest_y = tuple(x.shape[1:-1]), tuple(y.shape[2:])
    x3 = F.reshape(x, (batch, math.prod(rest_x), k))
    y3 = F.reshape(y, (batch, k, math.prod(rest_y)))
    out = F.matmul(x3, y3)
    shape = (batch,) + rest_x + rest_y
    return F.reshape(out, shape if len(shape) > 1 else (batch, 1))


# --------------------------------------------------------------------------------------------
# The functional forms (keras.layers.add, ...): a new layer called on `inputs`
# --------------------------------------------------------------------------------------------
def add(inputs, **kwargs):
    """``Add(**kwargs)(inputs)``."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """``Subtract(**kwargs)(inputs)``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """``Multiply(**kwargs)(inputs)``."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """``Average(**kwargs)(inputs)``."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """``Maximum(**kwargs)(inputs)``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """``Minimum(**kwargs)(inputs)``."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """``Concatenate(axis=axis, **kwargs)(inputs)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, **kwargs):
    """``Dot(axes=axes, **kwargs)(inputs)``."""
    return Dot(axes=axes, **kwargs)(inputs)

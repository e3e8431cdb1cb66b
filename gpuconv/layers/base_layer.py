"""The Keras layer contract shared by every layer: naming, dtype policy, lazy build, input
spec, weights, get/set_weights, count_params, get_config/from_config, losses.

Subclasses implement ``build(input_shape)`` (creating weights with ``add_weight``),
``call(inputs)`` and ``compute_output_shape(input_shape)``, and extend ``get_config``.
"""
import threading

import numpy as np

from .. import arrays as _arrays
from .. import backend as _backend
from .. import dtypes as _dtypes
from ..autodiff import functions as _F
from ..autodiff import tape as _ad
from .. import initializers, regularizers, constraints
from . import symbolic as _symbolic
from ..serialization import DeserializationError, _Scope
from ..serialization import to_snake_case  # noqa: F401  (Keras naming: conv2d, max_pooling2d)
from ..variables import Variable, check_numeric

_name_lock = threading.Lock()
_name_counts = {}

# Keras' DTypePolicy names -> (variable dtype, compute dtype). bfloat16 is ml_dtypes' NumPy dtype
# (gpuconv.dtypes), loaded when a policy names it.
_POLICIES = {
    "float16": ("float16", "float16"),
    "bfloat16": ("bfloat16", "bfloat16"),
    "float32": ("float32", "float32"),
    "float64": ("float64", "float64"),
    "mixed_float16": ("float32", "float16"),
    "mixed_bfloat16": ("float32", "bfloat16"),
}


def clear_session():
    """Reset the per-process layer-name counters (Keras' ``keras.backend.clear_session``)."""
    with _name_lock:
        _name_counts.clear()


def unique_name(base):
    """Keras' naming: conv2d, conv2d_1, conv2d_2, ... per process."""
    with _name_lock:
        n = _name_counts.get(base, 0)
        _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def _policy_name(dtype):
    if dtype is None:
        return "float32"
    if isinstance(dtype, dict):  # a serialized DTypePolicy
        inner = dtype.get("config")
        dtype = inner.get("name", dtype) if isinstance(inner, dict) else dtype
    name = getattr(dtype, "name", dtype)
    if not isinstance(name, str):
        name = np.dtype(name).name
    if name not in _POLICIES:
        raise ValueError(f"Invalid value for argument `dtype`. Expected one of {tuple(_POLICIES)}. Received: dtype={dtype!r}")
    if _dtypes.BFLOAT16_NAME in name:
        _dtypes.bfloat16()  # ml_dtypes loaded: np.dtype("bfloat16") resolves from here on
    return name


def _multi_shapes(input_shape, layer_name):
    """A multi-input layer's build shapes: one tuple per input (None for a constant operand)."""
    if not isinstance(input_shape, (list, tuple)) or not all(s is None or isinstance(s, (list, tuple)) for s in input_shape):
        raise ValueError(
            f'Layer "{layer_name}" expects a list of inputs. Received: an input of shape {input_shape}'
        )
    return [None if s is None else tuple(s) for s in input_shape]


class InputSpec:
    """Keras' InputSpec subset: ``ndim``, ``min_ndim`` and ``axes`` ({axis: size})."""

    def __init__(self, ndim=None, min_ndim=None, axes=None):
        self.ndim, self.min_ndim, self.axes = ndim, min_ndim, dict(axes or {})

    def check(self, shape, layer_name):
        shape = tuple(shape)
        head = f"Input 0 of layer '{layer_name}' is incompatible with the layer: "  # Keras' quoting
        if self.ndim is not None and len(shape) != self.ndim:
            raise ValueError(head + f"expected ndim={self.ndim}, found ndim={len(shape)}. Full shape received: {shape}")
        if self.min_ndim is not None and len(shape) < self.min_ndim:
            raise ValueError(head + f"expected min_ndim={self.min_ndim}, found ndim={len(shape)}. Full shape received: {shape}")
        for axis, value in self.axes.items():
            if value is not None and -len(shape) <= axis < len(shape) and shape[axis] not in (value, None):
                raise ValueError(
                    head + f"expected axis {axis} of input shape to have value {value}, "
                    f"but received input with shape {shape}"
                )


class Layer:
    # A layer whose call takes a list of inputs (the merge layers): each element is standardized
    # on its own, build / compute_output_shape get a list of shapes.
    _multi_input = False

    def __init__(self, *, name=None, dtype=None, trainable=True, autocast=True, activity_regularizer=None, **kwargs):
        # Keras keeps `input_shape`/`input_dim` for Sequential, which turns them into an Input.
        input_shape = kwargs.pop("input_shape", None)
        input_dim = kwargs.pop("input_dim", None)
        if input_shape is None and input_dim is not None:
            input_shape = (input_dim,)
        if isinstance(input_shape, int):
            input_shape = (input_shape,)
        self._input_shape_arg = None if input_shape is None else tuple(input_shape)
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Argument `name` must be a string. Received: name={name!r}")
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self._dtype_policy = _policy_name(dtype)
        self.trainable = bool(trainable)
        self.autocast = autocast
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.built = False
        self._build_lock = threading.RLock()
        self.input_spec = None
        self._weights = []
        self._activity_losses = []

    # ---- dtype policy --------------------------------------------------------------------
    @property
    def dtype(self):
        """The variable dtype, as Keras' ``layer.dtype``."""
        return _POLICIES[self._dtype_policy][0]

    @property
    def variable_dtype(self):
        return _POLICIES[self._dtype_policy][0]

    @property
    def compute_dtype(self):
        return _POLICIES[self._dtype_policy][1]

    @property
    def dtype_policy(self):
        return self._dtype_policy

    # ---- weights -------------------------------------------------------------------------
    def add_weight(self, name, shape, initializer="glorot_uniform", regularizer=None, constraint=None, trainable=True):
        shape = tuple(int(d) for d in shape)
        init = initializers.get(initializer if initializer is not None else "glorot_uniform")
        value = init(shape, dtype=self.variable_dtype)
        check_numeric(value, f"{self.name}/{name}")  # a user initializer returning complex values
        value = np.asarray(value, dtype=self.variable_dtype)
        var = Variable(
            value, name=name, path=f"{self.name}/{name}", trainable=trainable,
            regularizer=regularizers.get(regularizer), constraint=constraints.get(constraint),
        )
        self._weights.append(var)
        return var

    @property
    def weights(self):
        return list(self._weights)

    @property
    def trainable_weights(self):
        return [w for w in self._weights if w.trainable and self.trainable]

    @property
    def non_trainable_weights(self):
        return [w for w in self._weights if not (w.trainable and self.trainable)]

    def get_weights(self):
        return [w.numpy() for w in self._weights]

    def set_weights(self, weights):
        weights = [_arrays.to_numpy(w) for w in weights]  # once: device arrays come to the host here
        if len(weights) != len(self._weights):
            raise ValueError(
                f"You called `set_weights(weights)` on layer '{self.name}' with a weight list of length "
                f"{len(weights)}, but the layer was expecting {len(self._weights)} weights."
            )
        for var, value in zip(self._weights, weights):  # every check before any assignment
            shape = tuple(value.shape)
            if shape != var.shape:
                raise ValueError(
                    f"Layer {self.name} weight shape {var.shape} is not compatible with provided weight shape {shape}."
                )
            check_numeric(value, var.path)
        for var, value in zip(self._weights, weights):
            var.assign(value)

    def count_params(self):
        if not self.built:
            raise ValueError(
                f"You tried to call `count_params` on layer '{self.name}', but the layer isn't built. "
                "You can build it manually via: `layer.build(input_shape)`."
            )
        return int(sum(np.prod(w.shape) for w in self._weights))

    @property
    def losses(self):
        """The last call's activity penalty, then the weights' penalties in weight order (Keras'
        order), as 0-d arrays recorded on an active tape (``tape.gradient(layer.losses, w)``).
        A weight penalty is computed where the last call ran (its device copy: no host copy
        of a weight an optimizer updated on the device)."""
        like = getattr(self, "_penalty_device", None)
        weight_losses = [w.regularizer(w.value if like is None else w.array_like(like))
                         for w in self._weights if w.regularizer is not None]
        return list(self._activity_losses) + weight_losses

    # ---- build / call ----------------------------------------------------------------------
    def build(self, input_shape=None):
        self.built = True

    def _ensure_built(self, input_shape):
        """``build(input_shape)`` exactly once, also when several threads make the first call at
        the same time (each would otherwise add its own weights). ``built`` is read before the
        lock, so calls after the first never touch it."""
        if self.built:
            return
        with self._build_lock:
            if not self.built:
                shapes = _multi_shapes(input_shape, self.name) if self._multi_input else tuple(input_shape)
                self.build(shapes)
                self.built = True
                self._build_shapes = shapes  # Keras' build_config in a functional config

    def _build_at_init(self):
        """Weightless layers Keras builds in __init__; they record no build shape (no build_config)."""
        self.built = True
        self._built_at_init = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, inputs):
        raise NotImplementedError

    def _standardize_input(self, inputs):
        if inputs is None:
            raise TypeError(f'Layer "{self.name}" received inputs=None; expected an array.')
        inputs = _arrays.as_array(inputs, "inputs", f'layer "{self.name}"')  # torch, JAX, DLPack, lists
        kind = _dtypes.kind(inputs.dtype)
        if kind == "c":
            raise TypeError(f'Layer "{self.name}" does not accept complex inputs; received dtype {inputs.dtype}.')
        if kind not in "fiub":
            raise TypeError(f'Layer "{self.name}" expected a numeric array; received dtype {inputs.dtype}.')
        # On the active engine's device first: a NumPy input on the CUDA backend is uploaded once
        # here, so the weights' cached device copies (Variable.array_like) are what the op gets,
        # not host weights re-uploaded on every call.
        original = inputs
        inputs = _backend.engine().asarray(inputs)
        if self.autocast and inputs.dtype != np.dtype(self.compute_dtype):
            # Keras' dtype policy: inputs are cast to the compute dtype (ints and bools included).
            inputs = inputs.astype(self.compute_dtype)
        _ad.record_identity(original, inputs)  # a watched input stays connected through the move/cast
        return inputs

    def _standardize_inputs(self, inputs):
        """A multi-input layer's list, each element standardized as a single input is."""
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f'Layer "{self.name}" expects a list of inputs. Received: inputs of type {type(inputs).__name__}'
            )
        return [self._standardize_input(x) for x in inputs]

    def __call__(self, inputs, training=None):
        if _symbolic.any_symbolic(inputs):  # building a functional model: record a node
            return _symbolic.symbolic_call(self, [inputs])
        if self._multi_input:
            inputs = self._standardize_inputs(inputs)
            if not self.built:
                self._ensure_built([x.shape for x in inputs])
        else:
            inputs = self._standardize_input(inputs)
            if self.input_spec is not None:
                self.input_spec.check(inputs.shape, self.name)
            if not self.built:
                self._ensure_built(inputs.shape)
                if self.input_spec is not None:
                    self.input_spec.check(inputs.shape, self.name)
        outputs = self.call(inputs) if training is None else self._call_training(inputs, training)
        if self.activity_regularizer is not None:
            # Keras divides the penalty by the batch size (so it does not grow with the batch),
            # 0 for an empty batch (divide_no_nan).
            penalty = self.activity_regularizer(outputs)
            batch = outputs.shape[0] if outputs.ndim > 0 else 1
            self._activity_losses = [_F.divide(penalty, batch) if batch else _F.multiply(penalty, 0.0)]
        if any(w.regularizer is not None for w in self._weights):
            # Where the weight penalties are computed: the last call's device (marked by an array
            # of no elements there), or the host.
            self._penalty_device = None if type(inputs) is np.ndarray else inputs.reshape(-1)[:0].copy()
        return outputs

    def _call_training(self, inputs, training):
        return self.call(inputs)

    # ---- config ----------------------------------------------------------------------------
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": {
                "module": "keras",
                "class_name": "DTypePolicy",
                "config": {"name": self._dtype_policy},
                "registered_name": None,
            },
            # Keras adds the key only when a regularizer is set; layers that always list it
            # (the conv family) overwrite it with their own entry.
            **({"activity_regularizer": regularizers.serialize(self.activity_regularizer)}
               if self.activity_regularizer is not None else {}),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """The layer ``config`` describes. Its activation, initializers, regularizers and
        constraints resolve only to gpuconv's built-ins and to objects the caller supplies
        (``custom_objects``, ``gpuconv.saving``'s scope and registry), never to a module the
        config names."""
        with _Scope(custom_objects):
            try:
                return cls(**config)
            except Exception as e:  # Keras' wrapping: the class, the config and the cause
                raise DeserializationError(
                    f"Error when deserializing class '{cls.__name__}' using config={config}.\n\n"
                    f"Exception encountered: {e}"
                ) from e

    # A lock can be neither pickled nor deep-copied: a copy gets its own.
    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_build_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build_lock = threading.RLock()

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"

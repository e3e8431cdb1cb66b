"""Inference fusion: what a Sequential or functional model runs when it predicts.

When a model is called for inference (``training`` falsy, no ``GradientTape`` recording in the
thread), groups of layers that compute one affine map and one elementwise function run as one
op call:

- a convolution (Conv1D/2D/3D, DepthwiseConv1D/2D/3D, SeparableConv1D/2D through its pointwise
  kernel, Conv1D/2D/3DTranspose) or a Dense layer, with a linear activation of its own,
- then a BatchNormalization on the channel axis of that output, folded into the kernel and bias
  (``kernel * gamma / sqrt(var + eps)`` per output channel, ``bias' = (bias - mean) *
  gamma / sqrt(var + eps) + beta``; depthwise: per (channel, multiplier)),
- then an activation (an ``Activation`` of a built-in elementwise function, ``ReLU()`` or
  ``ReLU(6)``), passed to the op as its activation: the engine fuses it into the epilogue when it
  can (``FUSED_ACTIVATIONS``), ``gpuconv.ops`` applies it right after otherwise.

A group needs each output to feed only the next member (a convolution whose output a second
layer also reads, or that is a model output, is never folded) and at least a BatchNormalization,
or (convolutions) an activation, after the producer. Everything else runs as written.

Folded weights are computed in float64 from the variables' values on the device the input lives
on, then cast to the compute dtype, so the fused model agrees with the unfused one to float32
rounding. They are cached per device and recomputed when a weight changes (``Variable._version``
counts assigns and optimizer / moving-statistics updates; an in-place write into the array
``Variable.value`` returns is not seen). The plan itself is recomputed when the model's layers
change (Sequential.add/pop) or a layer's ``trainable``, activation, dtype policy, axis, epsilon,
... change.

Turning it off: ``model.fuse_inference = False`` for one model, ``gpuconv.fusion.set_enabled(False)``
for the process, or the environment variable ``GPUCONV_FUSION=0`` read on first use.
``gpuconv.fusion.plan_for(model).describe()`` lists the groups a model runs fused.
"""
import os
import threading
import weakref

import numpy as np

from . import activations as _activations
from . import arrays as _arrays
from . import ops as _ops
from ._env_switch import switch
from .autodiff import tape as _tape
from .dtypes import accumulation_dtype
from .layers.activation_layers import ReLU
from .layers.base_layer import Layer
from .layers.conv import BaseConv
from .layers.conv_common import weight_array
from .layers.conv_transpose import BaseConvTranspose
from .layers.core import Activation, Dense
from .layers.depthwise_conv import BaseDepthwiseConv
from .layers.normalization import BatchNormalization
from .layers.separable_conv import BaseSeparableConv
from .variables import Variable

__all__ = ["FusedGroup", "FusionPlan", "fusing", "is_enabled", "plan_for", "set_enabled"]

ENVIRONMENT_VARIABLE = "GPUCONV_FUSION"


# --------------------------------------------------------------------------------------------
# The switches
# --------------------------------------------------------------------------------------------
_state = {"enabled": None}  # None: not read from the environment yet


def _from_environment():
    return switch(ENVIRONMENT_VARIABLE, os.environ.get(ENVIRONMENT_VARIABLE, ""))


def _check_bool(value, what):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{what}` must be a bool. Received: {what}={value!r}")
    return bool(value)


def set_enabled(enabled):
    """Turn inference fusion on or off for every model of the process (overrides
    ``GPUCONV_FUSION``). ``model.fuse_inference = False`` turns it off for one model."""
    _state["enabled"] = _check_bool(enabled, "enabled")


def is_enabled():
    """Whether fusion is on for the process (``set_enabled``, else ``GPUCONV_FUSION``, else True)."""
    if _state["enabled"] is None:
        _state["enabled"] = _from_environment()
    return _state["enabled"]


def fusing(model, training):
    """Whether this call of ``model`` runs its fused plan: inference (``training`` falsy), no
    tape recording in this thread (gradients need every layer's own op), fusion on globally and
    on the model (``model.fuse_inference``, default True)."""
    if training or _tape._active():
        return False
    return is_enabled() and _check_bool(getattr(model, "fuse_inference", True), "fuse_inference")


# --------------------------------------------------------------------------------------------
# Which layers qualify
# --------------------------------------------------------------------------------------------
_PRODUCERS = (
    (BaseConv, "conv"), (BaseDepthwiseConv, "depthwise"), (BaseSeparableConv, "separable"),
    (BaseConvTranspose, "transpose"), (Dense, "dense"),
)
_RUN_METHODS = ("call", "__call__", "_call_training")


def _plain(layer, base):
    """``layer`` is a built ``base`` that runs ``base``'s own code: a subclass (or an instance)
    overriding how it runs does something fusion cannot see, and an activity regularizer needs
    the layer's own output."""
    if not isinstance(layer, base) or not layer.built or layer.activity_regularizer is not None:
        return False
    return all(getattr(type(layer), m) is getattr(base, m) and m not in layer.__dict__ for m in _RUN_METHODS)


def _producer_kind(layer):
    """The kind of affine op ``layer`` is ("conv", "depthwise", "separable", "transpose",
    "dense"), when it may head a group (linear activation of its own, autocast inputs)."""
    for base, kind in _PRODUCERS:
        if _plain(layer, base):
            break
    else:
        return None
    if _activations.builtin_elementwise_name(layer.activation) != "linear" or not layer.autocast:
        return None
    return kind


def _out_channels(layer, kind):
    if kind == "depthwise":
        return layer.kernel.shape[-2] * layer.kernel.shape[-1]
    return layer.units if kind == "dense" else layer.filters


def _folds_into(bn, producer, kind):
    """Whether BatchNormalization ``bn`` normalizes the producer's output channels, in its dtype."""
    if not _plain(bn, BatchNormalization) or bn.compute_dtype != producer.compute_dtype:
        return False
    ndim = bn.input_spec.ndim if bn.input_spec is not None else None
    if ndim is None or bn.moving_mean.shape != (_out_channels(producer, kind),):
        return False
    if kind == "dense":
        channel = ndim - 1
    elif ndim != producer.rank + 2:
        return False
    else:
        channel = producer._channel_axis % ndim
    return bn.axis % ndim == channel


def _epilogue_activation(layer, dtype):
    """The built-in activation function ``layer`` applies, when it is one an op takes (an
    Activation of a built-in elementwise function, ReLU() as relu, ReLU(6) as relu6); else None."""
    if layer.autocast and layer.compute_dtype != dtype:
        return None
    if _plain(layer, Activation):
        fn = layer.activation
        return fn if _activations.builtin_elementwise_name(fn) is not None else None
    if _plain(layer, ReLU) and layer.negative_slope == 0 and layer.threshold == 0:
        if layer.max_value is None:
            return _activations.relu
        if layer.max_value == 6:
            return _activations.relu6
    return None


# --------------------------------------------------------------------------------------------
# Folding (float64 on the input's device, then the compute dtype)
# --------------------------------------------------------------------------------------------
def _f64(var, like):
    return var.array_like(like).astype(np.float64)


def _scale_and_shift(bn, like):
    """Per channel ``gamma / sqrt(var + eps)`` and ``beta - mean * scale``, float64."""
    xp = _arrays.array_module(like)
    scale = 1.0 / xp.sqrt(_f64(bn.moving_variance, like) + bn.epsilon)
    if bn.gamma is not None:
        scale = scale * _f64(bn.gamma, like)
    shift = -_f64(bn.moving_mean, like) * scale
    if bn.beta is not None:
        shift = shift + _f64(bn.beta, like)
    return scale, shift


def _conv_kernel64(layer, like):
    """The kernel the layer convolves with (LoRA merged in the variable dtype, as its call does)."""
    if not layer.lora_enabled:
        return _f64(layer._kernel, like)
    merged = layer._merged_kernel(layer._kernel.array_like(like), layer.lora_kernel_a.array_like(like),
                                  layer.lora_kernel_b.array_like(like))
    return merged.astype(np.float64)


def _transpose_scale(layer, scale, like):
    """``scale`` laid over a transposed kernel ``(k.., F // groups, C_in)``: entry (j, c) feeds
    output channel ``(c // (C_in // groups)) * (F // groups) + j``."""
    per_group_out, c_in = layer.kernel.shape[-2], layer.kernel.shape[-1]
    per_group_in = c_in // layer.groups
    index = (np.arange(c_in) // per_group_in)[None, :] * per_group_out + np.arange(per_group_out)[:, None]
    return scale[_arrays.array_module(like).asarray(index)]


def _fold(kind, layer, bn, like, dtype):
    """The producer's weights with ``bn`` folded in: (kernel(s)..., bias), in ``dtype``."""
    scale, shift = _scale_and_shift(bn, like)
    bias = shift if layer.bias is None else _f64(layer.bias, like) * scale + shift
    if kind == "conv":
        kernels = (_conv_kernel64(layer, like) * scale,)
    elif kind == "dense":
        kernels = (_f64(layer._kernel, like) * scale,)
    elif kind == "depthwise":
        kernels = (_f64(layer.kernel, like) * scale.reshape(layer.kernel.shape[-2:]),)
    elif kind == "separable":
        kernels = (_f64(layer.depthwise_kernel, like), _f64(layer.pointwise_kernel, like) * scale)
    else:
        kernels = (_f64(layer.kernel, like) * _transpose_scale(layer, scale, like),)
    return tuple(a.astype(dtype) for a in kernels + (bias,))


def _own_weights(kind, layer, x):
    """The weights exactly as the layer's own call reads them (a group with no BatchNormalization)."""
    if kind == "conv":
        return layer._kernel_array(x), layer._bias_array(x)
    if kind == "separable":
        return weight_array(layer.depthwise_kernel, x), weight_array(layer.pointwise_kernel, x), layer._bias_array(x)
    return weight_array(layer.kernel, x), layer._bias_array(x)


# --------------------------------------------------------------------------------------------
# Running a group
# --------------------------------------------------------------------------------------------
def _geometry(layer):
    return dict(strides=layer.strides, padding=layer.padding, data_format=layer.data_format,
                dilation_rate=layer.dilation_rate)


def _run_conv(layer, x, w, activation):
    return _ops.conv_core(x, w[0], w[1], allow_causal=layer.rank == 1, activation=activation, **_geometry(layer))


def _run_depthwise(layer, x, w, activation):
    return _ops.depthwise_conv_core(x, w[0], w[1], allow_causal=layer.rank == 1, activation=activation,
                                    **_geometry(layer))


def _run_separable(layer, x, w, activation):
    return _ops.separable_conv_core(x, w[0], w[1], w[2], allow_causal=layer.rank == 1, activation=activation,
                                    **_geometry(layer))


def _run_transpose(layer, x, w, activation):
    return _ops.conv_transpose_core(x, w[0], w[1], output_padding=layer.output_padding, groups=layer.groups,
                                    activation=activation, **_geometry(layer))


def _run_dense(layer, x, w, activation):
    # Dense's arithmetic: float16 multiplied in float32 and rounded once.
    xp = _arrays.array_module(x)
    y = (xp.matmul(x.astype(w[0].dtype, copy=False), w[0]) + w[1]).astype(x.dtype, copy=False)
    return y if activation is None else activation(y)


_RUNNERS = {"conv": _run_conv, "depthwise": _run_depthwise, "separable": _run_separable,
            "transpose": _run_transpose, "dense": _run_dense}


def _mark_penalty_device(layer, x):
    """What ``Layer.__call__`` records for ``layer.losses``: where the weight penalties are computed."""
    if any(w.regularizer is not None for w in layer._weights):
        layer._penalty_device = None if type(x) is np.ndarray else x.reshape(-1)[:0].copy()


class FusedGroup:
    """A producer (convolution or Dense), the BatchNormalization folded into it (or None) and the
    activation fused after it (or None), run as one op. Callable as a layer is: ``group(x)``."""

    def __init__(self, kind, producer, batch_norm, activation_layer, activation):
        self.kind = kind
        self.producer = producer
        self.batch_norm = batch_norm
        self.activation_layer = activation_layer
        self.activation = activation
        self._folded = {}  # (device, dtype) -> (weight versions, folded arrays)

    @property
    def layers(self):
        return tuple(m for m in (self.producer, self.batch_norm, self.activation_layer) if m is not None)

    @property
    def activation_name(self):
        return None if self.activation is None else _activations.builtin_elementwise_name(self.activation)

    def describe(self):
        """e.g. ``conv2d (Conv2D) + batch_normalization (BatchNormalization) + re_lu (ReLU) ->
        Conv2D, BatchNormalization folded, activation relu``."""
        members = " + ".join(f"{m.name} ({type(m).__name__})" for m in self.layers)
        parts = [type(self.producer).__name__]
        if self.batch_norm is not None:
            parts.append("BatchNormalization folded")
        if self.activation is not None:
            parts.append(f"activation {self.activation_name}")
        return f"{members} -> {', '.join(parts)}"

    def __repr__(self):
        return f"<FusedGroup {self.describe()}>"

    def _versions(self):
        members = (self.producer,) if self.batch_norm is None else (self.producer, self.batch_norm)
        return tuple((id(v), getattr(v, "_version", 0)) for m in members for v in m._weights)

    def _weights_for(self, x):
        if self.batch_norm is None:
            return _own_weights(self.kind, self.producer, x)
        # Dense computes float16 in float32; the convolutions in the input's dtype.
        dtype = accumulation_dtype(x.dtype) if self.kind == "dense" else x.dtype
        key = (Variable._device_key(x), dtype.str)
        versions = self._versions()  # read before the values: a change in between is caught next call
        cached = self._folded.get(key)
        if cached is not None and cached[0] == versions:
            return cached[1]
        arrays = _fold(self.kind, self.producer, self.batch_norm, x, dtype)
        self._folded[key] = (versions, arrays)
        return arrays

    def __call__(self, x, training=None):
        layer = self.producer
        x = layer._standardize_input(x)
        if layer.input_spec is not None:
            layer.input_spec.check(x.shape, layer.name)
        y = _RUNNERS[self.kind](layer, x, self._weights_for(x), self.activation)
        for member in (layer, self.batch_norm):
            if member is not None:
                _mark_penalty_device(member, x)
        return y


class _FusedNode:
    """A functional model's node standing for a group: the first member's arguments, the last
    member's outputs (``Functional.__call__`` runs it as it runs an operation's node)."""

    def __init__(self, group, first, last):
        self.operation = group
        self.args = first.args
        self.kwargs = {}
        self.inputs = first.inputs
        self.outputs = last.outputs
        self.is_input = False


# --------------------------------------------------------------------------------------------
# Plans
# --------------------------------------------------------------------------------------------
class FusionPlan:
    """What a model runs for inference: ``steps`` (layers, or functional nodes, with groups in
    place of their members) and the ``groups`` among them."""

    def __init__(self, key, steps, groups):
        self.key = key
        self.steps = steps
        self.groups = tuple(groups)

    def describe(self):
        """One line per fused group (empty when nothing is fused)."""
        return [group.describe() for group in self.groups]

    def __repr__(self):
        return f"<FusionPlan groups={len(self.groups)}>"


def _group_from(chain):
    """The group heading ``chain`` (up to three layers, each reading the one before it alone),
    as ``(group, number of layers it takes)``, or None when the first layer runs as it is."""
    producer, rest = chain[0], list(chain[1:])
    kind = _producer_kind(producer)
    if kind is None:
        return None
    bn = rest.pop(0) if rest and _folds_into(rest[0], producer, kind) else None
    activation_layer = rest[0] if rest else None
    activation = None if activation_layer is None else _epilogue_activation(activation_layer, producer.compute_dtype)
    if activation is None:
        activation_layer = None
    if bn is None and (activation is None or kind == "dense"):
        return None  # nothing to gain (Dense + activation is what Dense does already)
    taken = 1 + (bn is not None) + (activation_layer is not None)
    return FusedGroup(kind, producer, bn, activation_layer, activation), taken


def _sequential_plan(model, key):
    layers, steps, groups, i = list(model._layers), [], [], 0
    while i < len(layers):
        found = _group_from(layers[i:i + 3])
        if found is None:
            steps.append(layers[i])
            i += 1
            continue
        group, taken = found
        steps.append(group)
        groups.append(group)
        i += taken
    return FusionPlan(key, steps if groups else model._layers, groups)


def _single_tensor_arg(node):
    """Whether a node is a layer called on one symbolic tensor (not a list, not constants)."""
    args = node.args
    return (isinstance(node.operation, Layer) and len(args) == 1 and len(node.inputs) == 1
            and args[0] is node.inputs[0])


class _Readers:
    """Who reads each tensor of a functional model: its nodes, and the caller for an output."""

    def __init__(self, model):
        self.uses, self.reader = {}, {}
        for node in model._run_order:
            for tensor in node.inputs:
                self.uses[id(tensor)] = self.uses.get(id(tensor), 0) + 1
                self.reader[id(tensor)] = node
        for tensor in model.outputs:
            self.uses[id(tensor)] = self.uses.get(id(tensor), 0) + 1

    def sole_reader(self, node):
        """The layer node that alone reads ``node``'s single output, called on it alone; or None."""
        if len(node.outputs) != 1 or self.uses.get(id(node.outputs[0])) != 1:
            return None
        nxt = self.reader.get(id(node.outputs[0]))
        return nxt if nxt is not None and _single_tensor_arg(nxt) else None

    def chain(self, node, length=3):
        """``node`` and the nodes after it that each read the previous one's output alone."""
        nodes = [node]
        while len(nodes) < length:
            nxt = self.sole_reader(nodes[-1])
            if nxt is None:
                break
            nodes.append(nxt)
        return nodes


def _functional_plan(model, key):
    readers, steps, groups, absorbed = _Readers(model), [], [], set()
    for node in model._run_order:
        if node in absorbed:
            continue
        found = None
        if _single_tensor_arg(node):
            nodes = readers.chain(node)
            found = _group_from([n.operation for n in nodes])
        if found is None:
            steps.append(node)
            continue
        group, taken = found
        absorbed.update(nodes[1:taken])
        steps.append(_FusedNode(group, nodes[0], nodes[taken - 1]))
        groups.append(group)
    return FusionPlan(key, steps if groups else model._run_order, groups)


# What a layer's part in a plan depends on, beyond its weights' values (a change rebuilds the
# plan), per family; other layers count only by identity, trainable and built.
_WATCHED = (
    (BaseConv, ("data_format", "use_bias", "lora_enabled", "groups")),
    (BaseDepthwiseConv, ("data_format", "use_bias")),
    (BaseSeparableConv, ("data_format", "use_bias")),
    (BaseConvTranspose, ("data_format", "use_bias", "groups", "output_padding")),
    (Dense, ("use_bias",)),
    (BatchNormalization, ("axis", "epsilon", "center", "scale", "gamma", "beta", "moving_mean", "moving_variance")),
    (Activation, ()),
    (ReLU, ("max_value", "negative_slope", "threshold")),
)
_watched_by_type = {}


def _watched(cls):
    names = _watched_by_type.get(cls, False)
    if names is False:
        names = next((names for base, names in _WATCHED if issubclass(cls, base)), None)
        _watched_by_type[cls] = names
    return names


def _layer_key(layer):
    """What decides ``layer``'s part in a plan. Read from the instance dict (every watched
    attribute is set in __init__ / build): this runs on every inference call. Objects compare by
    identity (functions, Variables); the plan holds them (``_pins``), so no id is reused."""
    key = (id(layer), layer.trainable, layer.built)
    names = _watched(type(layer))
    if names is None:
        return key
    attributes = layer.__dict__
    return key + (
        layer._dtype_policy, layer.autocast, id(layer.activity_regularizer), id(attributes.get("activation")),
        id(layer.input_spec), "call" in attributes or "__call__" in attributes or "_call_training" in attributes,
    ) + tuple(map(attributes.get, names))


def _model_layers(model):
    return list(model._layers) if _is_sequential(model) else [op for op in model._operations if isinstance(op, Layer)]


def _model_key(model):
    return tuple(_layer_key(layer) for layer in _model_layers(model))


def _pins(layers):
    """The objects a key names by ``id``: the plan holds them, so no id is reused while it lives."""
    names = ("activity_regularizer", "activation", "input_spec")
    return [layers] + [layer.__dict__.get(name) for layer in layers for name in names]


def _is_sequential(model):
    from .models import Sequential

    return isinstance(model, Sequential)


def _is_functional(model):
    from .functional import Functional

    return isinstance(model, Functional)


_plans = weakref.WeakKeyDictionary()  # model -> FusionPlan; a model that goes away takes its plan
_plans_lock = threading.Lock()


def plan_for(model):
    """The fusion plan ``model`` (a Sequential or functional model) runs for inference, built now
    if the model changed since the last one. Available whether fusion is on or off."""
    if not (_is_sequential(model) or _is_functional(model)):
        raise TypeError(
            f"Argument `model` must be a Sequential or functional gpuconv model. Received: model={model!r} "
            f"of type {type(model).__name__}"
        )
    key = _model_key(model)
    plan = _plans.get(model)
    if plan is not None and plan.key == key:
        return plan
    with _plans_lock:
        plan = _plans.get(model)
        if plan is None or plan.key != key:
            plan = (_sequential_plan if _is_sequential(model) else _functional_plan)(model, key)
            plan._pins = _pins(_model_layers(model))
            _plans[model] = plan
    return plan


# --------------------------------------------------------------------------------------------
# The hooks Sequential and Functional call
# --------------------------------------------------------------------------------------------
def sequential_layers(model, training):
    """What ``Sequential`` runs, in order: its layers, or its fused plan's steps."""
    return plan_for(model).steps if fusing(model, training) else model._layers


def run_order(model, training):
    """The nodes a functional model runs, in order: its own, or its fused plan's."""
    return plan_for(model).steps if fusing(model, training) else model._run_order

"""What every weighted convolution-family layer shares (Conv, ConvTranspose, DepthwiseConv,
SeparableConv, LocallyConnected): argument normalisation in Keras' order, the
initializer/regularizer/constraint triple per weight role, the channel-axis bookkeeping of
build(), handing weights to ``gpuconv.ops`` on the input's device, and activation fusion.

Arguments are normalised exactly once, in ``__init__``, through ``gpuconv.geometry``; every
later step (build, call, get_config) reads the stored, already-canonical values.
"""
import numbers

from .. import activations, constraints, initializers, regularizers
from .. import geometry as g
from .base_layer import InputSpec, Layer


def serialize_or_none(module, obj):
    """``module.serialize(obj)``, with None kept as None (Keras configs hold None there)."""
    return None if obj is None else module.serialize(obj)


def split_activation(fn):
    """``(name, after)`` for a resolved activation callable.

    ``name`` is handed to the op so the engine can fuse it into the epilogue; it is set only for
    a built-in elementwise activation (the object ``activations.get(name)`` returns, so a user
    function that happens to be called "relu" is never replaced). ``after`` is the callable to
    apply to the op's result when the engine cannot fuse it (softmax, user functions).
    Linear is neither.
    """
    try:
        name = activations.serialize(fn)
    except Exception:  # a user callable the registry cannot name: apply it ourselves
        name = None
    if isinstance(name, str):
        try:
            same = activations.get(name) is fn
        except Exception:
            same = False
        if same and name == "linear":
            return None, None
        if same and name in activations.ELEMENTWISE:
            return name, None
    return None, fn


def check_groups(groups, filters):
    """Keras' two groups checks (keras_spec 2.1), shared by Conv and our grouped ConvTranspose."""
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups <= 0:
        raise ValueError(f"The number of groups must be a positive integer. Received: groups={groups}.")
    if filters % groups != 0:
        raise ValueError(
            "The number of filters must be evenly divisible by the number of groups. "
            f"Received: groups={groups}, filters={filters}."
        )
    return int(groups)


def check_input_groups(groups, channels, input_shape):
    """Build-time: the input channels split into ``groups`` equal blocks (Keras' text)."""
    if channels % groups != 0:
        raise ValueError(
            "The number of input channels must be evenly divisible by the number of groups. "
            f"Received groups={groups}, but the input has {channels} channels (full input shape is {input_shape})."
        )


def weight_array(var, x):
    """The variable's value on ``x``'s device (cached GPU copy), in ``x``'s dtype.

    The cast only happens under a mixed policy (float32 variables, float16 compute) or with
    ``autocast=False``; the op requires one dtype for inputs and weights.
    """
    w = var.array_like(x)
    return w if w.dtype == x.dtype else w.astype(x.dtype)


class ConvFamilyLayer(Layer):
    """Base of the weighted conv-family layers; never instantiated directly.

    Subclasses call, in Keras' order: ``Layer.__init__`` (unknown kwargs fail first),
    ``_set_geometry``, then any extra normalisation (output_padding), ``_set_data_format``,
    ``_set_activation``, ``_set_weight_arguments``; and only then the value checks.
    """

    rank = None

    # ---- construction helpers ----------------------------------------------------------------
    def _set_geometry(self, rank, kernel_size, strides, dilation_rate, padding, allow_causal=False,
                      strides_allow_zero=False):
        self.rank = rank
        self.kernel_size = g.standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = g.standardize_tuple(strides, rank, "strides", allow_zero=strides_allow_zero)
        if dilation_rate is not None:
            self.dilation_rate = g.standardize_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = g.standardize_padding(padding, allow_causal=allow_causal)

    def _set_data_format(self, data_format):
        self.data_format = g.standardize_data_format(data_format)

    def _set_activation(self, activation, use_bias):
        self.activation = activations.get(activation)
        self.use_bias = use_bias

    def _set_weight_arguments(self, roles, initializer, regularizer, constraint):
        """``roles`` e.g. ("kernel", "bias"); each dict maps a role to the user's argument.

        Sets ``{role}_initializer`` / ``_regularizer`` / ``_constraint``, resolving all
        initializers, then all regularizers, then all constraints (Keras' order, which decides
        which error a user sees first).
        """
        self._weight_roles = tuple(roles)
        for role in roles:
            setattr(self, f"{role}_initializer", initializers.get(initializer[role]))
        for role in roles:
            setattr(self, f"{role}_regularizer", regularizers.get(regularizer[role]))
        for role in roles:
            setattr(self, f"{role}_constraint", constraints.get(constraint[role]))

    # ---- build helpers -------------------------------------------------------------------------
    @property
    def _channel_axis(self):
        return g.channel_axis(self.data_format)

    def _input_channels(self, input_shape):
        """The defined channel count of ``input_shape`` (weights cannot be sized from None)."""
        input_shape = tuple(input_shape)
        InputSpec(min_ndim=self.rank + 2).check(input_shape, self.name)  # build() may be called directly
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"The channel dimension of the inputs to {type(self).__name__} should be defined "
                f"(axis {self._channel_axis}, data_format={self.data_format}). Received input_shape={input_shape}"
            )
        return int(channels)

    def _lock_input_channels(self, channels, ndim=None):
        """After build, a different channel count fails the InputSpec check (Keras)."""
        if ndim is None:
            self.input_spec = InputSpec(min_ndim=self.rank + 2, axes={self._channel_axis: channels})
        else:
            self.input_spec = InputSpec(ndim=ndim, axes={self._channel_axis: channels})

    def _add_role_weight(self, name, role, shape):
        return self.add_weight(
            name=name, shape=shape,
            initializer=getattr(self, f"{role}_initializer"),
            regularizer=getattr(self, f"{role}_regularizer"),
            constraint=getattr(self, f"{role}_constraint"),
        )

    # ---- call helpers ----------------------------------------------------------------------------
    def _bias_array(self, x):
        return weight_array(self.bias, x) if self.use_bias else None

    def _run_op(self, op, *args, **kwargs):
        """Call a ``gpuconv.ops`` core, letting the engine fuse a built-in elementwise activation."""
        fused, after = split_activation(self.activation)
        y = op(*args, activation=fused, **kwargs)
        return y if after is None else after(y)

    # ---- config ------------------------------------------------------------------------------------
    def _weight_arguments_config(self):
        """initializers, regularizers (+ activity_regularizer), constraints: Keras' key order."""
        roles = self._weight_roles
        config = {f"{r}_initializer": serialize_or_none(initializers, getattr(self, f"{r}_initializer")) for r in roles}
        config.update({f"{r}_regularizer": serialize_or_none(regularizers, getattr(self, f"{r}_regularizer"))
                       for r in roles})
        config["activity_regularizer"] = serialize_or_none(regularizers, self.activity_regularizer)
        config.update({f"{r}_constraint": serialize_or_none(constraints, getattr(self, f"{r}_constraint"))
                       for r in roles})
        return config

    def _activation_config(self):
        return {"activation": activations.serialize(self.activation), "use_bias": self.use_bias}

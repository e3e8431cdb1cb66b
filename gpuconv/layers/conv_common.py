"""What every weighted convolution-family layer shares (Conv, ConvTranspose, DepthwiseConv,
SeparableConv, LocallyConnected): argument normalisation in Keras' order, the
initializer/regularizer/constraint triple per weight role, the channel-axis bookkeeping of
build(), and handing weights and the activation to ``gpuconv.ops`` on the input's device.

Arguments are normalised exactly once, in ``__init__``, through ``gpuconv.geometry``; every
later step (build, call, get_config) reads the stored, already-canonical values.

The public rank classes (Conv2D, ...) spell out Keras' exact signatures (inspect.signature parity
is tested) and forward them to their rank-generic base with ``forwarded_arguments(locals())``.
"""
import numbers

from .. import activations, constraints, initializers, regularizers
from .. import geometry as g
from .base_layer import InputSpec, Layer


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


def forwarded_arguments(constructor_locals):
    """A rank class's constructor arguments, its ``**kwargs`` merged in, as keywords for the base.

    Call it first thing in ``__init__`` (``super().__init__(rank, **forwarded_arguments(locals()))``),
    while ``locals()`` holds only the parameters: the signature stays Keras' to the letter and
    no argument can be forgotten in the hand-off.
    """
    named = {k: v for k, v in constructor_locals.items() if k not in ("self", "kwargs", "__class__")}
    return {**named, **constructor_locals["kwargs"]}


def weight_array(var, x):
    """The variable's value on ``x``'s device (cached GPU copy), in ``x``'s dtype.

    The cast only happens under a mixed policy (float32 variables, float16 compute) or with
    ``autocast=False``; the op requires one dtype for inputs and weights.
    """
    w = var.array_like(x)
    if w.dtype == x.dtype:
        return w
    from ..autodiff import record_identity  # here: this brief's edit stays inside weight_array

    cast = w.astype(x.dtype)
    record_identity(w, cast)  # the variable's gradient flows back through the cast
    return cast


class ConvFamilyLayer(Layer):
    """Base of the weighted conv-family layers; never instantiated directly.

    Subclasses call, in Keras' order: ``Layer.__init__`` (unknown kwargs fail first),
    ``_set_geometry``, then any extra normalisation (output_padding), ``_set_common_arguments``;
    and only then the value checks.
    """

    rank = None
    # The attributes get_config reports first, in Keras' key order; the activation and the
    # weight arguments follow them (see get_config).
    _config_keys = ()

    # ---- construction helpers ----------------------------------------------------------------
    def _set_geometry(self, rank, kernel_size, strides, dilation_rate, padding, allow_causal=False):
        self.rank = rank
        self.kernel_size = g.standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = g.standardize_tuple(strides, rank, "strides")
        if dilation_rate is not None:
            self.dilation_rate = g.standardize_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = g.standardize_padding(padding, allow_causal=allow_causal)

    def _set_common_arguments(self, data_format, activation, use_bias, **weight_arguments):
        """data_format, activation and use_bias, then the weight arguments, one keyword per role
        in the layer's weight order: ``kernel=(initializer, regularizer, constraint)``.

        Sets ``{role}_initializer`` / ``_regularizer`` / ``_constraint``, resolving all
        initializers, then all regularizers, then all constraints (Keras' order, which decides
        which error a user sees first).
        """
        self.data_format = g.standardize_data_format(data_format)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self._weight_roles = tuple(weight_arguments)
        kinds = (("initializer", initializers), ("regularizer", regularizers), ("constraint", constraints))
        for position, (kind, module) in enumerate(kinds):
            for role, triple in weight_arguments.items():
                setattr(self, f"{role}_{kind}", module.get(triple[position]))

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

    def _begin_build(self, input_shape, groups=None):
        """The input channel count, after build()'s checks in Keras' order: a defined channel
        axis (then locked in the InputSpec), channels divisible by ``groups`` when given, and
        the output geometry (every output size > 0)."""
        input_shape = tuple(input_shape)
        channels = self._input_channels(input_shape)
        self._lock_input_channels(channels)
        if groups is not None:
            check_input_groups(groups, channels, input_shape)
        self.compute_output_shape(input_shape)
        return channels

    def _add_role_weight(self, name, role, shape):
        return self.add_weight(
            name=name, shape=shape,
            initializer=getattr(self, f"{role}_initializer"),
            regularizer=getattr(self, f"{role}_regularizer"),
            constraint=getattr(self, f"{role}_constraint"),
        )

    def _add_bias(self, shape):
        """The ``bias`` weight, or None without ``use_bias``."""
        return self._add_role_weight("bias", "bias", shape) if self.use_bias else None

    def _conv_output_shape(self, input_shape, filters):
        return g.conv_output_shape(
            input_shape, filters, self.kernel_size, self.strides, self.padding, self.data_format,
            self.dilation_rate,
        )

    # ---- call helpers ----------------------------------------------------------------------------
    def _bias_array(self, x):
        return weight_array(self.bias, x) if self.use_bias else None

    # ---- config ------------------------------------------------------------------------------------
    def get_config(self):
        """``_config_keys``, activation and use_bias, then the weight arguments: initializers,
        regularizers (+ activity_regularizer), constraints, in Keras' key order."""
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self._config_keys})
        config.update({"activation": activations.serialize(self.activation), "use_bias": self.use_bias})

        def serialized(kind, module):
            return {f"{r}_{kind}": module.serialize(getattr(self, f"{r}_{kind}")) for r in self._weight_roles}

        config.update(serialized("initializer", initializers))
        config.update(serialized("regularizer", regularizers))
        config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        config.update(serialized("constraint", constraints))
        return config

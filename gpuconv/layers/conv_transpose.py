"""Conv1DTranspose / Conv2DTranspose / Conv3DTranspose: Keras 3's BaseConvTranspose, plus `groups`.

Kernel ``kernel_size + (filters // groups, C_in)`` (output channels before input channels, as
Keras), bias ``(filters,)``. Output length and crop follow keras_spec 1.5 through
``gpuconv.geometry.conv_transpose_geometry``; numerics go through ``ops.conv_transpose_core``.

Beyond Keras: ``groups`` (PyTorch ConvTranspose parity, keras-team/keras#19871). Input block g
(``C_in/groups`` channels) feeds output block g (``filters/groups`` channels). To keep Keras'
config byte-for-byte for every argument Keras accepts, ``groups`` appears in get_config only
when it is not 1; ``from_config`` of a config without it gives groups=1.
"""
from .. import geometry as g
from .. import ops
from .base_layer import InputSpec
from .conv_common import ConvFamilyLayer, check_groups, forwarded_arguments, weight_array

__all__ = [
    "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "Convolution1DTranspose", "Convolution2DTranspose", "Convolution3DTranspose",
]


class BaseConvTranspose(ConvFamilyLayer):
    """Rank-generic transposed convolution (the adjoint of cross-correlation)."""

    _config_keys = (
        "filters", "kernel_size", "strides", "padding", "output_padding", "data_format", "dilation_rate",
    )

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, groups=1, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._set_geometry(rank, kernel_size, strides, dilation_rate, padding)
        self.output_padding = (
            None if output_padding is None
            else g.standardize_tuple(output_padding, rank, "output_padding", allow_zero=True)
        )
        self._set_common_arguments(
            data_format, activation, use_bias,
            kernel=(kernel_initializer, kernel_regularizer, kernel_constraint),
            bias=(bias_initializer, bias_regularizer, bias_constraint),
        )
        self.input_spec = InputSpec(min_ndim=rank + 2)
        # Checks in Keras' order (keras_spec 2.2); the groups checks (ours) come last.
        self.filters = g.check_positive_int(filters, "filters")
        g.check_output_padding(self.output_padding, self.strides)
        g.check_strides_dilation(self.strides, self.dilation_rate)
        self.groups = check_groups(groups, self.filters)

    def build(self, input_shape):
        channels = self._begin_build(input_shape, groups=self.groups)
        self.kernel = self._add_role_weight(
            "kernel", "kernel", self.kernel_size + (self.filters // self.groups, channels)
        )
        self.bias = self._add_bias((self.filters,))
        self.built = True

    def call(self, inputs):
        return ops.conv_transpose_core(
            inputs, weight_array(self.kernel, inputs), self._bias_array(inputs),
            strides=self.strides, padding=self.padding, output_padding=self.output_padding,
            data_format=self.data_format, dilation_rate=self.dilation_rate, groups=self.groups,
            activation=self.activation,
        )

    def compute_output_shape(self, input_shape):
        """A LIST, as Keras' compute_conv_transpose_output_shape returns (keras_spec 1.5)."""
        input_shape = tuple(input_shape)
        if len(input_shape) != self.rank + 2:
            kernel_shape = self.kernel_size + (self.filters // self.groups, input_shape[self._channel_axis]
                                               if input_shape else None)
            raise ValueError(
                "Kernel shape must have the same length as input, but received kernel of shape "
                f"{kernel_shape} and input of shape {input_shape}."
            )
        spatial = g.spatial_dims(input_shape, self.data_format)
        out, _ = g.conv_transpose_geometry(
            spatial, self.kernel_size, self.strides, self.dilation_rate, self.padding, self.output_padding
        )
        # Beyond Keras (which returns the 0): an empty output is refused, as for Conv and pooling.
        kernel_shape = self.kernel_size + (self.filters // self.groups, input_shape[self._channel_axis])
        g.check_conv_output(out, input_shape, kernel_shape, self.dilation_rate, self.strides, self.padding)
        return list(g.make_shape(input_shape[0], self.filters, out, self.data_format))

    def get_config(self):
        config = super().get_config()
        if self.groups != 1:  # beyond Keras: absent at the default so Keras' config is unchanged
            config["groups"] = self.groups
        return config


class Conv1DTranspose(BaseConvTranspose):
    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(1, **forwarded_arguments(locals()))


class Conv2DTranspose(BaseConvTranspose):
    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(2, **forwarded_arguments(locals()))


class Conv3DTranspose(BaseConvTranspose):
    # Keras 3 puts data_format BEFORE output_padding here (and only here): positional callers rely on it.
    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid", data_format=None,
                 output_padding=None, dilation_rate=(1, 1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(3, **forwarded_arguments(locals()))


Convolution1DTranspose = Conv1DTranspose
Convolution2DTranspose = Conv2DTranspose
Convolution3DTranspose = Conv3DTranspose

"""DepthwiseConv1D / DepthwiseConv2D (Keras 3's BaseDepthwiseConv) and DepthwiseConv3D (ours).

The variable is named ``kernel`` (``layer.kernel``), shape ``kernel_size + (C_in, depth_multiplier)``;
output channel ``c*depth_multiplier + m``; bias ``(C_in*depth_multiplier,)``. The config keeps
Keras' ``depthwise_*`` names. strides > 1 with dilation > 1 is allowed (Keras >= 3.15).

Beyond Keras: DepthwiseConv3D (keras-team/keras#14670), and padding='causal' on DepthwiseConv1D
(left pad ``dilation*(k-1)``, as Conv1D). Neither changes a Keras configuration.
"""
from .. import geometry as g
from .. import ops
from .base_layer import InputSpec
from .conv_common import ConvFamilyLayer, forwarded_arguments, weight_array

__all__ = ["DepthwiseConv1D", "DepthwiseConv2D", "DepthwiseConv3D"]


class BaseDepthwiseConv(ConvFamilyLayer):
    _config_keys = ("depth_multiplier", "kernel_size", "strides", "padding", "data_format", "dilation_rate")

    def __init__(self, rank, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._set_geometry(rank, kernel_size, strides, dilation_rate, padding, allow_causal=rank == 1)
        self._set_common_arguments(
            data_format, activation, use_bias,
            depthwise=(depthwise_initializer, depthwise_regularizer, depthwise_constraint),
            bias=(bias_initializer, bias_regularizer, bias_constraint),
        )
        self.input_spec = InputSpec(min_ndim=rank + 2)
        self.depth_multiplier = g.check_positive_int(depth_multiplier, "depth_multiplier")

    def build(self, input_shape):
        channels = self._begin_build(input_shape)
        self.kernel = self._add_role_weight("kernel", "depthwise", self.kernel_size + (channels, self.depth_multiplier))
        self.bias = self._add_bias((channels * self.depth_multiplier,))
        self.built = True

    def call(self, inputs):
        return ops.depthwise_conv_core(
            inputs, weight_array(self.kernel, inputs), self._bias_array(inputs),
            strides=self.strides, padding=self.padding, data_format=self.data_format,
            dilation_rate=self.dilation_rate, allow_causal=self.rank == 1,
            activation=self.activation,
        )

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        channels = input_shape[self._channel_axis] if len(input_shape) > 1 else None
        filters = None if channels is None else channels * self.depth_multiplier
        return self._conv_output_shape(input_shape, filters)


class DepthwiseConv1D(BaseDepthwiseConv):
    """1-D depthwise convolution; padding valid | same | causal (causal is beyond Keras)."""

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(1, **forwarded_arguments(locals()))


class DepthwiseConv2D(BaseDepthwiseConv):
    """2-D depthwise convolution; padding valid | same."""

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(2, **forwarded_arguments(locals()))


class DepthwiseConv3D(BaseDepthwiseConv):
    """3-D depthwise convolution (beyond Keras); padding valid | same."""

    def __init__(self, kernel_size, strides=(1, 1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1, 1), activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(3, **forwarded_arguments(locals()))

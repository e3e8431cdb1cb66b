"""SeparableConv1D / SeparableConv2D: Keras 3's BaseSeparableConv.

Weights, in this order: ``depthwise_kernel`` ``kernel_size + (C_in, dm)``, ``pointwise_kernel``
``(1,)*rank + (C_in*dm, filters)``, ``bias`` ``(filters,)``. Strides, padding and dilation apply to
the depthwise step; the pointwise step is 1x1, stride 1. Numerics: ``ops.separable_conv_core``.

Beyond Keras: padding='causal' on SeparableConv1D (Keras 2 had it, Keras 3 dropped it;
tensorflow/tensorflow#90213). It does not change any Keras configuration.
"""
from .. import geometry as g
from .. import ops
from .base_layer import InputSpec
from .conv_common import ConvFamilyLayer, forwarded_arguments, weight_array

__all__ = ["SeparableConv1D", "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D"]


class BaseSeparableConv(ConvFamilyLayer):
    _config_keys = (
        "depth_multiplier", "filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
    )

    def __init__(self, rank, depth_multiplier, filters, kernel_size, strides=1, padding="valid",
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._set_geometry(rank, kernel_size, strides, dilation_rate, padding, allow_causal=rank == 1)
        self._set_common_arguments(
            data_format, activation, use_bias,
            depthwise=(depthwise_initializer, depthwise_regularizer, depthwise_constraint),
            pointwise=(pointwise_initializer, pointwise_regularizer, pointwise_constraint),
            bias=(bias_initializer, bias_regularizer, bias_constraint),
        )
        self.input_spec = InputSpec(min_ndim=rank + 2)
        # Keras checks depth_multiplier before filters (keras_spec 2.4).
        self.depth_multiplier = g.check_positive_int(depth_multiplier, "depth_multiplier")
        self.filters = g.check_positive_int(filters, "filters")

    def build(self, input_shape):
        channels = self._begin_build(input_shape)
        dm = self.depth_multiplier
        self.depthwise_kernel = self._add_role_weight(
            "depthwise_kernel", "depthwise", self.kernel_size + (channels, dm)
        )
        self.pointwise_kernel = self._add_role_weight(
            "pointwise_kernel", "pointwise", (1,) * self.rank + (channels * dm, self.filters)
        )
        self.bias = self._add_bias((self.filters,))
        self.built = True

    def call(self, inputs):
        return ops.separable_conv_core(
            inputs, weight_array(self.depthwise_kernel, inputs),
            weight_array(self.pointwise_kernel, inputs), self._bias_array(inputs),
            strides=self.strides, padding=self.padding, data_format=self.data_format,
            dilation_rate=self.dilation_rate, allow_causal=self.rank == 1,
            activation=self.activation,
        )

    def compute_output_shape(self, input_shape):
        return self._conv_output_shape(input_shape, self.filters)


class SeparableConv1D(BaseSeparableConv):
    """1-D separable convolution; padding valid | same | causal (causal is beyond Keras 3)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(1, **forwarded_arguments(locals()))


class SeparableConv2D(BaseSeparableConv):
    """2-D separable convolution; padding valid | same."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(2, **forwarded_arguments(locals()))


SeparableConvolution1D = SeparableConv1D
SeparableConvolution2D = SeparableConv2D

"""LocallyConnected1D / LocallyConnected2D: Keras 2's (tf-keras) unshared-weight convolution.

Keras 3 removed these layers (keras-team/keras#20830); this is the Keras 2 signature and config
(keras_spec 2.9). Weights are always stored in Keras 2's ``implementation=1`` layout, whatever
``implementation`` says:

- kernel ``(prod(out_spatial), prod(kernel_size) * C_in, filters)``; the patch is flattened
  ``(k.., C_in)`` for channels_last and ``(C_in, k..)`` for channels_first; positions row-major;
- bias ``(*out_spatial, filters)``: one bias per output position and filter. With channels_first
  it is applied the way Keras 2 applies it, a raw reshape to ``(filters, *out_spatial)``
  (see ``_bias_for_ops``), so Keras 2 weights reproduce Keras 2 outputs.

``implementation`` (1, 2 or 3) only chose an execution strategy and a weight layout in Keras 2;
all three compute the same function. We keep the argument (and echo it in get_config) but run
one engine path. The consequence: ``padding='same'`` is accepted with implementation 2 or 3, as
Keras 2 does, and its windows are Keras 2's (output p covers input ``[p*s - k//2, p*s - k//2 + k)``,
one more left pad than conv 'same' for even k), yet weights saved by Keras 2 with implementation
2/3 (masked dense / sparse layouts) need converting before ``set_weights``. ``implementation=1``
with 'same' raises Keras 2's error.
"""
import numpy as np

from .. import arrays as _arrays
from .. import geometry as g
from .. import ops
from .base_layer import InputSpec
from .conv_common import ConvFamilyLayer, forwarded_arguments, weight_array

__all__ = ["LocallyConnected1D", "LocallyConnected2D"]


class BaseLocallyConnected(ConvFamilyLayer):
    _config_keys = ("filters", "kernel_size", "strides", "padding", "data_format")

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, implementation=1, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        # No dilation here. Keras 2 accepted strides=0 at construction and failed later; we refuse it now.
        self._set_geometry(rank, kernel_size, strides, None, padding)
        if implementation not in (1, 2, 3) or isinstance(implementation, bool):
            raise ValueError(f"Unrecognized implementation mode: {implementation}.")
        if self.padding != "valid" and implementation == 1:
            raise ValueError(
                f"Invalid border mode for {type(self).__name__} "
                f'(only "valid" is supported if implementation is 1): {padding}'
            )
        self._set_common_arguments(
            data_format, activation, use_bias,
            kernel=(kernel_initializer, kernel_regularizer, kernel_constraint),
            bias=(bias_initializer, bias_regularizer, bias_constraint),
        )
        self.filters = g.check_positive_int(filters, "filters")
        self.implementation = int(implementation)
        self.input_spec = InputSpec(ndim=rank + 2)

    def _output_spatial(self, spatial):
        return tuple(
            g.locally_connected_output_length(L, k, s, self.padding)
            for L, k, s in zip(spatial, self.kernel_size, self.strides)
        )

    def _check_defined(self, input_shape, spatial):
        """The weights depend on the spatial size (one kernel per output position)."""
        if None in spatial:
            raise ValueError(
                "The spatial dimensions of the inputs to  a "  # sic: Keras 2's double space
                f"{type(self).__name__} layer should be fully-defined, but layer received the inputs "
                f"shape {input_shape}"
            )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        InputSpec(ndim=self.rank + 2).check(input_shape, self.name)  # build() may be called directly
        if input_shape[self._channel_axis] is None:
            raise ValueError(
                f"Axis {self._channel_axis % len(input_shape)} of input should be fully-defined. "
                f"Found shape: {input_shape}"
            )
        channels = int(input_shape[self._channel_axis])
        spatial = g.spatial_dims(input_shape, self.data_format)
        self._check_defined(input_shape, spatial)
        out = self._output_spatial(spatial)
        if any(o <= 0 for o in out):
            raise ValueError(
                "One of the dimensions in the output is <= 0 due to downsampling in "
                f"{self.name}. Consider increasing the input size. Received input shape {input_shape} "
                "which would produce output shape with a zero or negative value in a dimension."
            )
        self.output_spatial = out
        self.kernel = self._add_role_weight(
            "kernel", "kernel", (int(np.prod(out)), int(np.prod(self.kernel_size)) * channels, self.filters)
        )
        self.bias = self._add_bias(out + (self.filters,))
        self._lock_input_channels(channels, ndim=self.rank + 2)
        self.built = True

    def _bias_for_ops(self, inputs):
        """The bias in the ops layout ``(*out_spatial, F)`` meaning ``bias[p, f]`` is added at (p, f).

        channels_first follows Keras 2 to the element, so Keras 2 weights give Keras 2 numbers:
        its ``bias_add`` adds ``reshape(bias, (1, F, *out_spatial))``, a raw reshape of the
        ``(*out_spatial, F)`` variable, not a transpose. The stored variable keeps Keras 2's shape.
        """
        bias = self._bias_array(inputs)
        if bias is None or self.data_format == "channels_last":
            return bias
        xp = _arrays.array_module(bias)
        return xp.ascontiguousarray(xp.moveaxis(bias.reshape((self.filters, *self.output_spatial)), 0, -1))

    def call(self, inputs):
        return ops.locally_connected_core(
            inputs, weight_array(self.kernel, inputs), self._bias_for_ops(inputs),
            kernel_size=self.kernel_size, strides=self.strides, padding=self.padding,
            data_format=self.data_format,
            activation=self.activation,
        )

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        out = self._output_spatial(g.spatial_dims(input_shape, self.data_format))
        return g.make_shape(input_shape[0], self.filters, out, self.data_format)

    def get_config(self):
        config = super().get_config()
        config["implementation"] = self.implementation
        return config


class LocallyConnected1D(BaseLocallyConnected):
    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, implementation=1, **kwargs):
        super().__init__(1, **forwarded_arguments(locals()))


class LocallyConnected2D(BaseLocallyConnected):
    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, implementation=1, **kwargs):
        super().__init__(2, **forwarded_arguments(locals()))

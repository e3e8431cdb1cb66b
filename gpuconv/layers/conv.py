"""Conv1D / Conv2D / Conv3D: Keras 3's BaseConv (groups, dilation, valid/same/causal(1D), LoRA).

Kernel ``kernel_size + (C_in // groups, filters)``, bias ``(filters,)``; the variable lives in
``self._kernel`` and ``layer.kernel`` is a property that merges the LoRA update when enabled
(keras_spec 1.6). Numerics go through ``gpuconv.ops.conv_core``.
"""
from .. import geometry as g
from .. import initializers
from .. import ops
from .base_layer import InputSpec
from .conv_common import ConvFamilyLayer, check_groups, forwarded_arguments, weight_array

__all__ = ["Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D"]


class BaseConv(ConvFamilyLayer):
    """Rank-generic forward convolution. ``rank`` is 1, 2 or 3."""

    _config_keys = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups")

    def __init__(self, rank, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, lora_rank=None, lora_alpha=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self._set_geometry(rank, kernel_size, strides, dilation_rate, padding, allow_causal=rank == 1)
        self._set_common_arguments(
            data_format, activation, use_bias,
            kernel=(kernel_initializer, kernel_regularizer, kernel_constraint),
            bias=(bias_initializer, bias_regularizer, bias_constraint),
        )
        self.input_spec = InputSpec(min_ndim=rank + 2)
        # Checks in Keras' order (keras_spec 2.1).
        self.filters = g.check_positive_int(filters, "filters")
        self.groups = check_groups(groups, self.filters)
        g.check_strides_dilation(self.strides, self.dilation_rate)
        if lora_rank is not None:
            lora_rank = g.check_positive_int(lora_rank, "lora_rank")
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else lora_rank
        self.lora_enabled = False

    # ---- weights ---------------------------------------------------------------------------------
    def build(self, input_shape):
        channels = self._begin_build(input_shape, groups=self.groups)
        kernel_shape = self.kernel_size + (channels // self.groups, self.filters)
        self._kernel = self._add_role_weight("kernel", "kernel", kernel_shape)
        self.bias = self._add_bias((self.filters,))
        self.built = True
        if self.lora_rank:
            self.enable_lora(self.lora_rank, lora_alpha=self.lora_alpha)

    @property
    def kernel(self):
        """The kernel Variable, or (LoRA on) the merged NumPy array ``_kernel + alpha/rank * A @ B``."""
        if not self.built:
            raise AttributeError("You must build the layer before accessing `kernel`.")
        if not self.lora_enabled:
            return self._kernel
        return self._merged_kernel(self._kernel.value, self.lora_kernel_a.value, self.lora_kernel_b.value)

    def _merged_kernel(self, kernel, a, b):
        # (k.., C, r) @ (r, F) broadcasts over the leading kernel axes -> (k.., C, F).
        return (kernel + (self.lora_alpha / self.lora_rank) * (a @ b)).astype(kernel.dtype)

    def _kernel_array(self, x):
        if not self.lora_enabled:
            return weight_array(self._kernel, x)
        # Merge in the variable dtype (float32 under mixed precision), then cast once, as Keras does.
        merged = self._merged_kernel(
            self._kernel.array_like(x), self.lora_kernel_a.array_like(x), self.lora_kernel_b.array_like(x)
        )
        return merged if merged.dtype == x.dtype else merged.astype(x.dtype)

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros"):
        """Keras' LoRA: freeze the kernel, add ``lora_kernel_a`` (k.., C, rank) and ``lora_kernel_b`` (rank, F).

        The LoRA variables take the layer's variable dtype (Keras forces float32; our default
        policy is float32 too, so they only differ under a float16/float64 policy).
        """
        if self.kernel_constraint:
            raise ValueError(
                "Lora is incompatible with kernel constraints. In order to enable lora on this layer, "
                "remove the `kernel_constraint` argument."
            )
        if not self.built:
            raise ValueError("Cannot enable lora on a layer that isn't yet built.")
        if self.lora_enabled:
            raise ValueError("lora is already enabled. This can only be done once per layer.")
        rank = g.check_positive_int(rank, "rank")
        self.lora_kernel_a = self.add_weight(
            name="lora_kernel_a", shape=self._kernel.shape[:-1] + (rank,),
            initializer=initializers.get(a_initializer), regularizer=self.kernel_regularizer,
        )
        self.lora_kernel_b = self.add_weight(
            name="lora_kernel_b", shape=(rank, self.filters),
            initializer=initializers.get(b_initializer), regularizer=self.kernel_regularizer,
        )
        self._kernel.trainable = False
        self.lora_enabled = True
        self.lora_rank = rank
        self.lora_alpha = lora_alpha if lora_alpha is not None else rank

    # ---- forward -----------------------------------------------------------------------------------
    def call(self, inputs):
        return ops.conv_core(
            inputs, self._kernel_array(inputs), self._bias_array(inputs),
            strides=self.strides, padding=self.padding, data_format=self.data_format,
            dilation_rate=self.dilation_rate, allow_causal=self.rank == 1,
            activation=self.activation,
        )

    def compute_output_shape(self, input_shape):
        return self._conv_output_shape(input_shape, self.filters)

    def get_config(self):
        config = super().get_config()
        if self.lora_rank:
            config["lora_rank"] = self.lora_rank
            config["lora_alpha"] = self.lora_alpha
        return config


class Conv1D(BaseConv):
    """1-D convolution; padding 'valid' | 'same' | 'causal' (left pad ``dilation*(k-1)``)."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(1, **forwarded_arguments(locals()))


class Conv2D(BaseConv):
    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(2, **forwarded_arguments(locals()))


class Conv3D(BaseConv):
    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(3, **forwarded_arguments(locals()))


Convolution1D = Conv1D
Convolution2D = Conv2D
Convolution3D = Conv3D

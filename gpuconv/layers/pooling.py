"""Max/Average pooling 1D-3D (Keras 3's BasePooling) and GlobalMax/GlobalAverage pooling 1D-3D.

Windowed pooling goes through ``ops.pool_core``: max ignores padded cells, average divides by the
number of real cells (TF semantics, keras_spec 2.5). Global pooling is a plain reduction over
the spatial axes, done on the input's array module (NumPy or CuPy) directly.

Keras quirks kept on purpose: ``padding`` is stored and returned exactly as given (the eager call
lowercases it, shape inference does not, so "SAME" fails only in compute_output_shape); pooling
strides may be 0 at construction (allow_zero) and fail at shape inference / call.
"""
from .. import arrays as _arrays
from .. import geometry as g
from .. import ops
from .base_layer import InputSpec, Layer

__all__ = [
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "MaxPool1D", "MaxPool2D", "MaxPool3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
]


class BasePooling(Layer):
    """Rank-generic windowed pooling; ``mode`` is 'max' or 'average'. No weights: built at init."""

    def __init__(self, rank, mode, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.rank = rank
        self.pool_mode = mode
        self.pool_size = g.standardize_tuple(pool_size, rank, "pool_size")
        self.strides = g.standardize_tuple(
            self.pool_size if strides is None else strides, rank, "strides", allow_zero=True
        )
        self.padding = padding
        self.data_format = g.standardize_data_format(data_format)
        self.input_spec = InputSpec(ndim=rank + 2)
        self._build_at_init()

    def call(self, inputs):
        return ops.pool_core(inputs, self.pool_mode, self.pool_size, self.strides, self.padding, self.data_format)

    def compute_output_shape(self, input_shape):
        return g.pool_output_shape(input_shape, self.pool_size, self.strides, self.padding, self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update({
            "pool_size": self.pool_size,
            "padding": self.padding,
            "strides": self.strides,
            "data_format": self.data_format,
        })
        return config


class MaxPooling1D(BasePooling):
    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(1, "max", pool_size, strides, padding, data_format, name=name, **kwargs)


class MaxPooling2D(BasePooling):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(2, "max", pool_size, strides, padding, data_format, name=name, **kwargs)


class MaxPooling3D(BasePooling):
    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(3, "max", pool_size, strides, padding, data_format, name=name, **kwargs)


# Keras 3: AveragePooling has no default pool_size (Keras 2 had one).
class AveragePooling1D(BasePooling):
    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(1, "average", pool_size, strides, padding, data_format, name=name, **kwargs)


class AveragePooling2D(BasePooling):
    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(2, "average", pool_size, strides, padding, data_format, name=name, **kwargs)


class AveragePooling3D(BasePooling):
    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None, **kwargs):
        super().__init__(3, "average", pool_size, strides, padding, data_format, name=name, **kwargs)


class BaseGlobalPooling(Layer):
    """Reduce every spatial axis with ``reduce`` ('max' or 'mean'); ``keepdims`` keeps them as 1."""

    reduce = None

    def __init__(self, rank, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.rank = rank
        self.data_format = g.standardize_data_format(data_format)
        self.keepdims = keepdims
        self.input_spec = InputSpec(ndim=rank + 2)
        self._build_at_init()

    @property
    def _spatial_axes(self):
        first = 1 if self.data_format == "channels_last" else 2
        return tuple(range(first, first + self.rank))

    def call(self, inputs):
        # The recorded max / mean (gpuconv.autodiff.functions): max's gradient goes to the first
        # maximum in row-major order, mean's is spread evenly.
        from ..autodiff import functions as F

        return getattr(F, self.reduce)(inputs, axis=self._spatial_axes, keepdims=self.keepdims)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        channels = input_shape[g.channel_axis(self.data_format)]
        if self.keepdims:
            return g.make_shape(input_shape[0], channels, (1,) * (len(input_shape) - 2), self.data_format)
        return (input_shape[0], channels)

    def get_config(self):
        config = super().get_config()
        config.update({"data_format": self.data_format, "keepdims": self.keepdims})
        return config


class _GlobalMax(BaseGlobalPooling):
    reduce = "max"


class _GlobalAverage(BaseGlobalPooling):
    reduce = "mean"  # NumPy/CuPy accumulate float16 means in float32


class GlobalMaxPooling1D(_GlobalMax):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(1, data_format=data_format, keepdims=keepdims, **kwargs)


class GlobalMaxPooling2D(_GlobalMax):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(2, data_format=data_format, keepdims=keepdims, **kwargs)


class GlobalMaxPooling3D(_GlobalMax):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(3, data_format=data_format, keepdims=keepdims, **kwargs)


class GlobalAveragePooling1D(_GlobalAverage):
    """Also takes Keras' ``mask`` (batch, steps): masked steps are left out of the mean."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(1, data_format=data_format, keepdims=keepdims, **kwargs)

    def __call__(self, inputs, mask=None, training=None):
        if mask is None:
            return super().__call__(inputs, training=training)
        # The base __call__ knows no mask; this layer is built at init, so only the input
        # standardisation and spec check are needed before the masked call.
        inputs = self._standardize_input(inputs)
        self.input_spec.check(inputs.shape, self.name)
        return self.call(inputs, mask=mask)

    def call(self, inputs, mask=None):
        if mask is None:
            return super().call(inputs)
        from ..autodiff import functions as F

        xp = _arrays.array_module(inputs)
        mask = xp.asarray(mask).astype(bool)
        mask = xp.expand_dims(mask, 2 if self.data_format == "channels_last" else 1)
        steps = self._spatial_axes
        total = F.sum(F.where(mask, inputs, 0), axis=steps, keepdims=self.keepdims)
        return F.divide(total, mask.astype(inputs.dtype).sum(axis=steps, keepdims=self.keepdims))


class GlobalAveragePooling2D(_GlobalAverage):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(2, data_format=data_format, keepdims=keepdims, **kwargs)


class GlobalAveragePooling3D(_GlobalAverage):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(3, data_format=data_format, keepdims=keepdims, **kwargs)


MaxPool1D, MaxPool2D, MaxPool3D = MaxPooling1D, MaxPooling2D, MaxPooling3D
AvgPool1D, AvgPool2D, AvgPool3D = AveragePooling1D, AveragePooling2D, AveragePooling3D
GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D = GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D
GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D = (
    GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D,
)

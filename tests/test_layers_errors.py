"""The rejection catalog (keras_spec section 3 and the texts of sections 1-2): every invalid
argument raises the class and text Keras raises, at the time Keras raises it (construction,
build/shape inference or call), plus our extensions' own checks."""
import re

import numpy as np
import pytest

from gpuconv import layers

L = layers


def zeros(*shape):
    return np.zeros(shape, "float32")


# (id, thunk, exception class, exact text fragment). Each thunk does exactly one thing that must raise.
CONSTRUCTION = [
    # padding strings (1.1)
    ("padding-unknown", lambda: L.Conv2D(2, 3, padding="full"), ValueError,
     "The `padding` argument must be a list/tuple or one of"),
    ("padding-unknown-echo-lowercased", lambda: L.Conv1D(2, 3, padding="FULL"), ValueError, "Received: full"),
    ("causal-conv2d", lambda: L.Conv2D(2, 3, padding="causal"), ValueError, "Received: causal"),
    ("causal-conv3d", lambda: L.Conv3D(2, 3, padding="causal"), ValueError, "Received: causal"),
    ("causal-conv1d-transpose", lambda: L.Conv1DTranspose(2, 3, padding="causal"), ValueError, "Received: causal"),
    ("causal-depthwise2d", lambda: L.DepthwiseConv2D(3, padding="causal"), ValueError, "Received: causal"),
    ("causal-separable2d", lambda: L.SeparableConv2D(2, 3, padding="causal"), ValueError, "Received: causal"),
    ("causal-locally-connected", lambda: L.LocallyConnected1D(2, 3, padding="causal"), ValueError,
     "Received: causal"),
    # Keras lets an explicit tuple through __init__ and fails at build with this text; we fail at once.
    ("padding-explicit-tuple", lambda: L.Conv2D(2, 3, padding=((1, 1), (1, 1))), ValueError,
     "`padding` must be either `'valid'` or `'same'`. Received ((1, 1), (1, 1))."),
    # standardize_tuple texts
    ("kernel-size-length", lambda: L.Conv2D(2, (3, 3, 3)), ValueError,
     "The `kernel_size` argument must be a tuple of 2 integers. Received kernel_size=(3, 3, 3)"),
    ("kernel-size-non-int", lambda: L.Conv2D(2, ("a", 3)), ValueError,
     "The `kernel_size` argument must be a tuple of 2 integers. Received kernel_size=('a', 3)including element "
     "a of type <class 'str'>"),
    ("kernel-size-zero", lambda: L.Conv1D(2, 0), ValueError,
     "The `kernel_size` argument must be a tuple of 1 integers. Received kernel_size=0, including values {0} "
     "that do not satisfy `value > 0`"),
    ("strides-negative", lambda: L.Conv2D(2, 3, strides=(1, -1)), ValueError,
     "Received strides=(1, -1), including values {-1} that do not satisfy `value > 0`"),
    ("dilation-zero", lambda: L.DepthwiseConv2D(3, dilation_rate=0), ValueError,
     "The `dilation_rate` argument must be a tuple of 2 integers. Received dilation_rate=0, including values {0}"),
    ("pool-size-zero", lambda: L.MaxPooling2D(0), ValueError,
     "The `pool_size` argument must be a tuple of 2 integers. Received pool_size=0"),
    ("upsampling2d-size-zero", lambda: L.UpSampling2D(0), ValueError,
     "The `size` argument must be a tuple of 2 integers. Received size=0"),
    # filters / depth_multiplier / groups (2.1-2.4)
    ("filters-zero-conv", lambda: L.Conv2D(0, 3), ValueError,
     "Invalid value for argument `filters`. Expected a strictly positive value. Received filters=0."),
    ("filters-negative-transpose", lambda: L.Conv2DTranspose(-1, 3), ValueError, "Received filters=-1."),
    ("filters-zero-separable", lambda: L.SeparableConv1D(0, 3), ValueError, "Received filters=0."),
    ("filters-zero-locally-connected", lambda: L.LocallyConnected2D(0, 3), ValueError, "Received filters=0."),
    ("depth-multiplier-zero-depthwise", lambda: L.DepthwiseConv2D(3, depth_multiplier=0), ValueError,
     "Invalid value for argument `depth_multiplier`. Expected a strictly positive value. Received "
     "depth_multiplier=0."),
    # Separable checks depth_multiplier before filters.
    ("depth-multiplier-before-filters", lambda: L.SeparableConv2D(0, 3, depth_multiplier=0), ValueError,
     "Received depth_multiplier=0."),
    ("groups-zero", lambda: L.Conv2D(4, 3, groups=0), ValueError,
     "The number of groups must be a positive integer. Received: groups=0."),
    ("groups-filters", lambda: L.Conv1D(5, 3, groups=2), ValueError,
     "The number of filters must be evenly divisible by the number of groups. Received: groups=2, filters=5."),
    ("groups-zero-transpose-ours", lambda: L.Conv2DTranspose(4, 3, groups=0), ValueError,
     "The number of groups must be a positive integer. Received: groups=0."),
    ("groups-filters-transpose-ours", lambda: L.Conv3DTranspose(3, 2, groups=2), ValueError,
     "The number of filters must be evenly divisible by the number of groups. Received: groups=2, filters=3."),
    ("groups-on-depthwise", lambda: L.DepthwiseConv2D(3, groups=2), ValueError,
     "Unrecognized keyword arguments passed to DepthwiseConv2D: {'groups': 2}"),
    ("groups-on-separable", lambda: L.SeparableConv1D(2, 3, groups=2), ValueError,
     "Unrecognized keyword arguments passed to SeparableConv1D: {'groups': 2}"),
    ("unknown-kwarg", lambda: L.Conv2D(2, 3, foo=1), ValueError,
     "Unrecognized keyword arguments passed to Conv2D: {'foo': 1}"),
    # strides > 1 with dilation > 1 (Conv and ConvTranspose only)
    ("strides-dilation-conv", lambda: L.Conv2D(2, 3, strides=2, dilation_rate=2), ValueError,
     "`strides > 1` not supported in conjunction with `dilation_rate > 1`. Received: strides=(2, 2) and "
     "dilation_rate=(2, 2)"),
    ("strides-dilation-across-dims", lambda: L.Conv2D(2, 3, strides=(2, 1), dilation_rate=(1, 2)), ValueError,
     "Received: strides=(2, 1) and dilation_rate=(1, 2)"),
    ("strides-dilation-transpose", lambda: L.Conv1DTranspose(2, 3, strides=2, dilation_rate=2), ValueError,
     "`strides > 1` not supported in conjunction with `dilation_rate > 1`."),
    # output_padding (2.2)
    ("output-padding-ge-strides", lambda: L.Conv2DTranspose(2, 3, strides=(2, 1), output_padding=1), ValueError,
     "`output_padding` must be strictly less than `strides` for all dimensions. At dimension 1, "
     "`output_padding` is 1 but `strides` is 1. Received: output_padding=(1, 1), strides=(2, 1)"),
    ("output-padding-negative", lambda: L.Conv1DTranspose(2, 3, strides=2, output_padding=-1), ValueError,
     "The `output_padding` argument must be a tuple of 1 integers. Received output_padding=-1, including values "
     "{-1} that do not satisfy `value >= 0`"),
    # data_format, activation, initializers, regularizers
    ("data-format", lambda: L.Conv2D(2, 3, data_format="NHWC"), ValueError,
     "The `data_format` argument must be one of {'channels_first', 'channels_last'}. Received: data_format=nhwc"),
    ("data-format-pooling", lambda: L.MaxPooling1D(data_format="x"), ValueError, "Received: data_format=x"),
    ("data-format-global", lambda: L.GlobalMaxPooling2D(data_format="x"), ValueError, "Received: data_format=x"),
    ("data-format-reshaping", lambda: L.ZeroPadding2D(data_format="x"), ValueError, "Received: data_format=x"),
    ("activation-case-sensitive", lambda: L.Conv2D(2, 3, activation="ReLU"), ValueError,
     "Could not interpret activation function identifier: ReLU"),
    ("initializer", lambda: L.Conv2D(2, 3, kernel_initializer="foo"), ValueError,
     "Could not interpret initializer identifier: foo"),
    ("regularizer", lambda: L.SeparableConv2D(2, 3, pointwise_regularizer="foo"), ValueError,
     "Could not interpret regularizer identifier: foo"),
    # Pooling: Keras 3 has no default pool_size for average pooling
    ("avgpool-no-pool-size", lambda: L.AveragePooling2D(), TypeError, "pool_size"),
    # Reshaping (2.6-2.8)
    ("cropping-negative-int", lambda: L.Cropping2D(-1), ValueError,
     "`cropping` cannot be negative. Received: cropping=-1."),
    ("cropping2d-length", lambda: L.Cropping2D((1, 1, 1)), ValueError,
     "`cropping` should have two elements. Received: cropping=(1, 1, 1)."),
    ("cropping3d-length", lambda: L.Cropping3D((1, 1)), ValueError,
     "`cropping` should have 3 elements. Received: (1, 1)."),
    ("cropping2d-type", lambda: L.Cropping2D(1.5), ValueError,
     "`cropping` should be either an int, a tuple of 2 ints (symmetric_height_crop, symmetric_width_crop), or a "
     "tuple of 2 tuples of 2 ints ((top_crop, bottom_crop), (left_crop, right_crop)). Received: cropping=1.5."),
    ("cropping-entry", lambda: L.Cropping2D(((1, 2, 3), 1)), ValueError,
     "The `1st entry of cropping` argument must be a tuple of 2 integers. Received 1st entry of cropping=(1, 2, 3)"),
    ("cropping-entry-negative", lambda: L.Cropping3D((0, 0, (1, -1))), ValueError,
     "The `3rd entry of cropping` argument must be a tuple of 2 integers. Received 3rd entry of cropping=(1, -1), "
     "including values {-1} that do not satisfy `value >= 0`"),
    ("cropping1d-negative", lambda: L.Cropping1D(-1), ValueError, "`value >= 0`"),
    ("zero-padding2d-length", lambda: L.ZeroPadding2D((1, 1, 1)), ValueError,
     "`padding` should have two elements. Received: padding=(1, 1, 1)."),
    ("zero-padding3d-length", lambda: L.ZeroPadding3D((1, 1)), ValueError,
     "`padding` should have 3 elements. Received: (1, 1)."),
    ("zero-padding-entry-negative", lambda: L.ZeroPadding2D(((1, -1), 0)), ValueError,
     "The `1st entry of padding` argument must be a tuple of 2 integers."),
    ("zero-padding1d-negative", lambda: L.ZeroPadding1D(-2), ValueError, "`value >= 0`"),
    ("upsampling1d-float", lambda: L.UpSampling1D(2.0), TypeError,
     "Expected an integer value for `size`, got <class 'float'>."),
    ("upsampling1d-bool", lambda: L.UpSampling1D(True), TypeError, "Expected an integer value for `size`"),
    ("upsampling1d-zero", lambda: L.UpSampling1D(0), ValueError,
     "Argument `size` should be a positive integer. Received: size=0"),
    ("upsampling3d-interpolation-ours", lambda: L.UpSampling3D(interpolation="bicubic"), ValueError,
     "Invalid value for argument `interpolation`. Expected of one ('nearest', 'trilinear'). "
     "Received: interpolation=bicubic"),
    # LocallyConnected (Keras 2)
    ("locally-connected-same-impl1", lambda: L.LocallyConnected1D(2, 3, padding="same"), ValueError,
     'Invalid border mode for LocallyConnected1D (only "valid" is supported if implementation is 1): same'),
    ("locally-connected2d-same-impl1", lambda: L.LocallyConnected2D(2, 3, padding="SAME"), ValueError,
     'Invalid border mode for LocallyConnected2D (only "valid" is supported if implementation is 1): SAME'),
    ("locally-connected-implementation", lambda: L.LocallyConnected2D(2, 3, implementation=4), ValueError,
     "Unrecognized implementation mode: 4."),
]


@pytest.mark.parametrize("thunk, exc, text", [c[1:] for c in CONSTRUCTION], ids=[c[0] for c in CONSTRUCTION])
def test_rejected_at_construction(thunk, exc, text):
    with pytest.raises(exc, match=re.escape(text)):
        thunk()


BUILD_OR_CALL = [
    ("groups-input-channels", lambda: L.Conv2D(4, 3, groups=2)(zeros(1, 5, 5, 3)), ValueError,
     "The number of input channels must be evenly divisible by the number of groups. Received groups=2, but the "
     "input has 3 channels (full input shape is (1, 5, 5, 3))."),
    ("groups-input-channels-transpose-ours", lambda: L.Conv1DTranspose(4, 3, groups=2).build((1, 5, 3)),
     ValueError, "Received groups=2, but the input has 3 channels"),
    ("conv-output-size", lambda: L.Conv2D(4, 5).build((None, 4, 4, 3)), ValueError,
     "Computed output size would be zero or negative. Received `inputs shape=(None, 4, 4, 3)`, `kernel "
     "shape=(5, 5, 3, 4)`, `dilation_rate=[1 1]`, `strides=(1, 1)`, `padding=valid`."),
    ("depthwise-output-size", lambda: L.DepthwiseConv1D(3, dilation_rate=2)(zeros(1, 4, 2)), ValueError,
     "Computed output size would be zero or negative."),
    ("separable-output-size", lambda: L.SeparableConv2D(2, 3).compute_output_shape((1, 2, 9, 3)), ValueError,
     "Computed output size would be zero or negative."),
    ("pool-output-size", lambda: L.MaxPooling2D(3).compute_output_shape((None, 2, 2, 3)), ValueError,
     "Computed output size would be zero or negative. Received: `inputs.shape=[None 2 2 3]`, `pool_size=[3 3]`, "
     "`strides=(3, 3)`, `padding=valid`."),
    ("pool-padding-invalid-at-call", lambda: L.MaxPooling1D(padding="full")(zeros(1, 4, 2)), ValueError,
     "Argument `padding` must be either 'valid' or 'same'. Received: padding=full"),
    ("conv-rank-too-high", lambda: L.Conv1D(2, 3)(zeros(2, 3, 8, 4)), ValueError,
     "Kernel shape must have the same length as input, but received kernel of shape (3, 4, 2) and input of "
     "shape (2, 3, 8, 4)."),
    ("conv-rank-too-low", lambda: L.Conv1D(2, 3)(zeros(8, 4)), ValueError,
     "is incompatible with the layer: expected min_ndim=3, found ndim=2. Full shape received: (8, 4)"),
    ("pooling-rank", lambda: L.AveragePooling3D(2)(zeros(1, 4, 4, 4)), ValueError, "expected ndim=5, found ndim=4"),
    ("cropping-too-large", lambda: L.Cropping2D(2)(zeros(1, 4, 5, 1)), ValueError,
     "Values in `cropping` argument should be smaller than the corresponding spatial dimension of the input."),
    ("upsampling2d-interpolation-at-call", lambda: L.UpSampling2D(interpolation="foo")(zeros(1, 2, 2, 1)),
     ValueError, "Invalid value for argument `interpolation`."),
    ("locally-connected-output-size", lambda: L.LocallyConnected1D(2, 5).build((1, 4, 3)), ValueError,
     "One of the dimensions in the output is <= 0 due to downsampling in"),
    ("locally-connected1d-channels-undefined", lambda: L.LocallyConnected1D(2, 3).build((None, 5, None)),
     ValueError, "Axis 2 of input should be fully-defined. Found shape: (None, 5, None)"),
    ("locally-connected2d-spatial-undefined", lambda: L.LocallyConnected2D(2, 3).build((None, None, 5, 3)),
     ValueError, "The spatial dimensions of the inputs to  a LocallyConnected2D layer should be fully-defined, "
                 "but layer received the inputs shape (None, None, 5, 3)"),
    ("conv-channels-undefined", lambda: L.Conv2D(2, 3).build((None, 5, 5, None)), ValueError,
     "The channel dimension of the inputs to Conv2D should be defined"),
]


@pytest.mark.parametrize("thunk, exc, text", [c[1:] for c in BUILD_OR_CALL], ids=[c[0] for c in BUILD_OR_CALL])
def test_rejected_at_build_or_call(thunk, exc, text):
    with pytest.raises(exc, match=re.escape(text)):
        thunk()


def test_channel_change_after_build_fails_the_input_spec():
    for layer, first, second, axis in (
        (L.Conv2DTranspose(2, 3), zeros(1, 4, 4, 3), zeros(1, 4, 4, 2), -1),
        (L.DepthwiseConv2D(3, data_format="channels_first"), zeros(1, 3, 5, 5), zeros(1, 4, 5, 5), 1),
        (L.SeparableConv1D(2, 3), zeros(1, 6, 3), zeros(1, 6, 5), -1),
    ):
        layer(first)
        with pytest.raises(ValueError, match=re.escape(f"expected axis {axis} of input shape to have value")):
            layer(second)


# --------------------------------------------------------------------------------------------
# What Keras (or our extension) accepts, so the catalog above does not over-reject
# --------------------------------------------------------------------------------------------
def test_accepted_edge_arguments():
    L.DepthwiseConv2D(3, strides=2, dilation_rate=2)  # allowed since Keras 3.15
    L.SeparableConv1D(2, 3, strides=2, dilation_rate=2)
    L.Conv2DTranspose(2, 3, output_padding=0)  # 0 allowed since Keras 3.11
    L.MaxPooling2D(2, strides=0)  # pooling strides allow zero at construction (Keras) ...
    with pytest.raises(ValueError, match="strides"):  # ... and fail at shape inference
        L.MaxPooling2D(2, strides=0).compute_output_shape((None, 4, 4, 1))
    L.Conv1D(2, 3, padding="CAUSAL")  # case-insensitive, stored lowercased
    assert L.Conv1D(2, 3, padding="CAUSAL").padding == "causal"
    assert L.DepthwiseConv1D(3, padding="causal").padding == "causal"  # beyond Keras
    assert L.SeparableConv1D(2, 3, padding="causal").padding == "causal"  # beyond Keras 3
    assert L.Conv2D(2, 3, data_format="CHANNELS_FIRST").data_format == "channels_first"
    assert L.ZeroPadding2D(0).padding == ((0, 0), (0, 0))  # zero padding allowed; a negative int is refused (issue 8)
    assert L.LocallyConnected1D(2, 3, padding="same", implementation=2).padding == "same"

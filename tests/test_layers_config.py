"""get_config / from_config for every conv-family, pooling, reshaping and locally connected layer:
the key lists of keras_spec (in Keras' order), normalised values, serialised initializers and
activations, the beyond-Keras arguments kept out of Keras-identical configs, round trips."""
import numpy as np
import pytest

from gpuconv import layers as L
from gpuconv import regularizers

from test_layer_contract import run_layer_test

BASE = ["name", "trainable", "dtype"]
WEIGHT_ARGS = {
    ("kernel", "bias"): ["kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer",
                         "activity_regularizer", "kernel_constraint", "bias_constraint"],
    ("depthwise", "bias"): ["depthwise_initializer", "bias_initializer", "depthwise_regularizer",
                            "bias_regularizer", "activity_regularizer", "depthwise_constraint", "bias_constraint"],
    ("depthwise", "pointwise", "bias"): [
        "depthwise_initializer", "pointwise_initializer", "bias_initializer", "depthwise_regularizer",
        "pointwise_regularizer", "bias_regularizer", "activity_regularizer", "depthwise_constraint",
        "pointwise_constraint", "bias_constraint"],
}
CONV_KEYS = BASE + ["filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
                    "activation", "use_bias"] + WEIGHT_ARGS[("kernel", "bias")]
TRANSPOSE_KEYS = BASE + ["filters", "kernel_size", "strides", "padding", "output_padding", "data_format",
                         "dilation_rate", "activation", "use_bias"] + WEIGHT_ARGS[("kernel", "bias")]
DEPTHWISE_KEYS = BASE + ["depth_multiplier", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
                         "activation", "use_bias"] + WEIGHT_ARGS[("depthwise", "bias")]
SEPARABLE_KEYS = BASE + ["depth_multiplier", "filters", "kernel_size", "strides", "padding", "data_format",
                         "dilation_rate", "activation", "use_bias"] + WEIGHT_ARGS[("depthwise", "pointwise", "bias")]
LOCALLY_KEYS = BASE + ["filters", "kernel_size", "strides", "padding", "data_format", "activation",
                       "use_bias"] + WEIGHT_ARGS[("kernel", "bias")] + ["implementation"]
POOL_KEYS = BASE + ["pool_size", "padding", "strides", "data_format"]
GLOBAL_KEYS = BASE + ["data_format", "keepdims"]

KEY_CASES = [
    (L.Conv1D(2, 3), CONV_KEYS), (L.Conv2D(2, 3), CONV_KEYS), (L.Conv3D(2, 3), CONV_KEYS),
    (L.Conv1DTranspose(2, 3), TRANSPOSE_KEYS), (L.Conv2DTranspose(2, 3), TRANSPOSE_KEYS),
    (L.Conv3DTranspose(2, 3), TRANSPOSE_KEYS),
    (L.DepthwiseConv1D(3), DEPTHWISE_KEYS), (L.DepthwiseConv2D(3), DEPTHWISE_KEYS),
    (L.DepthwiseConv3D(3), DEPTHWISE_KEYS),
    (L.SeparableConv1D(2, 3), SEPARABLE_KEYS), (L.SeparableConv2D(2, 3), SEPARABLE_KEYS),
    (L.LocallyConnected1D(2, 3), LOCALLY_KEYS), (L.LocallyConnected2D(2, 3), LOCALLY_KEYS),
    (L.MaxPooling1D(), POOL_KEYS), (L.MaxPooling2D(), POOL_KEYS), (L.MaxPooling3D(), POOL_KEYS),
    (L.AveragePooling1D(2), POOL_KEYS), (L.AveragePooling2D(2), POOL_KEYS), (L.AveragePooling3D(2), POOL_KEYS),
    (L.GlobalMaxPooling1D(), GLOBAL_KEYS), (L.GlobalMaxPooling2D(), GLOBAL_KEYS), (L.GlobalMaxPooling3D(), GLOBAL_KEYS),
    (L.GlobalAveragePooling1D(), GLOBAL_KEYS), (L.GlobalAveragePooling2D(), GLOBAL_KEYS),
    (L.GlobalAveragePooling3D(), GLOBAL_KEYS),
    (L.Cropping1D(), BASE + ["cropping"]), (L.Cropping2D(), BASE + ["cropping", "data_format"]),
    (L.Cropping3D(), BASE + ["cropping", "data_format"]),
    (L.ZeroPadding1D(), BASE + ["padding", "data_format"]), (L.ZeroPadding2D(), BASE + ["padding", "data_format"]),
    (L.ZeroPadding3D(), BASE + ["padding", "data_format"]),
    (L.UpSampling1D(), BASE + ["size"]), (L.UpSampling2D(), BASE + ["size", "data_format", "interpolation"]),
    (L.UpSampling3D(), BASE + ["size", "data_format"]),
]


@pytest.mark.parametrize("layer, keys", KEY_CASES, ids=lambda v: type(v).__name__ if isinstance(v, L.Layer) else "")
def test_config_keys_are_keras_keys_in_keras_order(layer, keys):
    assert list(layer.get_config()) == keys


@pytest.mark.parametrize("layer, keys", KEY_CASES, ids=lambda v: type(v).__name__ if isinstance(v, L.Layer) else "")
def test_from_config_round_trip(layer, keys):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert type(clone) is type(layer)


def test_conv_config_values_are_normalised():
    config = L.Conv2D(4, 3, strides=2, padding="SAME", activation="swish", use_bias=False, groups=2,
                      kernel_regularizer="l2").get_config()
    assert config["kernel_size"] == (3, 3) and config["strides"] == (2, 2) and config["dilation_rate"] == (1, 1)
    assert isinstance(config["kernel_size"], tuple)
    assert config["padding"] == "same"
    assert config["data_format"] == "channels_last"  # None resolved at construction
    assert config["activation"] == "silu"  # the canonical name of the alias
    assert config["groups"] == 2 and config["use_bias"] is False
    assert config["kernel_initializer"]["class_name"] == "GlorotUniform"
    assert config["kernel_initializer"]["module"] == "keras.initializers"
    assert config["bias_initializer"]["class_name"] == "Zeros"
    assert config["kernel_regularizer"] == regularizers.serialize(regularizers.get("l2"))
    assert config["bias_regularizer"] is None and config["kernel_constraint"] is None
    assert config["dtype"]["config"]["name"] == "float32"
    assert L.Conv2D(4, 3).get_config()["activation"] == "linear"  # None -> linear


def test_transpose_output_padding_in_config():
    assert L.Conv2DTranspose(2, 3).get_config()["output_padding"] is None
    assert L.Conv2DTranspose(2, 3, strides=2, output_padding=1).get_config()["output_padding"] == (1, 1)


def test_transpose_groups_only_in_config_when_not_one():
    """Beyond Keras: a groups=1 config is exactly Keras' (no key); groups != 1 is saved and restored."""
    assert "groups" not in L.Conv2DTranspose(4, 3).get_config()
    assert "groups" not in L.Conv2DTranspose(4, 3, groups=1).get_config()
    config = L.Conv2DTranspose(4, 3, groups=2).get_config()
    assert config["groups"] == 2 and list(config) == TRANSPOSE_KEYS + ["groups"]
    clone = L.Conv2DTranspose.from_config(config)
    clone.build((None, 5, 5, 6))
    assert clone.kernel.shape == (3, 3, 2, 6)


def test_upsampling3d_interpolation_only_in_config_when_not_nearest():
    assert "interpolation" not in L.UpSampling3D(interpolation="nearest").get_config()
    config = L.UpSampling3D(interpolation="Trilinear").get_config()
    assert config["interpolation"] == "trilinear"
    assert L.UpSampling3D.from_config(config).interpolation == "trilinear"


def test_depthwise_config_uses_depthwise_names_and_round_trips_weights_layout():
    layer = L.DepthwiseConv2D(3, depth_multiplier=2, depthwise_initializer="he_normal", data_format="channels_first")
    config = layer.get_config()
    assert config["depthwise_initializer"]["class_name"] == "HeNormal"
    clone = L.DepthwiseConv2D.from_config(config)
    clone.build((None, 4, 6, 6))
    assert [w.shape for w in clone.weights] == [(3, 3, 4, 2), (8,)]


def test_pooling_config_values():
    config = L.MaxPooling2D((3, 2), padding="SAME").get_config()
    assert config["pool_size"] == (3, 2) and config["strides"] == (3, 2) and config["padding"] == "SAME"
    assert L.AveragePooling1D(3, strides=1).get_config()["strides"] == (1,)
    assert L.GlobalMaxPooling2D(keepdims=True).get_config()["keepdims"] is True


def test_reshaping_config_values():
    assert L.Cropping1D(2).get_config()["cropping"] == (2, 2)
    assert L.Cropping2D(((1, 2), 3)).get_config()["cropping"] == ((1, 2), (3, 3))
    assert L.ZeroPadding1D().get_config()["padding"] == (1, 1)
    assert L.ZeroPadding2D().get_config()["padding"] == ((1, 1), (1, 1))
    assert L.UpSampling1D(3).get_config()["size"] == 3
    assert L.UpSampling2D(3, interpolation="BILINEAR").get_config()["size"] == (3, 3)
    assert L.UpSampling2D(interpolation="BILINEAR").get_config()["interpolation"] == "bilinear"


def test_locally_connected_config_round_trip_builds_the_same_weights():
    layer = L.LocallyConnected2D(3, (2, 3), strides=(1, 2), padding="same", implementation=3, use_bias=False)
    config = layer.get_config()
    assert config["implementation"] == 3 and config["padding"] == "same"
    clone = L.LocallyConnected2D.from_config(config)
    layer.build((None, 6, 7, 2))
    clone.build((None, 6, 7, 2))
    assert [w.shape for w in clone.weights] == [w.shape for w in layer.weights] == [(24, 12, 3)]


def test_activity_regularizer_is_serialised():
    config = L.Conv1D(2, 3, activity_regularizer="l1").get_config()
    assert config["activity_regularizer"] == regularizers.serialize(regularizers.get("l1"))
    assert L.Conv1D.from_config(config).activity_regularizer is not None


def test_count_params_requires_build():
    layer = L.Conv1D(2, 3)
    with pytest.raises(ValueError, match="isn't built"):
        layer.count_params()
    layer.build((None, 5, 4))
    assert layer.count_params() == 3 * 4 * 2 + 2
    assert L.MaxPooling2D().count_params() == 0  # built at construction, no weights


def test_names_follow_keras_snake_case():
    assert L.Conv2DTranspose(2, 3).name.startswith("conv2d_transpose")
    assert L.DepthwiseConv2D(3).name.startswith("depthwise_conv2d")
    assert L.GlobalAveragePooling1D().name.startswith("global_average_pooling1d")
    assert L.UpSampling2D().name.startswith("up_sampling2d")


def test_aliases():
    assert L.Convolution1D is L.Conv1D and L.Convolution2D is L.Conv2D and L.Convolution3D is L.Conv3D
    assert L.Convolution2DTranspose is L.Conv2DTranspose and L.Convolution3DTranspose is L.Conv3DTranspose
    assert L.Convolution1DTranspose is L.Conv1DTranspose
    assert L.SeparableConvolution1D is L.SeparableConv1D and L.SeparableConvolution2D is L.SeparableConv2D


def test_every_public_name_is_exported():
    import gpuconv.layers as package

    for module in ("conv", "conv_transpose", "depthwise_conv", "separable_conv", "locally_connected", "pooling",
                   "reshaping"):
        mod = __import__(f"gpuconv.layers.{module}", fromlist=["__all__"])
        assert mod.__all__, module
        for name in mod.__all__:
            assert getattr(package, name) is getattr(mod, name)
    assert all(hasattr(package, n) for n in ("MaxPool2D", "AvgPool3D", "GlobalMaxPool1D", "GlobalAvgPool2D"))


# --------------------------------------------------------------------------------------------
# The shared layer contract (tests/test_layer_contract.py) on every layer of this family
# --------------------------------------------------------------------------------------------
CONTRACT_CASES = [
    # class, kwargs, input shape, expected weight shapes, weight names, dynamic axes
    (L.Conv1D, {"filters": 4, "kernel_size": 3, "padding": "causal", "activation": "relu"}, (2, 7, 3),
     [(3, 3, 4), (4,)], ["kernel", "bias"], (1,)),
    (L.Conv2D, {"filters": 4, "kernel_size": 3, "groups": 2, "data_format": "channels_first"}, (2, 4, 6, 5),
     [(3, 3, 2, 4), (4,)], ["kernel", "bias"], (2, 3)),
    (L.Conv3D, {"filters": 2, "kernel_size": 2, "strides": 2, "use_bias": False}, (1, 4, 5, 4, 2),
     [(2, 2, 2, 2, 2)], ["kernel"], (1, 2, 3)),
    (L.Conv1DTranspose, {"filters": 3, "kernel_size": 3, "strides": 2, "output_padding": 1}, (2, 5, 2),
     [(3, 3, 2), (3,)], ["kernel", "bias"], (1,)),
    (L.Conv2DTranspose, {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "groups": 2}, (2, 4, 5, 6),
     [(3, 3, 2, 6), (4,)], ["kernel", "bias"], (1, 2)),
    (L.Conv3DTranspose, {"filters": 2, "kernel_size": 2, "data_format": "channels_first"}, (1, 3, 3, 2, 3),
     [(2, 2, 2, 2, 3), (2,)], ["kernel", "bias"], (2, 3, 4)),
    (L.DepthwiseConv1D, {"kernel_size": 3, "depth_multiplier": 2, "padding": "causal"}, (2, 6, 3),
     [(3, 3, 2), (6,)], ["kernel", "bias"], (1,)),
    (L.DepthwiseConv2D, {"kernel_size": 3, "strides": 2, "dilation_rate": 2, "activation": "tanh"}, (2, 9, 9, 3),
     [(3, 3, 3, 1), (3,)], ["kernel", "bias"], (1, 2)),
    (L.DepthwiseConv3D, {"kernel_size": 2, "depth_multiplier": 2}, (1, 3, 4, 3, 2),
     [(2, 2, 2, 2, 2), (4,)], ["kernel", "bias"], (1, 2, 3)),
    (L.SeparableConv1D, {"filters": 4, "kernel_size": 3, "padding": "causal", "depth_multiplier": 2}, (2, 6, 3),
     [(3, 3, 2), (1, 6, 4), (4,)], ["depthwise_kernel", "pointwise_kernel", "bias"], (1,)),
    (L.SeparableConv2D, {"filters": 4, "kernel_size": 3, "padding": "same", "data_format": "channels_first"},
     (2, 3, 5, 6), [(3, 3, 3, 1), (1, 1, 3, 4), (4,)], ["depthwise_kernel", "pointwise_kernel", "bias"], (2, 3)),
    (L.LocallyConnected1D, {"filters": 2, "kernel_size": 3, "strides": 2}, (2, 7, 3),
     [(3, 9, 2), (3, 2)], ["kernel", "bias"], (1,)),
    (L.LocallyConnected2D, {"filters": 2, "kernel_size": 2, "padding": "same", "implementation": 2}, (2, 3, 4, 2),
     [(12, 8, 2), (3, 4, 2)], ["kernel", "bias"], (1, 2)),
    (L.MaxPooling1D, {"pool_size": 2, "padding": "same"}, (2, 7, 3), [], [], (1,)),
    (L.AveragePooling2D, {"pool_size": (2, 3), "strides": 1}, (2, 5, 6, 3), [], [], (1, 2)),
    (L.MaxPooling3D, {"data_format": "channels_first"}, (1, 2, 4, 4, 5), [], [], (2, 3, 4)),
    (L.GlobalAveragePooling1D, {"keepdims": True}, (2, 5, 3), [], [], (1,)),
    (L.GlobalMaxPooling2D, {"data_format": "channels_first"}, (2, 3, 4, 5), [], [], (2, 3)),
    (L.GlobalAveragePooling3D, {}, (1, 2, 3, 4, 2), [], [], (1, 2, 3)),
    (L.Cropping1D, {"cropping": (1, 2)}, (2, 6, 3), [], [], (1,)),
    (L.Cropping2D, {"cropping": 1, "data_format": "channels_first"}, (2, 3, 5, 4), [], [], (2, 3)),
    (L.Cropping3D, {}, (1, 3, 4, 5, 2), [], [], (1, 2, 3)),
    (L.ZeroPadding1D, {"padding": (0, 2)}, (2, 4, 3), [], [], (1,)),
    (L.ZeroPadding2D, {}, (2, 3, 4, 2), [], [], (1, 2)),
    (L.ZeroPadding3D, {"padding": 1, "data_format": "channels_first"}, (1, 2, 2, 3, 2), [], [], (2, 3, 4)),
    (L.UpSampling1D, {"size": 3}, (2, 4, 3), [], [], (1,)),
    (L.UpSampling2D, {"interpolation": "bilinear"}, (2, 3, 4, 2), [], [], (1, 2)),
    (L.UpSampling3D, {"size": 2, "interpolation": "trilinear"}, (1, 2, 3, 2, 2), [], [], (1, 2, 3)),
]


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=lambda c: c[0].__name__)
def test_layer_contract(case):
    cls, kwargs, shape, weight_shapes, weight_names, dynamic = case
    run_layer_test(cls, kwargs, shape, expected_weight_shapes=weight_shapes, expected_weight_names=weight_names,
                   dynamic_axes=dynamic)


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=lambda c: c[0].__name__)
def test_empty_batch_gives_an_empty_output_of_the_inferred_shape(case):
    cls, kwargs, shape, *_ = case
    layer = cls(**kwargs)
    x = np.zeros((0,) + shape[1:], "float32")
    y = layer(x)
    assert tuple(y.shape) == tuple(layer.compute_output_shape(x.shape)) and y.shape[0] == 0
    assert y.dtype == np.float32

"""Conv, ConvTranspose, DepthwiseConv and SeparableConv layers: shapes, weights, numerics.

Numerics: each layer's output is compared with the public ``gpuconv.ops`` function it wraps
(no bias, no activation there) plus an explicit bias add and the activation applied here, so the
test checks the wiring (which padding, strides, dilation, layout and weights reach the op, and
that bias and activation come in the right order). The engine itself is tested elsewhere.
"""
import dataclasses

import numpy as np
import pytest

import gpuconv
from gpuconv import activations, layers, ops

from conftest import assert_close

DF = ("channels_last", "channels_first")


def _spatial_input(rng, rank, channels, data_format, size=7, batch=2, dtype="float32"):
    spatial = tuple(size - i for i in range(rank))
    shape = (batch, *spatial, channels) if data_format == "channels_last" else (batch, channels, *spatial)
    return rng.standard_normal(shape).astype(dtype)


def _randomize(layer, x, rng):
    """Build ``layer`` on ``x`` and give every weight random values (a zero bias would hide bugs)."""
    if not layer.built:
        layer.build(x.shape)
    weights = [rng.standard_normal(w.shape).astype(w.dtype) for w in layer.weights]
    layer.set_weights(weights)
    return weights


def _bias_act(y, bias, data_format, activation):
    y = gpuconv.to_numpy(y).astype(np.float64)
    if bias is not None:
        shape = [1] * y.ndim
        shape[-1 if data_format == "channels_last" else 1] = -1
        y = y + bias.astype(np.float64).reshape(shape)
    return np.asarray(activations.get(activation)(y)) if activation else y


def _causal(x, k, d, data_format):
    """Left-pad the time axis by ``d*(k-1)``: causal == this, then a 'valid' conv."""
    axis = 1 if data_format == "channels_last" else 2
    pads = [(0, 0)] * 3
    pads[axis] = (d * (k - 1), 0)
    return np.pad(x, pads)


# --------------------------------------------------------------------------------------------
# Conv1D / Conv2D / Conv3D
# --------------------------------------------------------------------------------------------
CONV = {1: layers.Conv1D, 2: layers.Conv2D, 3: layers.Conv3D}

CONV_CASES = [
    # rank, filters, kernel, strides, padding, dilation, groups, activation, use_bias
    (1, 4, 3, 1, "valid", 1, 1, None, True),
    (1, 4, 3, 2, "same", 1, 2, "relu", True),
    (1, 6, 2, 1, "causal", 2, 3, "tanh", True),
    (1, 4, 3, 2, "causal", 1, 1, None, False),
    (2, 4, (3, 2), (2, 1), "same", 1, 1, "relu", True),
    (2, 6, 3, 1, "valid", (2, 1), 3, "sigmoid", True),
    (2, 4, 2, 1, "same", 1, 1, "softmax", True),
    (3, 4, 2, 1, "same", (1, 2, 1), 2, None, True),
    (3, 2, (2, 1, 3), (1, 2, 2), "valid", 1, 1, "relu", False),
]


@pytest.mark.parametrize("data_format", DF)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"r{c[0]}-{c[4]}-g{c[6]}-{c[7]}")
def test_conv_matches_ops(backend_name, rng, case, data_format):
    rank, filters, k, s, padding, d, groups, act, use_bias = case
    layer = CONV[rank](filters, k, strides=s, padding=padding, dilation_rate=d, groups=groups,
                       activation=act, use_bias=use_bias, data_format=data_format)
    x = _spatial_input(rng, rank, 6, data_format)
    weights = _randomize(layer, x, rng)
    y = layer(x)
    kernel = weights[0]
    ksize = kernel.shape[0]
    dil = d if isinstance(d, int) else d[0]
    if padding == "causal":
        expected = ops.conv(_causal(x, ksize, dil, data_format), kernel, strides=s, padding="valid",
                            data_format=data_format, dilation_rate=d)
    else:
        expected = ops.conv(x, kernel, strides=s, padding=padding, data_format=data_format, dilation_rate=d)
    expected = _bias_act(expected, weights[1] if use_bias else None, data_format, act)
    assert tuple(y.shape) == tuple(layer.compute_output_shape(x.shape))
    assert_close(y, expected, "float32")


@pytest.mark.parametrize("rank", (1, 2, 3))
def test_conv_weights_shapes_order_and_names(rank):
    layer = CONV[rank](6, 2, groups=3)
    shape = (2,) + (5,) * rank + (9,)
    layer.build(shape)
    assert [w.name for w in layer.weights] == ["kernel", "bias"]
    assert [w.path for w in layer.weights] == [f"{layer.name}/kernel", f"{layer.name}/bias"]
    assert [w.shape for w in layer.weights] == [(2,) * rank + (3, 6), (6,)]
    assert layer.kernel is layer.weights[0]
    assert layer.count_params() == 2 ** rank * 3 * 6 + 6
    assert np.all(layer.bias.numpy() == 0)  # bias_initializer='zeros'


@pytest.mark.parametrize(
    "layer, in_shape, out_shape",
    [
        (layers.Conv1D(4, 3), (None, None, 5), (None, None, 4)),
        (layers.Conv1D(4, 3, strides=2, padding="same"), (None, 9, 5), (None, 5, 4)),
        (layers.Conv1D(4, 3, dilation_rate=2, padding="causal"), (None, 9, 5), (None, 9, 4)),
        (layers.Conv2D(4, 3, data_format="channels_first"), (3, 5, 8, None), (3, 4, 6, None)),
        (layers.Conv2D(4, (3, 1), strides=(2, 1), padding="same"), (None, 7, 7, 2), (None, 4, 7, 4)),
        (layers.Conv3D(2, 2, dilation_rate=3), (1, 7, None, 4, 3), (1, 4, None, 1, 2)),
    ],
)
def test_conv_compute_output_shape(layer, in_shape, out_shape):
    result = layer.compute_output_shape(in_shape)
    assert isinstance(result, tuple)
    assert result == out_shape


def test_kernel_before_build_raises_attribute_error():
    layer = layers.Conv2D(2, 3)
    with pytest.raises(AttributeError, match="You must build the layer before accessing `kernel`."):
        layer.kernel
    assert not hasattr(layer, "kernel")


def test_conv_input_spec_rank_and_channels(rng):
    layer = layers.Conv1D(2, 3)
    assert layer.input_spec.min_ndim == 3
    with pytest.raises(ValueError, match=r"expected min_ndim=3, found ndim=2. Full shape received: \(8, 4\)"):
        layer(np.zeros((8, 4), "float32"))
    layer(np.zeros((1, 5, 3), "float32"))
    assert layer.input_spec.axes == {-1: 3}
    with pytest.raises(ValueError, match=r"expected axis -1 of input shape to have value 3, but received input "
                                         r"with shape \(1, 5, 4\)"):
        layer(np.zeros((1, 5, 4), "float32"))
    channels_first = layers.Conv2D(2, 1, data_format="channels_first")
    channels_first(np.zeros((1, 4, 3, 3), "float32"))
    assert channels_first.input_spec.axes == {1: 4}


def test_conv_rank_too_high_fails_in_shape_inference():
    with pytest.raises(ValueError, match=r"Kernel shape must have the same length as input, but received kernel "
                                         r"of shape \(3, 3, 4, 2\) and input of shape \(2, 3, 8, 8, 4\)\."):
        layers.Conv2D(2, 3)(np.zeros((2, 3, 8, 8, 4), "float32"))


# --------------------------------------------------------------------------------------------
# Activation fusion: built-in elementwise names reach the op, everything else is applied after
# --------------------------------------------------------------------------------------------
class _FusingEngine:
    """The NumPy engine, declaring that it fuses every built-in elementwise activation (as the
    CUDA engine does) and recording the activation each problem asks it to fuse."""

    def __init__(self):
        from gpuconv.cpu import engine as cpu

        self._cpu, self.seen = cpu, []
        self.NAME, self.asarray = "fusing-numpy", cpu.asarray
        self.FUSED_ACTIVATIONS = activations.ELEMENTWISE - {"linear"}

    def __getattr__(self, op):  # conv, depthwise_conv, ...: run the problem without, then fuse here
        def run(problem, *arrays):
            self.seen.append(problem.activation)
            y = getattr(self._cpu, op)(dataclasses.replace(problem, activation=None), *arrays)
            return y if problem.activation is None else activations.get(problem.activation)(y)

        return run


@pytest.mark.parametrize(
    "activation, fused",
    [("relu", "relu"), ("gelu", "gelu"), ("swish", "silu"), (None, None), ("linear", None), ("softmax", None)],
)
def test_builtin_elementwise_activation_is_fused_by_the_engine(monkeypatch, rng, activation, fused):
    engine = _FusingEngine()
    monkeypatch.setattr(gpuconv.backend, "engine", lambda: engine)
    layer = layers.Conv2D(3, 2, activation=activation)
    x = _spatial_input(rng, 2, 2, "channels_last")
    weights = _randomize(layer, x, rng)
    y = layer(x)
    monkeypatch.undo()
    assert engine.seen == [fused]
    expected = _bias_act(ops.conv(x, weights[0]), weights[1], "channels_last", activation)
    assert_close(y, expected, "float32")


@pytest.mark.parametrize("activation", ["relu", "gelu", "softmax"])
def test_numpy_engine_fuses_only_what_it_lists(monkeypatch, rng, activation):
    from gpuconv import planning

    seen = []
    real = planning.run
    monkeypatch.setattr(planning, "run", lambda eng, problem, *a: seen.append(problem.activation) or real(eng, problem, *a))
    layer = layers.Conv2D(3, 2, activation=activation)
    x = _spatial_input(rng, 2, 2, "channels_last")
    weights = _randomize(layer, x, rng)
    y = layer(x)
    monkeypatch.undo()
    assert seen == [activation if activation in ("relu",) else None]
    assert_close(y, _bias_act(ops.conv(x, weights[0]), weights[1], "channels_last", activation), "float32")


def test_user_activation_is_applied_after_the_op(monkeypatch, rng):
    def relu(v):  # a user function named like a built-in must not be swapped for the built-in
        return np.maximum(v, 0) * 2

    engine = _FusingEngine()
    monkeypatch.setattr(gpuconv.backend, "engine", lambda: engine)
    layer = layers.DepthwiseConv1D(3, activation=relu)
    x = _spatial_input(rng, 1, 2, "channels_last")
    weights = _randomize(layer, x, rng)
    y = layer(x)
    monkeypatch.undo()
    assert engine.seen == [None]
    expected = np.maximum(_bias_act(ops.depthwise_conv(x, weights[0]), weights[1], "channels_last", None), 0) * 2
    assert_close(y, expected, "float32")


# --------------------------------------------------------------------------------------------
# LoRA (keras_spec 1.6)
# --------------------------------------------------------------------------------------------
def test_lora_weights_kernel_property_and_numerics(rng):
    layer = layers.Conv2D(4, 3, lora_rank=2, lora_alpha=6)
    x = _spatial_input(rng, 2, 3, "channels_last")
    layer.build(x.shape)
    assert [w.name for w in layer.weights] == ["kernel", "bias", "lora_kernel_a", "lora_kernel_b"]
    assert layer.lora_kernel_a.shape == (3, 3, 3, 2) and layer.lora_kernel_b.shape == (2, 4)
    assert layer._kernel.trainable is False
    assert [w.name for w in layer.trainable_weights] == ["bias", "lora_kernel_a", "lora_kernel_b"]
    np.testing.assert_array_equal(layer.lora_kernel_b.numpy(), 0)  # B starts at zero: no change at first
    weights = _randomize(layer, x, rng)
    kernel, bias, a, b = weights
    merged = kernel + (6 / 2) * np.einsum("hwcr,rf->hwcf", a, b)
    np.testing.assert_allclose(layer.kernel, merged, rtol=1e-6)
    expected = _bias_act(ops.conv(x, merged.astype("float32")), bias, "channels_last", None)
    assert_close(layer(x), expected, "float32")
    config = layer.get_config()
    assert config["lora_rank"] == 2 and config["lora_alpha"] == 6


def test_enable_lora_after_build_and_its_errors():
    layer = layers.Conv1D(2, 3)
    with pytest.raises(ValueError, match="Cannot enable lora on a layer that isn't yet built."):
        layer.enable_lora(2)
    layer.build((1, 5, 4))
    layer.enable_lora(3)
    assert layer.lora_alpha == 3 and layer.lora_kernel_a.shape == (3, 4, 3)
    with pytest.raises(ValueError, match="lora is already enabled. This can only be done once per layer."):
        layer.enable_lora(3)
    constrained = layers.Conv1D(2, 3, kernel_constraint="non_neg")
    constrained.build((1, 5, 4))
    with pytest.raises(ValueError, match="Lora is incompatible with kernel constraints."):
        constrained.enable_lora(2)


def test_lora_round_trips_through_config():
    layer = layers.Conv1D(2, 3, lora_rank=4)
    clone = layers.Conv1D.from_config(layer.get_config())
    clone.build((1, 6, 3))
    assert clone.lora_enabled and clone.lora_rank == 4 and clone.lora_alpha == 4
    assert "lora_rank" not in layers.Conv1D(2, 3).get_config()


# --------------------------------------------------------------------------------------------
# Conv1D/2D/3DTranspose
# --------------------------------------------------------------------------------------------
TRANSPOSE = {1: layers.Conv1DTranspose, 2: layers.Conv2DTranspose, 3: layers.Conv3DTranspose}

TRANSPOSE_CASES = [
    # rank, filters, kernel, strides, padding, output_padding, dilation, activation
    (1, 3, 3, 2, "valid", None, 1, None),
    (1, 3, 4, 3, "same", 1, 1, "relu"),
    (1, 2, 3, 1, "same", None, 2, "tanh"),
    (2, 3, (3, 2), (2, 3), "same", (1, 0), 1, None),
    (2, 2, 2, 3, "valid", None, 1, "relu"),   # s > k_eff: gaps hold only the bias
    (2, 2, 3, 1, "valid", 0, (2, 1), None),
    (3, 2, 2, (2, 1, 2), "same", None, 1, "sigmoid"),
]


@pytest.mark.parametrize("data_format", DF)
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: f"r{c[0]}-{c[4]}-op{c[5]}")
def test_conv_transpose_matches_ops(backend_name, rng, case, data_format):
    rank, filters, k, s, padding, op, d, act = case
    layer = TRANSPOSE[rank](filters, k, strides=s, padding=padding, output_padding=op, dilation_rate=d,
                            activation=act, data_format=data_format)
    x = _spatial_input(rng, rank, 4, data_format, size=5)
    weights = _randomize(layer, x, rng)
    assert weights[0].shape == layer.kernel_size + (filters, 4)
    y = layer(x)
    expected = ops.conv_transpose(x, weights[0], strides=s, padding=padding, output_padding=op,
                                  data_format=data_format, dilation_rate=d)
    expected = _bias_act(expected, weights[1], data_format, act)
    assert list(y.shape) == layer.compute_output_shape(x.shape)
    assert_close(y, expected, "float32")


@pytest.mark.parametrize("data_format", DF)
@pytest.mark.parametrize("rank, groups, strides", [(1, 2, 2), (2, 3, (2, 1)), (3, 2, 1)])
def test_grouped_conv_transpose_is_concatenated_per_group_transposes(backend_name, rng, rank, groups, strides,
                                                                     data_format):
    """Beyond Keras: input block g feeds output block g through kernel[..., g-th F/G slice, g-th C/G slice]."""
    filters, channels = 2 * groups, 2 * groups
    layer = TRANSPOSE[rank](filters, 3, strides=strides, padding="same", groups=groups, data_format=data_format)
    x = _spatial_input(rng, rank, channels, data_format, size=5)
    kernel, bias = _randomize(layer, x, rng)
    assert kernel.shape == (3,) * rank + (filters // groups, channels)
    caxis = -1 if data_format == "channels_last" else 1
    cg, fg = channels // groups, filters // groups
    blocks = [
        ops.conv_transpose(np.take(x, range(i * cg, (i + 1) * cg), axis=caxis), kernel[..., i * cg:(i + 1) * cg],
                           strides=strides, padding="same", data_format=data_format)
        for i in range(groups)
    ]
    assert all(b.shape[caxis] == fg for b in blocks)
    expected = _bias_act(np.concatenate([gpuconv.to_numpy(b) for b in blocks], axis=caxis), bias, data_format, None)
    assert_close(layer(x), expected, "float32")


@pytest.mark.parametrize(
    "layer, in_shape, out_shape",
    [
        (layers.Conv1DTranspose(4, 3, strides=2), (None, None, 5), [None, None, 4]),
        (layers.Conv1DTranspose(4, 3, strides=2), (None, 6, 5), [None, 13, 4]),
        (layers.Conv2DTranspose(4, 3, strides=2, padding="same"), (1, 7, 7, 3), [1, 14, 14, 4]),
        (layers.Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=0), (1, 7, 7, 3), [1, 13, 13, 4]),
        (layers.Conv2DTranspose(4, 2, padding="same", data_format="channels_first"), (None, 3, 5, None),
         [None, 4, 5, None]),
        (layers.Conv3DTranspose(4, 2, strides=3, groups=2), (2, 1, 2, 3, 6), [2, 3, 6, 9, 4]),
    ],
)
def test_conv_transpose_compute_output_shape_is_a_list(layer, in_shape, out_shape):
    result = layer.compute_output_shape(in_shape)
    assert isinstance(result, list)
    assert result == out_shape


def test_conv3d_transpose_positional_order_puts_data_format_before_output_padding():
    layer = layers.Conv3DTranspose(2, 3, 2, "same", "channels_first", 1)
    assert layer.data_format == "channels_first"
    assert layer.output_padding == (1, 1, 1)
    layer2 = layers.Conv2DTranspose(2, 3, 2, "same", 1, "channels_first")
    assert layer2.output_padding == (1, 1) and layer2.data_format == "channels_first"


# --------------------------------------------------------------------------------------------
# DepthwiseConv1D/2D/3D
# --------------------------------------------------------------------------------------------
DEPTHWISE = {1: layers.DepthwiseConv1D, 2: layers.DepthwiseConv2D, 3: layers.DepthwiseConv3D}

DEPTHWISE_CASES = [
    # rank, kernel, strides, padding, depth_multiplier, dilation, activation
    (1, 3, 1, "valid", 1, 1, None),
    (1, 3, 2, "same", 2, 2, "relu"),     # strides > 1 with dilation > 1: allowed since Keras 3.15
    (1, 2, 1, "causal", 3, 2, None),     # beyond Keras
    (1, 3, 2, "causal", 1, 1, "tanh"),   # beyond Keras
    (2, (3, 2), (2, 1), "same", 2, 1, None),
    (2, 2, 2, "valid", 1, 2, "relu"),
    (3, 2, 1, "same", 2, (1, 2, 1), None),  # beyond Keras
    (3, (1, 2, 3), 2, "valid", 1, 1, "sigmoid"),
]


@pytest.mark.parametrize("data_format", DF)
@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=lambda c: f"r{c[0]}-{c[3]}-dm{c[4]}")
def test_depthwise_matches_ops(backend_name, rng, case, data_format):
    rank, k, s, padding, dm, d, act = case
    layer = DEPTHWISE[rank](k, strides=s, padding=padding, depth_multiplier=dm, dilation_rate=d,
                            activation=act, data_format=data_format)
    x = _spatial_input(rng, rank, 3, data_format, size=8)
    weights = _randomize(layer, x, rng)
    assert [w.name for w in layer.weights] == ["kernel", "bias"]
    assert weights[0].shape == layer.kernel_size + (3, dm) and weights[1].shape == (3 * dm,)
    assert layer.kernel is layer.weights[0]
    y = layer(x)
    if padding == "causal":
        expected = ops.depthwise_conv(_causal(x, layer.kernel_size[0], layer.dilation_rate[0], data_format),
                                      weights[0], strides=s, padding="valid", data_format=data_format,
                                      dilation_rate=d)
    else:
        expected = ops.depthwise_conv(x, weights[0], strides=s, padding=padding, data_format=data_format,
                                      dilation_rate=d)
    expected = _bias_act(expected, weights[1], data_format, act)
    assert tuple(y.shape) == layer.compute_output_shape(x.shape)
    assert_close(y, expected, "float32")


def test_depthwise_compute_output_shape():
    assert layers.DepthwiseConv2D(3, depth_multiplier=2).compute_output_shape((None, 8, None, 3)) == (None, 6, None, 6)
    assert layers.DepthwiseConv1D(3, padding="causal").compute_output_shape((4, 9, 2)) == (4, 9, 2)
    assert layers.DepthwiseConv3D(2, strides=2, data_format="channels_first").compute_output_shape(
        (None, 5, 4, 5, 6)) == (None, 5, 2, 2, 3)


# --------------------------------------------------------------------------------------------
# SeparableConv1D/2D
# --------------------------------------------------------------------------------------------
SEPARABLE = {1: layers.SeparableConv1D, 2: layers.SeparableConv2D}

SEPARABLE_CASES = [
    # rank, filters, kernel, strides, padding, depth_multiplier, dilation, activation, use_bias
    (1, 4, 3, 1, "valid", 1, 1, None, True),
    (1, 5, 3, 2, "same", 2, 2, "relu", True),
    (1, 3, 2, 1, "causal", 2, 3, None, True),  # beyond Keras 3 (Keras 2 had it)
    (2, 4, (3, 2), (2, 1), "same", 3, 1, "tanh", False),
    (2, 2, 2, 1, "valid", 1, 2, None, True),
]


@pytest.mark.parametrize("data_format", DF)
@pytest.mark.parametrize("case", SEPARABLE_CASES, ids=lambda c: f"r{c[0]}-{c[4]}-dm{c[5]}")
def test_separable_matches_ops(backend_name, rng, case, data_format):
    rank, filters, k, s, padding, dm, d, act, use_bias = case
    layer = SEPARABLE[rank](filters, k, strides=s, padding=padding, depth_multiplier=dm, dilation_rate=d,
                            activation=act, use_bias=use_bias, data_format=data_format)
    x = _spatial_input(rng, rank, 3, data_format, size=8)
    weights = _randomize(layer, x, rng)
    names = ["depthwise_kernel", "pointwise_kernel"] + (["bias"] if use_bias else [])
    assert [w.name for w in layer.weights] == names
    assert weights[0].shape == layer.kernel_size + (3, dm)
    assert weights[1].shape == (1,) * rank + (3 * dm, filters)
    y = layer(x)
    xin = _causal(x, layer.kernel_size[0], layer.dilation_rate[0], data_format) if padding == "causal" else x
    expected = ops.separable_conv(xin, weights[0], weights[1], strides=s,
                                  padding="valid" if padding == "causal" else padding,
                                  data_format=data_format, dilation_rate=d)
    expected = _bias_act(expected, weights[2] if use_bias else None, data_format, act)
    assert tuple(y.shape) == layer.compute_output_shape(x.shape)
    assert_close(y, expected, "float32")


def test_separable_count_params_and_shape():
    layer = layers.SeparableConv2D(8, 3, depth_multiplier=2)
    layer.build((None, 9, 9, 4))
    assert layer.count_params() == 3 * 3 * 4 * 2 + 4 * 2 * 8 + 8
    assert layer.compute_output_shape((None, None, 9, 4)) == (None, None, 7, 8)


# --------------------------------------------------------------------------------------------
# dtype policy
# --------------------------------------------------------------------------------------------
def test_float64_policy_runs_in_float64(rng):
    layer = layers.Conv1D(2, 3, dtype="float64")
    x = _spatial_input(rng, 1, 3, "channels_last")  # float32 input is cast to the compute dtype
    weights = _randomize(layer, x, rng)
    y = layer(x)
    assert y.dtype == np.float64 and weights[0].dtype == np.float64
    expected = _bias_act(ops.conv(x.astype("float64"), weights[0]), weights[1], "channels_last", None)
    assert_close(y, expected, "float64")


def test_mixed_float16_keeps_float32_variables_and_computes_in_float16(rng):
    layer = layers.Conv2D(2, 2, dtype="mixed_float16")
    x = _spatial_input(rng, 2, 3, "channels_last")
    weights = _randomize(layer, x, rng)
    assert layer.weights[0].dtype == "float32"
    y = layer(x)
    assert y.dtype == np.float16
    x16 = x.astype("float16")
    expected = _bias_act(ops.conv(x16.astype("float64"), weights[0].astype("float16").astype("float64")),
                         weights[1].astype("float16"), "channels_last", None)
    assert_close(y, expected, "float16")


def test_weights_are_taken_from_the_variable_on_every_call(rng):
    """set_weights after a call must change the next result (no stale cached copy)."""
    layer = layers.Conv1D(2, 3)
    x = _spatial_input(rng, 1, 3, "channels_last")
    first = gpuconv.to_numpy(layer(x))
    _randomize(layer, x, rng)
    second = gpuconv.to_numpy(layer(x))
    assert not np.allclose(first, second)

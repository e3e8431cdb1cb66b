"""Gradients of the convolution-family layers with respect to their trainable weights and their
input, through ``gpuconv.GradientTape``: central finite differences in float64 on the NumPy
engine, and the CUDA engine (a real GPU, or the cuda-emulator in CI) against the NumPy engine for
every backward kernel the layers reach.
"""
import zlib

import numpy as np
import pytest

import gpuconv
from conftest import CUDA_MARKS, assert_close, gpu_xp, tolerance
from gpuconv import layers

# (name, factory, input shape (channels_last)): small enough for elementwise finite differences.
LAYERS = [
    ("conv1d_causal_d2", lambda: layers.Conv1D(3, 3, padding="causal", dilation_rate=2, activation="tanh"), (2, 7, 2)),
    ("conv2d_s2_same_g2", lambda: layers.Conv2D(4, 3, strides=2, padding="same", groups=2), (2, 6, 5, 4)),
    ("conv3d", lambda: layers.Conv3D(2, 2, padding="valid"), (1, 4, 3, 3, 2)),
    ("conv2d_transpose", lambda: layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="sigmoid"),
     (2, 3, 4, 2)),
    ("conv1d_transpose_op", lambda: layers.Conv1DTranspose(2, 4, strides=3, output_padding=1), (2, 4, 3)),
    ("depthwise2d_dm2", lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (2, 5, 5, 3)),
    ("separable2d", lambda: layers.SeparableConv2D(4, 3, strides=2, padding="same", depth_multiplier=2),
     (2, 6, 6, 2)),
    ("locally_connected2d", lambda: layers.LocallyConnected2D(2, 2, strides=2), (2, 5, 4, 2)),
    ("max_pool2d", lambda: layers.MaxPooling2D(2, strides=1), (2, 4, 5, 2)),
    ("average_pool2d_same", lambda: layers.AveragePooling2D(3, strides=2, padding="same"), (2, 5, 5, 2)),
    ("upsampling2d_bilinear", lambda: layers.UpSampling2D((2, 3), interpolation="bilinear"), (2, 3, 3, 2)),
]
IDS = [name for name, _, _ in LAYERS]


def _gradients(layer, x, dy):
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    return tape.gradient(y, [x] + list(layer.trainable_weights), output_gradients=dy)


@pytest.mark.parametrize("name, factory, shape", LAYERS, ids=IDS)
def test_layer_gradients_match_finite_differences(name, factory, shape, restore_backend):
    gpuconv.set_backend("numpy")
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # the same data in every process
    layer = type(factory()).from_config({**factory().get_config(), "dtype": "float64"})
    x = rng.standard_normal(shape)
    y = layer(x)
    layer.set_weights([rng.standard_normal(w.shape) for w in layer.get_weights()])
    dy = rng.standard_normal(y.shape)
    grads = _gradients(layer, x, dy)
    weights = layer.get_weights()
    eps = 1e-6

    def loss():
        return float(np.sum(layer(x) * dy))

    # Input
    numeric = np.empty_like(x)
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + eps
        plus = loss()
        x[i] = saved - eps
        minus = loss()
        x[i] = saved
        numeric[i] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(grads[0], numeric, atol=1e-6 * max(1, np.abs(numeric).max()), rtol=0)
    # Every trainable weight
    for j, grad in enumerate(grads[1:]):
        w = weights[j]
        numeric = np.empty_like(w)
        for i in np.ndindex(w.shape):
            for sign, store in ((1, "plus"), (-1, "minus")):
                changed = [v.copy() for v in weights]
                changed[j][i] += sign * eps
                layer.set_weights(changed)
                value = loss()
                if store == "plus":
                    plus = value
                else:
                    minus = value
            numeric[i] = (plus - minus) / (2 * eps)
        layer.set_weights(weights)
        np.testing.assert_allclose(grad, numeric, atol=1e-6 * max(1, np.abs(numeric).max()), rtol=0,
                                   err_msg=f"weight {j}")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("name, factory, shape", LAYERS, ids=IDS)
@CUDA_MARKS[0]
@CUDA_MARKS[1]
def test_cuda_layer_gradients_match_the_numpy_engine(name, factory, shape, dtype):
    """Every backward the layer reaches, on the CUDA engine, against the NumPy engine's float64
    gradients of the same rounded weights and inputs."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # the same data in every process
    xp = gpu_xp()
    x = rng.standard_normal(shape).astype(dtype)
    layer = type(factory()).from_config({**factory().get_config(), "dtype": dtype})
    y = layer(xp.asarray(x))
    weights = [rng.standard_normal(w.shape).astype(dtype) for w in layer.get_weights()]
    layer.set_weights(weights)
    dy = rng.standard_normal(tuple(y.shape)).astype(dtype)
    got = _gradients(layer, xp.asarray(x), xp.asarray(dy))

    backend = gpuconv.get_backend()
    gpuconv.set_backend("numpy")
    try:
        reference = type(layer).from_config({**layer.get_config(), "dtype": "float64"})
        reference(x.astype(np.float64))
        reference.set_weights([w.astype(np.float64) for w in weights])
        want = _gradients(reference, x.astype(np.float64), dy.astype(np.float64))
        # What each bias entry adds up: with an increasing activation (f' >= 0) the gradient
        # for |dy| is the sum of the terms' magnitudes, sum |dy f'(z)|.
        assert layer.get_config().get("activation") in (None, "linear", "tanh", "sigmoid")
        magnitudes = _gradients(reference, x.astype(np.float64), np.abs(dy.astype(np.float64)))
    finally:
        gpuconv.set_backend(backend)
    for weight, g_got, g_want, g_abs in zip([None] + list(layer.trainable_weights), got, want, magnitudes):
        assert g_got.dtype == np.dtype(dtype)
        if weight is not None and weight.name == "bias":
            _assert_sum_close(gpuconv.to_numpy(g_got), g_want, g_abs, dtype)
        else:
            assert_close(gpuconv.to_numpy(g_got), g_want, dtype)


def _assert_sum_close(got, exact, magnitudes, dtype):
    """A bias gradient is a sum over the batch and the positions of terms that carry the
    rounding of ``dtype`` (a float16 output feeds each one): a cancelling sum in a few channels
    has a relative error far above ``dtype``'s whatever the kernel does. Each entry is held to
    the bound of that error model instead: ``tolerance(dtype) * sum(|terms|)``."""
    error = np.abs(got.astype(np.float64) - exact)
    bound = tolerance(dtype) * magnitudes
    assert np.all(error <= bound), f"bias gradient error {error.ravel()} > bound {bound.ravel()}"

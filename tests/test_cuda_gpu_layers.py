"""Every layer on the CUDA backend against the same layer, same weights, on the NumPy backend;
weights uploaded to the device once and refreshed only by set_weights. Needs a GPU."""
import numpy as np
import pytest

import gpuconv
from gpuconv import layers

from conftest import CUDA_MARKS, GPU_BACKEND, assert_close, gpu_xp

pytestmark = CUDA_MARKS

# (class, constructor kwargs, input shape): one case per class, each a non-trivial geometry
# (stride, dilation, groups, asymmetric 'same', channels_first) so a layer-level mapping error shows.
LAYER_CASES = [
    ("Conv1D", dict(filters=6, kernel_size=3, padding="causal", dilation_rate=2, activation="relu"), (2, 17, 4)),
    ("Conv2D", dict(filters=8, kernel_size=3, strides=2, padding="same", groups=2, activation="silu"), (2, 11, 9, 4)),
    ("Conv2D", dict(filters=5, kernel_size=(2, 3), padding="same", data_format="channels_first"), (2, 3, 8, 7)),
    ("Conv3D", dict(filters=4, kernel_size=2, padding="valid"), (1, 5, 6, 7, 3)),
    ("Conv1DTranspose", dict(filters=3, kernel_size=4, strides=2, padding="same"), (2, 9, 5)),
    ("Conv2DTranspose", dict(filters=4, kernel_size=3, strides=2, output_padding=1, padding="valid"), (2, 5, 6, 3)),
    ("Conv2DTranspose", dict(filters=4, kernel_size=3, strides=2, groups=2, padding="same"), (2, 5, 6, 4)),
    ("Conv3DTranspose", dict(filters=2, kernel_size=2, strides=2), (1, 3, 4, 3, 3)),
    ("DepthwiseConv1D", dict(kernel_size=4, padding="causal", depth_multiplier=2), (2, 13, 6)),
    ("DepthwiseConv2D", dict(kernel_size=3, strides=2, padding="same", depth_multiplier=3, activation="tanh"), (2, 9, 10, 4)),
    ("DepthwiseConv3D", dict(kernel_size=3, padding="same"), (1, 5, 6, 7, 3)),
    ("SeparableConv1D", dict(filters=5, kernel_size=3, dilation_rate=2, padding="same"), (2, 15, 4)),
    ("SeparableConv2D", dict(filters=7, kernel_size=3, depth_multiplier=2, padding="same", activation="gelu"), (2, 8, 9, 4)),
    ("LocallyConnected1D", dict(filters=3, kernel_size=3, strides=2), (2, 11, 4)),
    ("LocallyConnected2D", dict(filters=3, kernel_size=2, data_format="channels_first"), (2, 3, 5, 6)),
    ("MaxPooling2D", dict(pool_size=3, strides=2, padding="same"), (2, 9, 8, 5)),
    ("AveragePooling1D", dict(pool_size=3, strides=2, padding="same"), (2, 10, 4)),
    ("AveragePooling3D", dict(pool_size=2), (1, 4, 6, 5, 3)),
    ("GlobalAveragePooling2D", dict(keepdims=True), (2, 5, 6, 3)),
    ("GlobalMaxPooling1D", dict(), (2, 7, 4)),
    ("UpSampling2D", dict(size=(2, 3), interpolation="bilinear"), (2, 4, 5, 3)),
    ("UpSampling3D", dict(size=2, interpolation="trilinear"), (1, 3, 4, 2, 2)),
    ("UpSampling1D", dict(size=3), (2, 4, 3)),
    ("ZeroPadding2D", dict(padding=((1, 2), (0, 3))), (2, 4, 5, 3)),
    ("Cropping3D", dict(cropping=((1, 0), (0, 1), (1, 1))), (1, 4, 5, 6, 2)),
    ("Dense", dict(units=7, activation="softmax"), (3, 5)),
    ("Flatten", dict(), (2, 3, 4, 2)),
]


def _pair(name, kwargs, shape, rng):
    """The layer built on the NumPy backend, and a clone on CUDA holding the same weights."""
    gpuconv.set_backend("numpy")
    cpu_layer = getattr(layers, name)(**kwargs)
    x = rng.standard_normal(shape).astype("float32")
    expected = cpu_layer(x)
    weights = cpu_layer.get_weights()
    gpuconv.set_backend(GPU_BACKEND)
    gpu_layer = getattr(layers, name).from_config(cpu_layer.get_config())
    gpu_layer.build(shape)
    gpu_layer.set_weights(weights)
    return gpu_layer, x, expected


@pytest.mark.parametrize("name,kwargs,shape", LAYER_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(LAYER_CASES)])
def test_layer_on_cuda_matches_numpy_backend(restore_backend, rng, name, kwargs, shape):
    cupy = gpu_xp()

    gpu_layer, x, expected = _pair(name, kwargs, shape, rng)
    got = gpu_layer(x)  # a NumPy input: moved to the device by the layer
    assert isinstance(got, cupy.ndarray)
    assert got.shape == expected.shape
    assert_close(got, expected, "float32")
    assert_close(gpu_layer(cupy.asarray(x)), expected, "float32")


def test_weights_are_uploaded_once_and_refreshed_by_set_weights(restore_backend, rng):
    gpu_layer, x, _ = _pair("Conv2D", dict(filters=4, kernel_size=3), (2, 6, 6, 3), rng)
    y = gpu_layer(x)
    kernel_var = gpu_layer.weights[0]
    device = kernel_var._device_key(y)  # the GPU's id, or "emulator"
    first = kernel_var._device_copies[device]
    gpu_layer(x)
    assert kernel_var._device_copies[device] is first, "weights re-uploaded on every call"
    new = [w + 1 for w in gpu_layer.get_weights()]
    gpu_layer.set_weights(new)
    y = gpu_layer(x)
    gpuconv.set_backend("numpy")
    reference = layers.Conv2D.from_config(gpu_layer.get_config())
    reference.build(x.shape)
    reference.set_weights(new)
    assert_close(y, reference(x), "float32")


def test_seed_cnn_predicts_the_same_on_both_backends(restore_backend, rng):
    def build():
        return gpuconv.Sequential([
            layers.Input((28, 28, 1)),
            layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
            layers.Flatten(), layers.Dense(100, activation="relu"), layers.Dropout(0.4),
            layers.Dense(10, activation="softmax"),
        ])

    x = rng.random((8, 28, 28, 1)).astype("float32")
    gpuconv.set_backend("numpy")
    cpu_model = build()
    expected = cpu_model.predict(x)
    gpuconv.set_backend(GPU_BACKEND)
    gpu_model = build()
    gpu_model.set_weights(cpu_model.get_weights())
    got = gpu_model.predict(x)
    assert isinstance(got, np.ndarray)  # predict returns host arrays, as Keras does
    assert_close(got, expected, "float32")

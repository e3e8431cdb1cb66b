"""Rescaling, Resizing and CenterCrop against real Keras 3.15 (torch backend): outputs over random
configurations (float32 tolerances; integer images exactly up to a rounding tie), gradients
against torch autograd through Keras, configs (keys, values, round trips both ways), output
shapes, bad arguments.

Two places where Keras' torch backend is itself wrong are checked against the correct value
instead, each in its own test:
- ``antialias=True`` with an output width of 1 and an output height above 1: PyTorch's
  antialiased CPU kernel returns the first output row for every row. The correct result is the
  resize of the transposed image, transposed back.
- an integer image whose result leaves the dtype's range (e.g. a negative ``fill_value`` on
  uint8): PyTorch's float->uint8 conversion wraps (-1 -> 255); gpuconv clips (what Keras'
  ``_saturate_cast`` means to do, and does on its other backends).
"""
import inspect
import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process
keras = pytest.importorskip("keras", reason="real-Keras parity needs keras>=3.15 with the torch backend")

import gpuconv  # noqa: E402
from gpuconv import layers  # noqa: E402
from gpuconv.layers import preprocessing as P  # noqa: E402

from conftest import keras_numpy  # noqa: E402

NAMES = ["Rescaling", "Resizing", "CenterCrop"]


def _image_shape(n, h, w, c, data_format, batched=True):
    shape = (h, w, c) if data_format == "channels_last" else (c, h, w)
    return ((n,) + shape) if batched else shape


def _assert_images_close(ours, theirs, x, float_result=None):
    """``float_result``: for an integer image, Keras' result on the same image in float32, which
    ours must equal rounded, except at a value within float32 rounding of a .5 tie."""
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, (ours.shape, theirs.shape, ours.dtype, theirs.dtype)
    if ours.dtype.kind in "iu":
        assert np.abs(ours.astype(np.int64) - theirs.astype(np.int64)).max(initial=0) <= 1
        info = np.iinfo(ours.dtype)
        expected = np.clip(np.round(float_result.astype(np.float64)), info.min, info.max)
        tie = np.abs(np.abs(float_result - np.floor(float_result)) - 0.5) < 1e-3
        np.testing.assert_array_equal(ours[~tie], expected[~tie].astype(ours.dtype))
        return
    scale = max(1.0, float(np.abs(x.astype("float64")).max(initial=0)))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * scale)


# --------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_signature_matches_keras(name):
    ours = inspect.signature(getattr(layers, name).__init__).parameters
    theirs = inspect.signature(getattr(keras.layers, name).__init__).parameters
    assert list(ours) == list(theirs)
    for p in theirs:
        assert ours[p].default == theirs[p].default, p


# --------------------------------------------------------------------------------------------
# Rescaling
# --------------------------------------------------------------------------------------------
def _random_factor(rng, channels):
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return float(rng.normal())
    if kind == 1:
        return [float(v) for v in rng.normal(size=channels)]
    if kind == 2:
        return rng.normal(size=channels).astype(rng.choice(["float32", "float64"]))
    return int(rng.integers(-3, 4))


def test_rescaling_matches_keras(rng):
    for _ in range(30):
        c = int(rng.integers(1, 5))
        scale, offset = _random_factor(rng, c), _random_factor(rng, c)
        shape = tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(1, 4)))) + (c,)
        dtype = str(rng.choice(["float32", "float64", "uint8", "int32"]))
        x = (rng.uniform(0, 255, shape)).astype(dtype)
        y = layers.Rescaling(scale, offset)(x)
        k = keras_numpy(keras.layers.Rescaling(scale, offset)(x))
        assert y.dtype == k.dtype == np.float32
        np.testing.assert_allclose(y, k, rtol=1e-6, atol=1e-6)


def test_rescaling_channels_first_reshapes_scale_like_keras(rng):
    previous = (gpuconv.image_data_format(), keras.config.image_data_format())
    try:
        gpuconv.set_image_data_format("channels_first")
        keras.config.set_image_data_format("channels_first")
        x = rng.uniform(0, 1, (2, 3, 4, 5)).astype("float32")
        scale, offset = [1.0, 2.0, 3.0], 0.5
        y = layers.Rescaling(scale, offset)(x)
        np.testing.assert_allclose(y, keras_numpy(keras.layers.Rescaling(scale, offset)(x)), rtol=1e-6)
        np.testing.assert_allclose(y[:, 1], x[:, 1] * 2 + 0.5, rtol=1e-6)  # one scale per channel
    finally:
        gpuconv.set_image_data_format(previous[0])
        keras.config.set_image_data_format(previous[1])


def test_rescaling_gradient_matches_torch(rng):
    import torch

    x = rng.normal(size=(3, 4, 2))
    v = rng.normal(size=(3, 4, 2))
    scale = [0.5, -2.0]
    t = torch.tensor(x, requires_grad=True)
    keras.layers.Rescaling(scale, 1.0, dtype="float64")(t).backward(torch.tensor(v))
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = layers.Rescaling(scale, 1.0, dtype="float64")(x)
    np.testing.assert_allclose(tape.gradient(y, x, output_gradients=v), keras_numpy(t.grad), rtol=1e-12)


def test_rescaling_config_matches_keras_and_round_trips(rng):
    for trial, (scale, offset) in enumerate([(0.5, 0.0), ([1.0, 2.0], [0.0, 1.0]), ((1.0, 2.0), -1),
                                             (np.array([1.0, 2.0, 3.0], "float32"), np.float32(2.0)),
                                             (np.array([1, 2], "int64"), np.array(0.25))]):
        name = f"rescaling_t{trial}"
        ours, theirs = layers.Rescaling(scale, offset, name=name), keras.layers.Rescaling(scale, offset, name=name)
        config = ours.get_config()
        assert config == theirs.get_config()
        assert list(config) == list(theirs.get_config())
        # Keras' own round trip (which turns a tuple into a list), both ways
        keras_back = keras.layers.Rescaling.from_config(theirs.get_config()).get_config()
        back = layers.Rescaling.from_config(theirs.get_config())
        assert back.get_config() == keras_back
        assert keras.layers.Rescaling.from_config(config).get_config() == keras_back
        x = rng.uniform(0, 1, (2, np.size(scale) if np.ndim(scale) else 3)).astype("float32")
        np.testing.assert_allclose(back(x), keras_numpy(theirs(x)), rtol=1e-6)


@pytest.mark.parametrize("entry", [
    {"class_name": "__numpy__", "config": {"value": [1.0], "dtype": "O"}},
    {"class_name": "__numpy__", "config": {"value": [1.0], "dtype": "str"}},
    {"class_name": "os.system", "config": {"value": "echo"}},
    {"class_name": "__numpy__", "config": {"value": ["a"], "dtype": "float32"}},
])
def test_rescaling_from_config_refuses_other_entries(entry):
    with pytest.raises(ValueError, match="scale"):
        layers.Rescaling.from_config({"name": "r", "scale": entry, "offset": 0.0})


@pytest.mark.parametrize("kwargs,arg", [
    ({"scale": "2"}, "scale"), ({"scale": None}, "scale"), ({"scale": 1.0, "offset": "a"}, "offset"),
    ({"scale": [1.0, "x"]}, "scale"), ({"scale": 1 + 2j}, "scale"), ({"scale": True}, "scale"),
])
def test_rescaling_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        layers.Rescaling(**kwargs)


# --------------------------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------------------------
def _torch_antialias_bug(kwargs, out_w, out_h):
    return kwargs.get("antialias") and kwargs.get("interpolation", "bilinear") != "nearest" and out_w == 1 and out_h > 1


def _random_resizing(rng):
    h, w, oh, ow = (int(v) for v in rng.integers(1, 24, 4))
    mode = int(rng.integers(0, 3))
    kwargs = {
        "interpolation": str(rng.choice(["bilinear", "nearest", "bicubic"])),
        "antialias": bool(rng.random() < 0.3),
        "data_format": str(rng.choice(["channels_last", "channels_first"])),
        "crop_to_aspect_ratio": mode == 1,
        "pad_to_aspect_ratio": mode == 2,
        "fill_value": float(rng.uniform(0, 9)),
    }
    if rng.random() < 0.25:  # an integer upscaling factor: the UpSampling2D path
        oh, ow = h * int(rng.integers(1, 4)), w * int(rng.integers(1, 4))
    return h, w, oh, ow, kwargs


def test_resizing_matches_keras_over_random_configurations(rng):
    done = 0
    while done < 160:
        h, w, oh, ow, kwargs = _random_resizing(rng)
        if _torch_antialias_bug(kwargs, ow, oh):
            continue
        batched = bool(rng.random() < 0.8)
        dtype = str(rng.choice(["float32", "float32", "float64", "uint8", "int32"]))
        x = rng.uniform(0, 255, _image_shape(int(rng.integers(1, 3)), h, w, int(rng.integers(1, 4)),
                                             kwargs["data_format"], batched)).astype(dtype)
        ours = layers.Resizing(oh, ow, **kwargs)
        theirs = keras.layers.Resizing(oh, ow, **kwargs)
        float_result = keras_numpy(theirs(x.astype("float32"))) if x.dtype.kind in "iu" else None
        _assert_images_close(ours(x), keras_numpy(theirs(x)), x, float_result)
        assert ours.compute_output_shape(x.shape) == theirs.compute_output_shape(x.shape)
        done += 1


def test_resizing_exact_sampling_positions_match_torch(rng):
    # nearest picks exactly torch's cells (float32 boundaries included); every size pair to 24
    for h in range(1, 25):
        for oh in range(1, 25):
            x = np.arange(h, dtype="float32").reshape(1, h, 1, 1)
            y = layers.Resizing(oh, 1, interpolation="nearest")(x)
            k = keras_numpy(keras.layers.Resizing(oh, 1, interpolation="nearest")(x))
            np.testing.assert_array_equal(y, k)


def test_resizing_antialias_with_output_width_one(rng):
    # PyTorch's antialiased kernel is wrong here for NCHW-contiguous tensors (Keras' channels_first
    # images, one-channel images, padded images; see the module docstring). The resize of the
    # transposed image, which it computes correctly, transposed back, is the right answer.
    for interpolation in ("bilinear", "bicubic"):
        x = rng.uniform(0, 1, (2, 3, 13, 9)).astype("float32")
        y = layers.Resizing(5, 1, interpolation=interpolation, antialias=True, data_format="channels_first")(x)
        k = keras_numpy(keras.layers.Resizing(1, 5, interpolation=interpolation, antialias=True,
                                              data_format="channels_first")(x.transpose(0, 1, 3, 2)))
        np.testing.assert_allclose(y, k.transpose(0, 1, 3, 2), rtol=1e-5, atol=1e-6)
        wrong = keras_numpy(keras.layers.Resizing(5, 1, interpolation=interpolation, antialias=True,
                                                  data_format="channels_first")(x))
        assert not np.allclose(y, wrong, atol=1e-3)  # the torch bug is still there (else: drop this test)
        # channels_last with several channels takes PyTorch's other kernel, which is right
        xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        np.testing.assert_allclose(layers.Resizing(5, 1, interpolation=interpolation, antialias=True)(xl),
                                   keras_numpy(keras.layers.Resizing(5, 1, interpolation=interpolation, antialias=True)(xl)),
                                   rtol=1e-5, atol=1e-6)


def test_resizing_integer_images_saturate():
    x = np.full((1, 4, 2, 1), 10, dtype="uint8")
    y = layers.Resizing(4, 8, pad_to_aspect_ratio=True, fill_value=-7.0)(x)
    assert y.dtype == np.uint8
    assert set(np.unique(y)) == {0, 10}  # the padding clips to 0 (PyTorch would wrap it to 249)
    y = layers.Resizing(4, 8, pad_to_aspect_ratio=True, fill_value=300.0)(x)
    assert set(np.unique(y)) == {10, 255}
    # bicubic overshoot on uint8 is clamped to [0, 255], as Keras does
    x = np.zeros((1, 6, 6, 1), dtype="uint8")
    x[:, 2:4, 2:4] = 255
    y = layers.Resizing(11, 11, interpolation="bicubic")(x)
    np.testing.assert_array_equal(y, keras_numpy(keras.layers.Resizing(11, 11, interpolation="bicubic")(x)))


def test_resizing_gradients_match_torch_autograd(rng):
    import torch

    for _ in range(25):
        h, w, oh, ow, kwargs = _random_resizing(rng)
        if _torch_antialias_bug(kwargs, ow, oh):
            continue
        x = rng.normal(size=_image_shape(2, h, w, 2, kwargs["data_format"]))
        v = rng.normal(size=_image_shape(2, oh, ow, 2, kwargs["data_format"]))
        t = torch.tensor(x, requires_grad=True)
        keras.layers.Resizing(oh, ow, dtype="float64", **kwargs)(t).backward(torch.tensor(v))
        with gpuconv.GradientTape() as tape:
            tape.watch(x)
            y = layers.Resizing(oh, ow, dtype="float64", **kwargs)(x)
        g = tape.gradient(y, x, output_gradients=v)
        np.testing.assert_allclose(g, keras_numpy(t.grad), rtol=1e-9, atol=1e-9, err_msg=str((h, w, oh, ow, kwargs)))


def test_resizing_integer_upscale_uses_the_upsampling_op(monkeypatch, rng):
    calls = []
    real = P.ops.upsampling_core
    monkeypatch.setattr(P.ops, "upsampling_core", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    x = rng.uniform(0, 1, (1, 3, 4, 2)).astype("float32")
    for interpolation in ("nearest", "bilinear"):
        y = layers.Resizing(6, 12, interpolation=interpolation)(x)
        np.testing.assert_allclose(y, keras_numpy(keras.layers.Resizing(6, 12, interpolation=interpolation)(x)),
                                   rtol=1e-6, atol=1e-6)
    layers.Resizing(5, 12)(x)  # not an integer factor on both axes: the general passes
    assert calls == [(2, 3), (2, 3)]


def test_resizing_config_matches_keras_and_round_trips(rng):
    for trial in range(10):
        h, w, oh, ow, kwargs = _random_resizing(rng)
        name = f"resizing_t{trial}"
        ours, theirs = layers.Resizing(oh, ow, name=name, **kwargs), keras.layers.Resizing(oh, ow, name=name, **kwargs)
        config = ours.get_config()
        assert config == theirs.get_config()
        assert list(config) == list(theirs.get_config())
        assert layers.Resizing.from_config(theirs.get_config()).get_config() == config
        assert keras.layers.Resizing.from_config(config).get_config() == config


@pytest.mark.parametrize("kwargs,arg,keras_fails_at_call", [
    ({"height": 0, "width": 3}, "height", True),
    ({"height": 3, "width": -2}, "width", True),
    ({"height": 2.5, "width": 3}, "height", False),
    ({"height": "3", "width": 3}, "height", False),
    ({"height": True, "width": 3}, "height", False),
    ({"height": 3, "width": 3, "interpolation": "area"}, "interpolation", True),
    ({"height": 3, "width": 3, "interpolation": "lanczos3"}, "interpolation", True),
    ({"height": 3, "width": 3, "fill_mode": "reflect"}, "fill_mode", True),
    ({"height": 3, "width": 3, "crop_to_aspect_ratio": True, "pad_to_aspect_ratio": True}, "aspect_ratio", True),
    ({"height": 3, "width": 3, "data_format": "channels_middle"}, "data_format", False),
    ({"height": 3, "width": 3, "fill_value": "zero"}, "fill_value", False),
    ({"height": 3, "width": 3, "antialias": "yes"}, "antialias", False),
])
def test_resizing_bad_arguments(kwargs, arg, keras_fails_at_call):
    # Keras checks most of these only when the layer runs (or not at all); gpuconv at construction.
    if keras_fails_at_call:
        with pytest.raises((ValueError, RuntimeError)):
            keras.layers.Resizing(**kwargs)(np.zeros((1, 4, 4, 1), "float32"))
    with pytest.raises(ValueError, match=arg):
        layers.Resizing(**kwargs)


@pytest.mark.parametrize("name", ["Resizing", "CenterCrop"])
def test_image_layers_refuse_other_ranks(name):
    for shape in [(4, 4), (1, 2, 4, 4, 1)]:
        with pytest.raises(ValueError, match="rank"):
            getattr(layers, name)(2, 2)(np.zeros(shape, "float32"))
    with pytest.raises(ValueError):
        getattr(layers, name)(2, 2).compute_output_shape((4, 4))


# --------------------------------------------------------------------------------------------
# CenterCrop
# --------------------------------------------------------------------------------------------
def test_center_crop_matches_keras_over_random_configurations(rng):
    for _ in range(120):
        h, w, oh, ow = (int(v) for v in rng.integers(1, 16, 4))
        data_format = str(rng.choice(["channels_last", "channels_first"]))
        batched = bool(rng.random() < 0.7)
        dtype = str(rng.choice(["float32", "float64", "uint8"]))
        x = rng.uniform(0, 255, _image_shape(2, h, w, 2, data_format, batched)).astype(dtype)
        ours, theirs = layers.CenterCrop(oh, ow, data_format=data_format), keras.layers.CenterCrop(oh, ow, data_format=data_format)
        y, k = ours(x), keras_numpy(theirs(x))
        assert y.dtype == k.dtype == np.float32  # the compute dtype, as Keras
        _assert_images_close(y, k, x)
        assert ours.compute_output_shape(x.shape) == theirs.compute_output_shape(x.shape)
        if h >= oh and w >= ow:  # a plain crop: bit-exact
            np.testing.assert_array_equal(y, k)


def test_center_crop_gradients_match_torch_autograd(rng):
    import torch

    for h, w, oh, ow in [(7, 8, 3, 4), (4, 9, 6, 3), (5, 5, 8, 9), (6, 3, 6, 3)]:
        x = rng.normal(size=(2, h, w, 3))
        v = rng.normal(size=(2, oh, ow, 3))
        t = torch.tensor(x, requires_grad=True)
        keras.layers.CenterCrop(oh, ow, dtype="float64")(t).backward(torch.tensor(v))
        with gpuconv.GradientTape() as tape:
            tape.watch(x)
            y = layers.CenterCrop(oh, ow, dtype="float64")(x)
        np.testing.assert_allclose(tape.gradient(y, x, output_gradients=v), keras_numpy(t.grad), rtol=1e-9, atol=1e-9)


def test_center_crop_config_matches_keras_and_round_trips():
    for name, kwargs in [("cc_a", {"height": 3, "width": 4}), ("cc_b", {"height": 1, "width": 9, "data_format": "channels_first"})]:
        ours, theirs = layers.CenterCrop(name=name, **kwargs), keras.layers.CenterCrop(name=name, **kwargs)
        config = ours.get_config()
        assert config == theirs.get_config() and list(config) == list(theirs.get_config())
        assert layers.CenterCrop.from_config(theirs.get_config()).get_config() == config
        assert keras.layers.CenterCrop.from_config(config).get_config() == config


@pytest.mark.parametrize("kwargs,arg", [
    ({"height": 0, "width": 3}, "height"), ({"height": 3, "width": None}, "width"),
    ({"height": 3, "width": 3.0}, "width"), ({"height": 3, "width": 3, "data_format": "nhwc"}, "data_format"),
])
def test_center_crop_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        layers.CenterCrop(**kwargs)


# --------------------------------------------------------------------------------------------
# CUDA backend (a GPU or the cuda-emulator): the NumPy results, on device arrays
# --------------------------------------------------------------------------------------------
def test_preprocessing_layers_run_on_the_active_backend(backend_name, rng):
    from conftest import GPU_BACKEND, gpu_xp

    xp = gpu_xp() if backend_name == "cuda" else np
    x_host = rng.uniform(0, 1, (2, 5, 7, 3)).astype("float32")
    cases = [
        lambda: layers.Rescaling([1.0, 2.0, 3.0], 0.5),
        lambda: layers.Resizing(4, 9),
        lambda: layers.Resizing(10, 14, interpolation="bilinear"),  # the upsampling kernel
        lambda: layers.Resizing(3, 3, interpolation="bicubic", antialias=True, pad_to_aspect_ratio=True),
        lambda: layers.Resizing(6, 5, interpolation="nearest", crop_to_aspect_ratio=True),
        lambda: layers.CenterCrop(3, 4),
        lambda: layers.CenterCrop(8, 6),
    ]
    expected = []
    gpuconv.set_backend("numpy")  # the references, on the host
    for make in cases:
        xh = x_host.copy()
        with gpuconv.GradientTape() as tape:
            tape.watch(xh)
            yh = make()(xh)
        expected.append((yh, tape.gradient(yh, xh, output_gradients=np.ones_like(yh))))
    gpuconv.set_backend(GPU_BACKEND if backend_name == "cuda" else "numpy")
    for make, (yh, gh) in zip(cases, expected):
        x = xp.asarray(x_host)
        with gpuconv.GradientTape() as tape:
            tape.watch(x)
            y = make()(x)
        g = tape.gradient(y, x, output_gradients=xp.ones_like(y))
        assert type(y) is type(x) and type(g) is type(x)
        np.testing.assert_allclose(gpuconv.to_numpy(y), yh, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gpuconv.to_numpy(g), gh, rtol=1e-5, atol=1e-5)
    # an integer image keeps its dtype on the device too (rounded, clipped)
    x8 = (x_host * 255).astype("uint8")
    y8 = layers.Resizing(4, 9, interpolation="bicubic")(xp.asarray(x8))
    assert type(y8) is type(xp.asarray(x8)) and y8.dtype == np.uint8
    gpuconv.set_backend("numpy")
    np.testing.assert_array_equal(gpuconv.to_numpy(y8), layers.Resizing(4, 9, interpolation="bicubic")(x8))


def test_in_a_sequential_model_config_round_trip(rng):
    model = gpuconv.Sequential([gpuconv.Input((9, 7, 3)), layers.Rescaling(np.array([1.0, 2.0, 3.0], "float32"), -1.0),
                                layers.Resizing(6, 6, interpolation="bicubic"), layers.CenterCrop(4, 5)])
    x = rng.uniform(0, 255, (2, 9, 7, 3)).astype("float32")
    again = gpuconv.Sequential.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    np.testing.assert_array_equal(again(x), model(x))
    assert model(x).shape == (2, 4, 5, 3)

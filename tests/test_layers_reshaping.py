"""Cropping1D/2D/3D, ZeroPadding1D/2D/3D, UpSampling1D/2D/3D (keras_spec 2.6-2.8)."""
import numpy as np
import pytest

import gpuconv
from gpuconv import layers, ops

from conftest import assert_close

DF = ("channels_last", "channels_first")


def _input(rng, rank, data_format, channels=2, batch=2):
    spatial = tuple(6 - i for i in range(rank))
    shape = (batch, *spatial, channels) if data_format == "channels_last" else (batch, channels, *spatial)
    return rng.standard_normal(shape).astype("float32")


def _spatial_axes(rank, data_format):
    return tuple(range(1, rank + 1)) if data_format == "channels_last" else tuple(range(2, rank + 2))


# --------------------------------------------------------------------------------------------
# Cropping
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layer, pairs",
    [
        (layers.Cropping1D(), ((1, 1),)),
        (layers.Cropping1D((0, 2)), ((0, 2),)),
        (layers.Cropping1D(2), ((2, 2),)),
        (layers.Cropping2D(), ((0, 0), (0, 0))),
        (layers.Cropping2D(1), ((1, 1), (1, 1))),
        (layers.Cropping2D(((1, 0), 2)), ((1, 0), (2, 2))),
        (layers.Cropping2D(((0, 2), (1, 0)), data_format="channels_first"), ((0, 2), (1, 0))),
        (layers.Cropping3D(), ((1, 1), (1, 1), (1, 1))),
        (layers.Cropping3D((0, (1, 2), 1), data_format="channels_first"), ((0, 0), (1, 2), (1, 1))),
    ],
)
def test_cropping_values_and_shapes(rng, layer, pairs):
    rank = len(pairs)
    x = _input(rng, rank, layer.data_format)
    y = gpuconv.to_numpy(layer(x))
    index = [slice(None)] * x.ndim
    for axis, (before, after) in zip(_spatial_axes(rank, layer.data_format), pairs):
        index[axis] = slice(before, x.shape[axis] - after)
    np.testing.assert_array_equal(y, x[tuple(index)])
    assert y.shape == layer.compute_output_shape(x.shape)
    none_shape = list(x.shape)
    none_shape[_spatial_axes(rank, layer.data_format)[0]] = None
    out = layer.compute_output_shape(tuple(none_shape))
    assert isinstance(out, tuple) and out[_spatial_axes(rank, layer.data_format)[0]] is None


def test_cropping_normalised_values_are_stored():
    assert layers.Cropping1D(3).cropping == (3, 3)
    assert layers.Cropping2D(2).cropping == ((2, 2), (2, 2))
    assert layers.Cropping2D((1, 2)).cropping == ((1, 1), (2, 2))
    assert layers.Cropping3D(0).cropping == ((0, 0), (0, 0), (0, 0))


def test_cropping_too_large_raises_in_shape_inference_and_call():
    with pytest.raises(ValueError, match=r"`cropping` parameter of `Cropping1D` layer must be smaller than the "
                                         r"input length. Received: input_shape=\(None, 2, 3\), cropping=\(1, 1\)"):
        layers.Cropping1D().compute_output_shape((None, 2, 3))
    with pytest.raises(ValueError, match=r"Received: inputs.shape=\(1, 2, 3\), cropping=\(1, 1\)"):
        layers.Cropping1D()(np.zeros((1, 2, 3), "float32"))
    with pytest.raises(ValueError, match=r"Values in `cropping` argument should be smaller than the corresponding "
                                         r"spatial dimension of the input. Received: input_shape=\(None, 4, 2, 1\), "
                                         r"cropping=\(\(1, 1\), \(1, 1\)\)"):
        layers.Cropping2D(1).compute_output_shape((None, 4, 2, 1))
    with pytest.raises(ValueError, match=r"Received: inputs.shape=\(1, 1, 4, 4, 2\)"):
        layers.Cropping3D(((0, 1), 0, 0))(np.zeros((1, 1, 4, 4, 2), "float32"))


# --------------------------------------------------------------------------------------------
# Zero padding
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layer, pairs",
    [
        (layers.ZeroPadding1D(), ((1, 1),)),
        (layers.ZeroPadding1D((0, 3), data_format="channels_first"), ((0, 3),)),
        (layers.ZeroPadding2D(), ((1, 1), (1, 1))),
        (layers.ZeroPadding2D(((2, 0), 1), data_format="channels_first"), ((2, 0), (1, 1))),
        (layers.ZeroPadding3D(), ((1, 1), (1, 1), (1, 1))),
        (layers.ZeroPadding3D((0, (1, 2), 3)), ((0, 0), (1, 2), (3, 3))),
    ],
)
def test_zero_padding_values_and_shapes(backend_name, rng, layer, pairs):
    rank = len(pairs)
    x = _input(rng, rank, layer.data_format)
    y = gpuconv.to_numpy(layer(x))
    widths = [(0, 0)] * x.ndim
    for axis, pair in zip(_spatial_axes(rank, layer.data_format), pairs):
        widths[axis] = pair
    np.testing.assert_array_equal(y, np.pad(x, widths))
    assert y.shape == layer.compute_output_shape(x.shape)
    assert layer.compute_output_shape((None,) * x.ndim) == (None,) * x.ndim


def test_zero_padding_negative_int_is_refused():
    """Keras stores a negative int unchecked and then reports negative sizes (issue 8: ZeroPadding2D(-3)
    on 4x4 gave (1, -2, -2, 1)); we refuse it at construction, as Keras refuses it in every other form."""
    for cls in (layers.ZeroPadding2D, layers.ZeroPadding3D):
        with pytest.raises(ValueError, match=r"`padding` cannot be negative. Received: padding=-1\."):
            cls(-1)


# --------------------------------------------------------------------------------------------
# Upsampling
# --------------------------------------------------------------------------------------------
# UpSampling1D has no data_format in Keras: it appears with channels_last only.
@pytest.mark.parametrize("rank, size, data_format", [(1, 3, "channels_last")] + [
    (rank, size, df) for rank, size in [(2, (2, 3)), (3, (1, 2, 3))] for df in DF])
def test_upsampling_nearest_repeats(backend_name, rng, rank, size, data_format):
    if rank == 1:
        layer = layers.UpSampling1D(size)
        sizes = (size,)
    else:
        layer = (layers.UpSampling2D if rank == 2 else layers.UpSampling3D)(size, data_format=data_format)
        sizes = size
    x = _input(rng, rank, data_format)
    expected = x
    for axis, s in zip(_spatial_axes(rank, data_format), sizes):
        expected = np.repeat(expected, s, axis=axis)
    y = gpuconv.to_numpy(layer(x))
    np.testing.assert_array_equal(y, expected)
    assert tuple(y.shape) == tuple(layer.compute_output_shape(x.shape))


def test_upsampling_bilinear_half_pixel_values():
    """keras_spec 2.8: [1,2] x2 -> [1, 1.25, 1.75, 2]; [1,2,3] x2 -> [1,1.25,1.75,2.25,2.75,3]."""
    for row, expected in (([1, 2], [1, 1.25, 1.75, 2]), ([1, 2, 3], [1, 1.25, 1.75, 2.25, 2.75, 3])):
        x = np.array(row, "float32").reshape(1, 1, len(row), 1)
        y = gpuconv.to_numpy(layers.UpSampling2D((1, 2), interpolation="bilinear")(x))
        np.testing.assert_allclose(y.ravel(), expected, rtol=1e-6)


@pytest.mark.parametrize("data_format", DF)
def test_upsampling_bilinear_matches_ops(backend_name, rng, data_format):
    layer = layers.UpSampling2D((2, 3), data_format=data_format, interpolation="BILINEAR")
    assert layer.interpolation == "bilinear"
    x = _input(rng, 2, data_format)
    expected = ops.upsampling_core(x.astype("float64"), (2, 3), "bilinear", data_format)
    assert_close(layer(x), expected, "float32")


@pytest.mark.parametrize("data_format", DF)
def test_upsampling3d_trilinear_beyond_keras(backend_name, rng, data_format):
    layer = layers.UpSampling3D(2, data_format=data_format, interpolation="trilinear")
    x = _input(rng, 3, data_format)
    y = layer(x)
    assert tuple(y.shape) == layer.compute_output_shape(x.shape)
    assert_close(y, ops.upsampling_core(x.astype("float64"), (2, 2, 2), "trilinear", data_format), "float32")
    # A volume varying along one axis only is interpolated like the 1-D half-pixel rule.
    ramp = np.broadcast_to(np.array([1, 2], "float32").reshape(1, 2, 1, 1, 1), (1, 2, 2, 2, 1)).copy()
    out = gpuconv.to_numpy(layers.UpSampling3D(2, interpolation="trilinear")(ramp))
    np.testing.assert_allclose(out[0, :, 0, 0, 0], [1, 1.25, 1.75, 2], rtol=1e-6)


def test_upsampling_interpolation_validation():
    layer = layers.UpSampling2D(interpolation="lanczos3")  # Keras validates only at call
    with pytest.raises(ValueError, match=r"Invalid value for argument `interpolation`. Expected of one "
                                         r".*Received: interpolation=lanczos3"):
        layer(np.zeros((1, 2, 2, 1), "float32"))
    with pytest.raises(ValueError, match="Received: interpolation=bilinear"):
        layers.UpSampling3D(interpolation="bilinear")  # ours: checked at construction


@pytest.mark.parametrize(
    "layer, in_shape, out_shape",
    [
        (layers.UpSampling1D(3), (None, None, 4), [None, None, 4]),
        (layers.UpSampling1D(), (2, 5, 4), [2, 10, 4]),
        (layers.UpSampling2D((2, 3), data_format="channels_first"), (None, 4, 5, None), (None, 4, 10, None)),
        (layers.UpSampling3D(), (1, 2, None, 4, 3), (1, 4, None, 8, 3)),
    ],
)
def test_upsampling_compute_output_shape_types(layer, in_shape, out_shape):
    result = layer.compute_output_shape(in_shape)
    assert type(result) is type(out_shape)  # UpSampling1D returns a list, as Keras does
    assert result == out_shape

"""Max/Average pooling 1D-3D and GlobalMax/GlobalAverage pooling 1D-3D layers."""
import numpy as np
import pytest

import gpuconv
from gpuconv import layers, ops

from conftest import assert_close

DF = ("channels_last", "channels_first")
MAX = {1: layers.MaxPooling1D, 2: layers.MaxPooling2D, 3: layers.MaxPooling3D}
AVG = {1: layers.AveragePooling1D, 2: layers.AveragePooling2D, 3: layers.AveragePooling3D}
GMAX = {1: layers.GlobalMaxPooling1D, 2: layers.GlobalMaxPooling2D, 3: layers.GlobalMaxPooling3D}
GAVG = {1: layers.GlobalAveragePooling1D, 2: layers.GlobalAveragePooling2D, 3: layers.GlobalAveragePooling3D}


def _input(rng, rank, data_format, channels=3, batch=2):
    spatial = tuple(7 - i for i in range(rank))
    shape = (batch, *spatial, channels) if data_format == "channels_last" else (batch, channels, *spatial)
    return rng.standard_normal(shape).astype("float32")


POOL_CASES = [
    # rank, pool_size, strides, padding
    (1, 2, None, "valid"),
    (1, 3, 1, "same"),
    (1, 2, 3, "SAME"),  # eager call lowercases padding (Keras)
    (2, (2, 3), None, "same"),
    (2, 3, (2, 1), "valid"),
    (3, 2, None, "valid"),
    (3, (1, 2, 3), 2, "same"),
]


@pytest.mark.parametrize("data_format", DF)
@pytest.mark.parametrize("mode", ("max", "average"))
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: f"r{c[0]}-{c[3]}")
def test_pooling_matches_ops(backend_name, rng, case, mode, data_format):
    rank, pool_size, strides, padding = case
    cls = (MAX if mode == "max" else AVG)[rank]
    layer = cls(pool_size, strides=strides, padding=padding, data_format=data_format)
    x = _input(rng, rank, data_format)
    y = layer(x)
    op = ops.max_pool if mode == "max" else ops.average_pool
    expected = op(x, pool_size, strides=strides, padding=padding, data_format=data_format)
    assert_close(y, expected, "float32")
    if padding.islower():
        assert tuple(y.shape) == layer.compute_output_shape(x.shape)
    assert layer.weights == [] and layer.built


def test_average_pooling_same_divides_by_real_cells():
    """keras_spec 2.5: x=[1..5], pool 2, s=1, same -> [1.5, 2.5, 3.5, 4.5, 5.0]."""
    x = np.arange(1, 6, dtype="float32").reshape(1, 5, 1)
    y = layers.AveragePooling1D(2, strides=1, padding="same")(x)
    np.testing.assert_allclose(gpuconv.to_numpy(y).ravel(), [1.5, 2.5, 3.5, 4.5, 5.0])
    ymax = layers.MaxPooling1D(2, strides=1, padding="same")(-x)  # padded cells are not zeros for max
    np.testing.assert_allclose(gpuconv.to_numpy(ymax).ravel(), [-1, -2, -3, -4, -5])


def test_pooling_defaults_strides_and_stored_padding():
    assert layers.MaxPooling1D().pool_size == (2,) and layers.MaxPooling3D().pool_size == (2, 2, 2)
    layer = layers.MaxPooling2D((3, 2))
    assert layer.strides == (3, 2)
    assert layers.AveragePooling2D(2, strides=1).strides == (1, 1)
    assert layers.MaxPooling2D(padding="SAME").padding == "SAME"  # stored as given
    assert layers.MaxPooling2D(padding="SAME").get_config()["padding"] == "SAME"


def test_pooling_symbolic_path_does_not_lowercase_padding():
    with pytest.raises(ValueError, match="Argument `padding` must be either 'valid' or 'same'. "
                                         "Received: padding=SAME"):
        layers.MaxPooling2D(padding="SAME").compute_output_shape((None, 4, 4, 3))


@pytest.mark.parametrize(
    "layer, in_shape, out_shape",
    [
        (layers.MaxPooling1D(), (None, None, 3), (None, None, 3)),
        (layers.MaxPooling1D(3, strides=2, padding="same"), (2, 9, 3), (2, 5, 3)),
        (layers.AveragePooling2D(2, data_format="channels_first"), (None, 3, 9, None), (None, 3, 4, None)),
        (layers.AveragePooling3D((1, 2, 3), padding="same"), (1, 4, 5, 6, 2), (1, 4, 3, 2, 2)),
    ],
)
def test_pooling_compute_output_shape(layer, in_shape, out_shape):
    result = layer.compute_output_shape(in_shape)
    assert isinstance(result, tuple) and result == out_shape


def test_pooling_rank_is_exact():
    with pytest.raises(ValueError, match=r"expected ndim=4, found ndim=3"):
        layers.MaxPooling2D()(np.zeros((1, 4, 4), "float32"))


# --------------------------------------------------------------------------------------------
# Global pooling
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keepdims", (False, True))
@pytest.mark.parametrize("data_format", DF)
@pytest.mark.parametrize("rank", (1, 2, 3))
def test_global_pooling(backend_name, rng, rank, data_format, keepdims):
    x = _input(rng, rank, data_format)
    axes = tuple(range(1, rank + 1)) if data_format == "channels_last" else tuple(range(2, rank + 2))
    for cls, reduce in ((GMAX[rank], np.max), (GAVG[rank], np.mean)):
        layer = cls(data_format=data_format, keepdims=keepdims)
        y = layer(x)
        expected = reduce(x.astype(np.float64), axis=axes, keepdims=keepdims)
        assert_close(y, expected, "float32")
        assert tuple(y.shape) == layer.compute_output_shape(x.shape)


@pytest.mark.parametrize(
    "layer, in_shape, out_shape",
    [
        (layers.GlobalMaxPooling1D(), (None, None, 5), (None, 5)),
        (layers.GlobalAveragePooling2D(keepdims=True), (None, None, 4, 5), (None, 1, 1, 5)),
        (layers.GlobalAveragePooling3D(data_format="channels_first"), (2, 5, None, 3, 3), (2, 5)),
        (layers.GlobalMaxPooling3D(data_format="channels_first", keepdims=True), (2, 5, 3, 3, 3), (2, 5, 1, 1, 1)),
    ],
)
def test_global_pooling_compute_output_shape(layer, in_shape, out_shape):
    result = layer.compute_output_shape(in_shape)
    assert isinstance(result, tuple) and result == out_shape


def test_global_average_pooling1d_mask_leaves_masked_steps_out(rng):
    x = rng.standard_normal((2, 4, 3)).astype("float32")
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
    y = gpuconv.to_numpy(layers.GlobalAveragePooling1D()(x, mask=mask))
    np.testing.assert_allclose(y[0], x[0, :2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(y[1], x[1].mean(0), rtol=1e-6)


def test_aliases_are_the_same_classes():
    assert layers.MaxPool1D is layers.MaxPooling1D and layers.MaxPool3D is layers.MaxPooling3D
    assert layers.AvgPool2D is layers.AveragePooling2D
    assert layers.GlobalMaxPool2D is layers.GlobalMaxPooling2D
    assert layers.GlobalAvgPool1D is layers.GlobalAveragePooling1D
    assert layers.GlobalAvgPool3D is layers.GlobalAveragePooling3D

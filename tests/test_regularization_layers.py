"""SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout and ActivityRegularization against
real Keras 3.15 (torch backend): signatures, configs (keys, values, round trips both ways),
exact inference behaviour, the statistics of the training-mode randomness (the RNG streams
differ from Keras', by design), gradients, penalties in ``layer.losses``, bad arguments.

Statistical checks use bounds of 6 standard errors on sample sizes of thousands, so a correct
layer fails them with probability < 1e-8 while a wrong rate, scale or structure fails them."""
import inspect
import math
import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process
keras = pytest.importorskip("keras", reason="real-Keras parity needs keras>=3.15 with the torch backend")

import gpuconv  # noqa: E402
from gpuconv import layers  # noqa: E402

from conftest import keras_numpy  # noqa: E402

SPATIAL = {"SpatialDropout1D": 1, "SpatialDropout2D": 2, "SpatialDropout3D": 3}
NAMES = list(SPATIAL) + ["GaussianNoise", "GaussianDropout", "ActivityRegularization"]


def _klayer(cls_name, **kwargs):
    return getattr(keras.layers, cls_name)(**kwargs)


def _glayer(cls_name, **kwargs):
    return getattr(layers, cls_name)(**kwargs)


def _spatial_shape(rank, data_format, n, c, side):
    spatial = (side,) * rank
    return (n,) + spatial + (c,) if data_format == "channels_last" else (n, c) + spatial


def _channel_axis(ndim, data_format):
    return ndim - 1 if data_format == "channels_last" else 1


# --------------------------------------------------------------------------------------------
# Signatures and configs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_signature_matches_keras(name):
    ours = inspect.signature(getattr(layers, name).__init__).parameters
    theirs = inspect.signature(getattr(keras.layers, name).__init__).parameters
    assert list(ours) == list(theirs)
    for p in theirs:
        assert ours[p].default == theirs[p].default, p
        assert ours[p].kind == theirs[p].kind, p


def _random_kwargs(name, rng):
    if name in SPATIAL:
        kwargs = {"rate": float(rng.choice([0.0, 0.25, 0.5, 0.9, 1.0]))}
        if name != "SpatialDropout1D":
            kwargs["data_format"] = str(rng.choice(["channels_last", "channels_first"]))
    elif name == "GaussianNoise":
        kwargs = {"stddev": float(rng.choice([0.0, 0.1, 0.5, 1.0]))}
    elif name == "GaussianDropout":
        kwargs = {"rate": float(rng.choice([0.0, 0.1, 0.5, 0.75]))}
    else:
        return {"l1": float(rng.choice([0.0, 0.01, 2.0])), "l2": float(rng.choice([0.0, 0.5, 3.0]))}
    if rng.random() < 0.5:
        kwargs["seed"] = int(rng.integers(0, 1000))
    return kwargs


@pytest.mark.parametrize("name", NAMES)
def test_config_matches_keras_and_round_trips_both_ways(name, rng):
    for trial in range(8):
        kwargs = _random_kwargs(name, rng)
        lname = f"{name.lower()}_{trial}"
        ours, theirs = _glayer(name, name=lname, **kwargs), _klayer(name, name=lname, **kwargs)
        config = ours.get_config()
        assert config == theirs.get_config()
        assert list(config) == list(theirs.get_config())  # Keras' key order too
        # Keras' config -> ours, ours -> Keras: the same layer back.
        assert getattr(layers, name).from_config(theirs.get_config()).get_config() == config
        assert getattr(keras.layers, name).from_config(config).get_config() == config
        assert ours.built and theirs.built  # weightless: built at construction, as Keras


def test_spatial_dropout_has_no_extra_kwargs_like_keras():
    # Keras' spatial dropout takes no **kwargs: trainable / input_shape are TypeErrors there.
    for name in SPATIAL:
        with pytest.raises(TypeError):
            _klayer(name, rate=0.5, trainable=False)
        with pytest.raises(TypeError):
            _glayer(name, rate=0.5, trainable=False)


# --------------------------------------------------------------------------------------------
# Inference: the identity, exactly
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_inference_is_the_identity_as_in_keras(name, rng):
    for _ in range(4):
        kwargs = _random_kwargs(name, rng)
        if name in SPATIAL:
            shape = _spatial_shape(SPATIAL[name], kwargs.get("data_format", "channels_last"), 2, 3, 4)
        else:
            shape = tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(1, 4))))
        x = rng.standard_normal(shape).astype("float32")
        ours, theirs = _glayer(name, **kwargs), _klayer(name, **kwargs)
        for training in (None, False):
            y = ours(x) if training is None else ours(x, training=training)
            k = keras_numpy(theirs(x) if training is None else theirs(x, training=training))
            np.testing.assert_array_equal(y, x)
            np.testing.assert_array_equal(k, x)
        assert ours.compute_output_shape((None,) + shape[1:]) == theirs.compute_output_shape((None,) + shape[1:])


# --------------------------------------------------------------------------------------------
# Spatial dropout in training
# --------------------------------------------------------------------------------------------
def _dropped_channels(y, x, data_format, rate):
    """Per (sample, channel): True when the whole map is zero, False when the whole map is
    x / (1 - rate) exactly; anything else fails (not channel-wise, or another scale)."""
    ax = _channel_axis(y.ndim, data_format)
    yc = np.moveaxis(y, ax, 1).reshape(y.shape[0], y.shape[ax], -1)
    xc = np.moveaxis(x, ax, 1).reshape(x.shape[0], x.shape[ax], -1)
    scaled = xc / np.float32(1.0 - rate)
    zero = (yc == 0).all(axis=2)
    kept = (yc == scaled).all(axis=2)
    assert (zero | kept).all(), "a channel is neither fully dropped nor scaled by 1/(1-rate)"
    return zero


@pytest.mark.parametrize("name", list(SPATIAL))
@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_spatial_dropout_drops_whole_channels_at_keras_rate_and_scale(name, rate, rng):
    rank = SPATIAL[name]
    for data_format in (["channels_last"] if rank == 1 else ["channels_last", "channels_first"]):
        kwargs = {} if rank == 1 else {"data_format": data_format}
        shape = _spatial_shape(rank, data_format, 40, 50, 3)
        # nonzero inputs, so a zero output means a dropped cell
        x = (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)).astype("float32")
        y = _glayer(name, rate=rate, seed=7, **kwargs)(x, training=True)
        k = keras_numpy(_klayer(name, rate=rate, seed=7, **kwargs)(x, training=True))
        n = 40 * 50
        bound = 6 * math.sqrt(rate * (1 - rate) / n)
        for out in (y, k):  # ours and Keras': the same structure, scale and rate
            dropped = _dropped_channels(out, x, data_format, rate)
            assert abs(dropped.mean() - rate) < bound, (dropped.mean(), rate)


def test_spatial_dropout_seed_reproducible_and_stream_advances(rng):
    x = rng.standard_normal((8, 5, 5, 16)).astype("float32")
    a = layers.SpatialDropout2D(0.5, seed=3)
    b = layers.SpatialDropout2D(0.5, seed=3)
    first = a(x, training=True)
    np.testing.assert_array_equal(first, b(x, training=True))
    assert not np.array_equal(first, a(x, training=True))  # the next call draws a new mask
    from gpuconv.utils.random import set_random_seed

    set_random_seed(11)
    c = layers.SpatialDropout2D(0.5)(x, training=True)
    set_random_seed(11)
    np.testing.assert_array_equal(c, layers.SpatialDropout2D(0.5)(x, training=True))


@pytest.mark.parametrize("name", list(SPATIAL))
def test_spatial_dropout_rate_edges_match_keras(name, rng):
    rank = SPATIAL[name]
    x = rng.standard_normal(_spatial_shape(rank, "channels_last", 3, 4, 2)).astype("float32")
    for rate in (0.0, 1.0):
        y = _glayer(name, rate=rate)(x, training=True)
        k = keras_numpy(_klayer(name, rate=rate)(x, training=True))
        np.testing.assert_array_equal(y, k)  # identity / zeros in both
    # an infinite input in a dropped channel gives 0 (Keras: where, not multiply by 0)
    x[0, 0] = np.inf
    np.testing.assert_array_equal(_glayer(name, rate=1.0)(x, training=True), np.zeros_like(x))


@pytest.mark.parametrize("name", list(SPATIAL))
def test_spatial_dropout_gradient_is_the_mask_over_keep_prob(name, rng):
    rank = SPATIAL[name]
    rate = 0.4
    x = rng.uniform(0.5, 2.0, _spatial_shape(rank, "channels_last", 4, 6, 3))
    v = rng.standard_normal(x.shape)
    layer = _glayer(name, rate=rate, seed=1, dtype="float64")
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
    g = tape.gradient(y, x, output_gradients=v)
    mask = (y != 0) / (1 - rate)
    np.testing.assert_allclose(g, v * mask, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Gaussian noise / dropout in training
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stddev", [0.05, 0.3, 1.0])
def test_gaussian_noise_statistics_match_keras(stddev, rng):
    x = rng.standard_normal((50, 100)).astype("float32")
    n = x.size
    for out in (layers.GaussianNoise(stddev, seed=5)(x, training=True),
                keras_numpy(keras.layers.GaussianNoise(stddev, seed=5)(x, training=True))):
        noise = out.astype("float64") - x
        assert out.dtype == np.float32
        assert abs(noise.mean()) < 6 * stddev / math.sqrt(n)
        # the sample std's standard error is stddev / sqrt(2n)
        assert abs(noise.std() - stddev) < 6 * stddev / math.sqrt(2 * n)
        corr = np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1]
        assert abs(corr) < 6 / math.sqrt(n)  # independent per element


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_gaussian_dropout_statistics_match_keras(rate, rng):
    x = rng.uniform(0.5, 2.0, (50, 100)).astype("float32")
    n = x.size
    sd = math.sqrt(rate / (1 - rate))
    for out in (layers.GaussianDropout(rate, seed=5)(x, training=True),
                keras_numpy(keras.layers.GaussianDropout(rate, seed=5)(x, training=True))):
        factor = out.astype("float64") / x
        assert abs(factor.mean() - 1) < 6 * sd / math.sqrt(n)
        assert abs(factor.std() - sd) < 6 * sd / math.sqrt(2 * n)


def test_gaussian_layers_gradients_and_seeds(rng):
    x = rng.standard_normal((6, 7))
    v = rng.standard_normal((6, 7))
    noise_layer = layers.GaussianNoise(0.5, seed=2, dtype="float64")
    drop_layer = layers.GaussianDropout(0.3, seed=2, dtype="float64")
    for layer, expected in ((noise_layer, lambda y: v), (drop_layer, lambda y: v * y / x)):
        with gpuconv.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        np.testing.assert_allclose(tape.gradient(y, x, output_gradients=v), expected(y), rtol=1e-10)
    np.testing.assert_array_equal(layers.GaussianNoise(0.5, seed=9)(x, training=True),
                                  layers.GaussianNoise(0.5, seed=9)(x, training=True))
    np.testing.assert_array_equal(layers.GaussianDropout(0.5, seed=9)(x, training=True),
                                  layers.GaussianDropout(0.5, seed=9)(x, training=True))
    x32 = x.astype("float32")
    for name, arg in (("GaussianNoise", "stddev"), ("GaussianDropout", "rate")):
        np.testing.assert_array_equal(_glayer(name, **{arg: 0.0})(x32, training=True), x32)  # as Keras
        np.testing.assert_array_equal(keras_numpy(_klayer(name, **{arg: 0.0})(x32, training=True)), x32)


def test_gaussian_dropout_rate_one_in_training():
    # Keras divides by zero there (sqrt(rate / (1 - rate))); ours says why, naming `rate`.
    x = np.ones((2, 3), "float32")
    with pytest.raises(ZeroDivisionError):
        keras.layers.GaussianDropout(1.0)(x, training=True)
    with pytest.raises(ValueError, match="rate=1"):
        layers.GaussianDropout(1.0)(x, training=True)
    np.testing.assert_array_equal(layers.GaussianDropout(1.0)(x), x)  # inference is fine


# --------------------------------------------------------------------------------------------
# ActivityRegularization
# --------------------------------------------------------------------------------------------
def test_activity_regularization_losses_and_gradients_match_keras(rng):
    import torch

    for _ in range(12):
        l1, l2 = float(rng.choice([0.0, 0.01, 1.5])), float(rng.choice([0.0, 0.2, 2.0]))
        shape = tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(1, 4))))
        x = rng.standard_normal(shape).astype("float32")
        theirs = keras.layers.ActivityRegularization(l1=l1, l2=l2)
        t = torch.tensor(x, requires_grad=True)
        k_out = theirs(t)
        (k_loss,) = theirs.losses
        k_loss.backward()
        ours = layers.ActivityRegularization(l1=l1, l2=l2)
        with gpuconv.GradientTape() as tape:
            tape.watch(x)
            y = ours(x)
            (loss,) = ours.losses
        np.testing.assert_array_equal(y, keras_numpy(k_out))
        np.testing.assert_allclose(float(loss), float(keras_numpy(k_loss)), rtol=1e-5, atol=1e-7)
        g = tape.gradient(loss, x)
        np.testing.assert_allclose(g, keras_numpy(t.grad), rtol=1e-5, atol=1e-6)


def test_activity_regularization_config_has_no_regularizer_entry():
    config = layers.ActivityRegularization(l1=0.5, name="ar").get_config()
    assert "activity_regularizer" not in config
    assert config == keras.layers.ActivityRegularization(l1=0.5, name="ar").get_config()


# --------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------
BAD = [
    ("SpatialDropout1D", {"rate": -0.1}, "rate"),
    ("SpatialDropout2D", {"rate": 1.5}, "rate"),
    ("SpatialDropout3D", {"rate": 2}, "rate"),
    ("SpatialDropout2D", {"rate": 0.5, "data_format": "channels_middle"}, "data_format"),
    ("GaussianNoise", {"stddev": -1.0}, "stddev"),
    ("GaussianNoise", {"stddev": 1.01}, "stddev"),
    ("GaussianDropout", {"rate": -0.5}, "rate"),
    ("GaussianDropout", {"rate": 3.0}, "rate"),
    ("ActivityRegularization", {"l1": -1.0}, "l1"),
    ("ActivityRegularization", {"l2": float("nan")}, "l2"),
    ("ActivityRegularization", {"l1": float("inf")}, "l1"),
]


@pytest.mark.parametrize("name,kwargs,arg", BAD)
def test_bad_arguments_raise_value_error_as_keras(name, kwargs, arg):
    with pytest.raises(ValueError):
        _klayer(name, **kwargs)
    with pytest.raises(ValueError, match=arg):
        _glayer(name, **kwargs)


@pytest.mark.parametrize("name,kwargs,arg", [
    ("SpatialDropout2D", {"rate": "0.5"}, "rate"),
    ("SpatialDropout1D", {"rate": None}, "rate"),
    ("GaussianNoise", {"stddev": "big"}, "stddev"),
    ("GaussianDropout", {"rate": True}, "rate"),
    ("GaussianNoise", {"stddev": 0.1, "seed": "s"}, "seed"),
    ("SpatialDropout3D", {"rate": 0.1, "seed": 1.5}, "seed"),
    ("ActivityRegularization", {"l1": "x"}, "l1"),
])
def test_non_numeric_arguments_raise_value_error_naming_them(name, kwargs, arg):
    # (Keras fails on these with a TypeError from a comparison, or later; ours names the argument.)
    with pytest.raises(ValueError, match=arg):
        _glayer(name, **kwargs)


@pytest.mark.parametrize("name", list(SPATIAL))
def test_spatial_dropout_checks_input_rank_like_keras(name, rng):
    rank = SPATIAL[name]
    x = rng.standard_normal((2,) * (rank + 3)).astype("float32")
    with pytest.raises(ValueError, match="ndim"):
        _klayer(name, rate=0.5)(x, training=True)
    with pytest.raises(ValueError, match="ndim"):
        _glayer(name, rate=0.5)(x, training=True)


# --------------------------------------------------------------------------------------------
# CUDA backend (a GPU or the cuda-emulator): the same results as NumPy, on device arrays
# --------------------------------------------------------------------------------------------
def test_layers_run_on_the_active_backend(backend_name, rng):
    from conftest import gpu_xp

    xp = gpu_xp() if backend_name == "cuda" else np
    x_host = rng.uniform(0.5, 2.0, (3, 4, 4, 5)).astype("float32")
    x = xp.asarray(x_host)
    v = xp.asarray(rng.standard_normal(x_host.shape).astype("float32"))
    cases = [layers.SpatialDropout2D(0.5, seed=4), layers.GaussianNoise(0.2, seed=4),
             layers.GaussianDropout(0.3, seed=4), layers.ActivityRegularization(0.1, 0.2)]
    host = [layers.SpatialDropout2D(0.5, seed=4), layers.GaussianNoise(0.2, seed=4),
            layers.GaussianDropout(0.3, seed=4), layers.ActivityRegularization(0.1, 0.2)]
    for layer, reference in zip(cases, host):
        with gpuconv.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        g = tape.gradient(y, x, output_gradients=v)
        assert type(y) is type(x) and type(g) is type(x)
        # a seed gives the same draws on every device (they are made on the host)
        expected = gpuconv.to_numpy(reference(x_host, training=True))
        np.testing.assert_allclose(gpuconv.to_numpy(y), expected, rtol=1e-6, atol=1e-7)
        assert np.all(np.isfinite(gpuconv.to_numpy(g)))
    np.testing.assert_allclose(float(gpuconv.to_numpy(cases[3].losses[0])),
                               float(gpuconv.to_numpy(host[3].losses[0])), rtol=1e-5)


def test_in_a_sequential_model_inference_is_the_identity(rng):
    model = gpuconv.Sequential([gpuconv.Input((4, 4, 3)), layers.SpatialDropout2D(0.5), layers.GaussianNoise(0.3),
                                layers.GaussianDropout(0.4), layers.ActivityRegularization(0.1, 0.1)])
    x = rng.standard_normal((2, 4, 4, 3)).astype("float32")
    again = gpuconv.Sequential.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    np.testing.assert_array_equal(model(x), x)
    np.testing.assert_array_equal(again(x), x)

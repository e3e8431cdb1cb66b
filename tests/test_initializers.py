"""gpuconv.initializers: names, configs, fans, seeds and distributions (Keras 3 parity where
keras is installed; the statistics need no Keras)."""
import math
import os

import numpy as np
import pytest

from gpuconv import initializers as I

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported anywhere in this process

VARIANCE_SCALING = {  # name -> (scale, mode, distribution), Keras' definitions
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
}
CONV_KERNEL = (3, 3, 64, 256)  # 147,456 samples: fan_in 576, fan_out 2304


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras", reason="comparing with Keras needs keras>=3.15 (torch backend)")


def _keras_names(keras):
    from keras.src.initializers import ALL_OBJECTS_DICT

    return {name: cls for name, cls in ALL_OBJECTS_DICT.items() if "stft" not in name.lower()}


# --------------------------------------------------------------------------------------------
# Lookup and serialization
# --------------------------------------------------------------------------------------------
def test_names_match_keras(keras):
    names = _keras_names(keras)
    assert set(names) == set(I.ALL_OBJECTS_DICT)
    for name, cls in names.items():
        assert I.ALL_OBJECTS_DICT[name].__name__ == cls.__name__, name


@pytest.mark.parametrize("name", ["GlorotUniform", "glorot_uniform", "HeNormal", "he_normal", "Zeros", "zeros",
                                  "zero", "ones", "one", "constant", "random_normal", "normal", "uniform",
                                  "truncated_normal", "orthogonal", "OrthogonalInitializer", "identity",
                                  "IdentityInitializer", "variance_scaling", "lecun_uniform", "LecunNormal"])
def test_config_matches_keras(keras, name):
    ours = I.serialize(I.get(name))
    # keras.initializers.get("constant") raises KeyError in Keras 3.15 (Constant.from_config needs
    # `value`); ours gives Constant(0.0), which is what Keras' Constant() serializes as.
    theirs_obj = keras.initializers.Constant() if name == "constant" else keras.initializers.get(name)
    theirs = keras.initializers.serialize(theirs_obj)
    if theirs["class_name"] == "Identity":  # Keras drops `gain`; we keep it (see Identity.get_config)
        theirs["config"] = {"gain": 1.0}
    assert ours == theirs


def test_get_forms():
    glorot = I.get("glorot_uniform")
    assert type(glorot) is I.GlorotUniform
    assert type(I.get("GlorotUniform")) is I.GlorotUniform
    assert type(I.get(I.GlorotUniform)) is I.GlorotUniform
    assert I.get(glorot) is glorot
    assert I.get(None) is None
    restored = I.get({"module": "keras.initializers", "class_name": "RandomNormal",
                      "config": {"seed": 4, "mean": 1.0, "stddev": 2.0}, "registered_name": None})
    assert (restored.mean, restored.stddev, restored.seed) == (1.0, 2.0, 4)
    assert I.get({"class_name": "he_normal", "config": {}}).get_config()["seed"] is None

    def custom(shape, dtype=None):
        return np.full(shape, 7.0, dtype=dtype)

    assert I.get(custom) is custom
    for bad in ("foo", "glorotuniform", 3):
        with pytest.raises(ValueError, match=f"Could not interpret initializer identifier: {bad}"):
            I.get(bad)
    with pytest.raises(ValueError, match="Could not interpret initializer identifier"):
        I.get({"class_name": "Nope", "config": {}})


def test_array_as_initializer():
    value = np.arange(6.0).reshape(2, 3)
    init = I.get(value)
    np.testing.assert_array_equal(init((2, 3), dtype="float32"), value)
    with pytest.raises(ValueError, match="Expected `shape` to be"):
        init((3, 2))


@pytest.mark.parametrize("cls", [I.Zeros, I.Ones, I.Constant, I.Identity, I.RandomNormal, I.RandomUniform,
                                 I.TruncatedNormal, I.VarianceScaling, I.GlorotUniform, I.GlorotNormal,
                                 I.HeUniform, I.HeNormal, I.LecunUniform, I.LecunNormal, I.Orthogonal])
def test_config_round_trip(cls):
    obj = cls()
    again = I.deserialize(I.serialize(obj))
    assert type(again) is cls and again.get_config() == obj.get_config()
    assert obj.clone().get_config() == obj.get_config()


def test_fixed_variance_scaling_configs_hold_only_seed_and_axes():
    config = I.HeUniform(seed=5, input_axes=[0, 1, 2], output_axes=[3]).get_config()
    assert config == {"seed": 5, "input_axes": [0, 1, 2], "output_axes": [3]}
    vs = I.VarianceScaling(scale=3.0, mode="fan_out", distribution="normal", seed=2).get_config()
    assert vs == {"seed": 2, "scale": 3.0, "mode": "fan_out", "distribution": "truncated_normal",
                  "input_axes": None, "output_axes": None}


# --------------------------------------------------------------------------------------------
# Fans
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(), (5,), (4, 6), (3, 4, 6), (3, 3, 16, 32), (2, 3, 3, 8, 4), (3, 3, 32, 1)])
def test_compute_fans_matches_keras(keras, shape):
    from keras.src.initializers.random_initializers import compute_fans

    assert I.compute_fans(shape) == compute_fans(shape)


def test_compute_fans_values_and_axes():
    assert I.compute_fans((3, 3, 16, 32)) == (144, 288)
    assert I.compute_fans((7, 5)) == (7, 5)
    assert I.compute_fans((5,)) == (5, 5)
    assert I.compute_fans(()) == (1, 1)
    assert I.compute_fans((3, 3, 16, 32), input_axes=[2], output_axes=[0, 1, 3]) == (16, 288)


# --------------------------------------------------------------------------------------------
# Seeds and dtypes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(VARIANCE_SCALING) + ["random_normal", "random_uniform", "truncated_normal",
                                                               "orthogonal"])
def test_seed_reproducible(name):
    cls = I.ALL_OBJECTS_DICT[name]
    a = cls(seed=42)((8, 6))
    np.testing.assert_array_equal(a, cls(seed=42)((8, 6)))
    np.testing.assert_array_equal(a, cls(seed=42)((8, 6)))
    assert not np.array_equal(a, cls(seed=43)((8, 6)))
    unseeded = cls()
    assert not np.array_equal(unseeded((8, 6)), unseeded((8, 6)))


@pytest.mark.parametrize("bad", [1.5, "3", True])
def test_seed_must_be_an_int(bad):
    with pytest.raises(ValueError, match="`seed` argument should be"):
        I.GlorotUniform(seed=bad)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_dtypes(dtype):
    for name in ("glorot_uniform", "he_normal", "zeros", "ones", "orthogonal", "random_normal"):
        value = I.get(name)((4, 5), dtype=dtype)
        assert value.dtype == np.dtype(dtype) and value.shape == (4, 5)
    assert I.get("glorot_uniform")((2, 2)).dtype == np.float32  # dtype=None is floatx


# --------------------------------------------------------------------------------------------
# Distributions
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(VARIANCE_SCALING))
def test_variance_scaling_distributions(name):
    scale, mode, distribution = VARIANCE_SCALING[name]
    fan_in, fan_out = 576, 2304
    n = {"fan_in": fan_in, "fan_avg": (fan_in + fan_out) / 2}[mode]
    variance = scale / n
    w = I.get(name)(CONV_KERNEL, dtype="float64")  # the variance estimate's relative sd is ~0.3%
    assert abs(w.mean()) < 5 * math.sqrt(variance / w.size)
    assert w.var() == pytest.approx(variance, rel=0.02)
    if distribution == "uniform":
        limit = math.sqrt(3 * variance)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.999 * limit
    else:
        raw_stddev = math.sqrt(variance) / 0.87962566103423978
        assert np.abs(w).max() <= 2 * raw_stddev and np.abs(w).max() > 1.99 * raw_stddev


def test_variance_scaling_modes_and_untruncated():
    shape = (200, 400)
    for mode, n in (("fan_in", 200), ("fan_out", 400), ("fan_avg", 300)):
        w = I.VarianceScaling(scale=3.0, mode=mode, distribution="untruncated_normal", seed=1)(shape, "float64")
        assert w.var() == pytest.approx(3.0 / n, rel=0.02)
        assert np.abs(w).max() > 3 * math.sqrt(3.0 / n)  # not truncated
    small = I.VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform", seed=0)((1, 5), "float64")
    assert np.abs(small).max() <= math.sqrt(3.0)  # n = max(1, fan_in)


def test_random_normal_uniform_truncated():
    n = (400, 500)
    w = I.RandomNormal(mean=1.0, stddev=0.5, seed=0)(n, "float64")
    assert w.mean() == pytest.approx(1.0, abs=0.005) and w.std() == pytest.approx(0.5, rel=0.01)
    u = I.RandomUniform(minval=-0.2, maxval=0.6, seed=0)(n, "float64")
    assert u.min() >= -0.2 and u.max() < 0.6 and u.mean() == pytest.approx(0.2, abs=0.005)
    t = I.TruncatedNormal(mean=2.0, stddev=0.1, seed=0)(n, "float64")
    assert np.abs(t - 2.0).max() <= 0.2 and t.std() == pytest.approx(0.1 * 0.87962566103423978, rel=0.01)


def test_constant_identity_orthogonal():
    np.testing.assert_array_equal(I.Constant(2.5)((2, 3)), np.full((2, 3), 2.5, dtype="float32"))
    np.testing.assert_array_equal(I.Zeros()((2,)), [0, 0])
    np.testing.assert_array_equal(I.Ones()((2,)), [1, 1])
    np.testing.assert_array_equal(I.Identity(gain=3.0)((2, 3)), 3.0 * np.eye(2, 3))
    with pytest.raises(ValueError, match="only be used for 2D matrices"):
        I.Identity()((2, 2, 2))
    for shape in ((6, 4), (4, 6), (3, 3, 2, 5)):
        q = I.Orthogonal(gain=2.0, seed=3)(shape, "float64").reshape(-1, shape[-1])
        small = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
        np.testing.assert_allclose(small, 4.0 * np.eye(small.shape[0]), atol=1e-12)
    with pytest.raises(ValueError, match="at least two-dimensional"):
        I.Orthogonal()((5,))


@pytest.mark.parametrize("kwargs,match", [
    ({"scale": 0.0}, "Argument `scale` must be positive float. Received: scale=0.0"),
    ({"scale": -1}, "Argument `scale` must be positive float"),
    ({"mode": "fan_sum"}, "Invalid `mode` argument: fan_sum"),
    ({"distribution": "cauchy"}, "Invalid `distribution` argument: cauchy"),
])
def test_variance_scaling_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        I.VarianceScaling(**kwargs)


def test_integer_dtype_refused_by_random_initializers():
    with pytest.raises(ValueError, match="floating-point dtype"):
        I.GlorotUniform()((2, 2), dtype="int32")

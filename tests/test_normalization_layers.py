"""BatchNormalization, LayerNormalization, GroupNormalization and Normalization against real
Keras 3.15 (torch backend) over seeded random configurations: signatures, weights (names,
order, shapes, trainable flags), inference and training outputs, moving statistics after
several training calls, configs both ways, set_weights with Keras' weights, and gradients
(GradientTape against torch autograd through the Keras layer, in float64 so the comparison is
tight). Bad arguments raise ValueError/TypeError naming them. The device path (moving
statistics updated where the batch lives) runs on the CUDA engine: a real GPU or the
cuda-emulator."""
import contextlib
import inspect

import numpy as np
import pytest

import gpuconv
from gpuconv import layers
from conftest import keras_numpy

pytestmark = [
    # Keras' variables under NumPy 2 (not ours): np.array(variable) warns about `copy`.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    # Keras' own LayerNormalization(rms_scaling=True) deprecation warning (ours is asserted).
    pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`:UserWarning:keras"),
]

# float32 outputs: both sides normalize in float32 with different reduction orders (and Keras
# forms the variance as E[x^2] - E[x]^2), so values of order 1 agree to a few ulps times the
# reduction length; 2e-5 absolute leaves room for that and nothing more.
F32 = dict(rtol=2e-5, atol=2e-5)
# float64: the same formulas, so only rounding separates the two.
F64 = dict(rtol=1e-9, atol=1e-10)


def _config_without_name(config):
    return {k: v for k, v in config.items() if k != "name"}


def _random_shape(r, rank):
    """A small shape of ``rank``: a batch of 4-6 (every batch statistic reduces over at least 4
    values), other axes of 2-4 entries."""
    return (int(r.integers(4, 7)),) + tuple(int(d) for d in r.integers(2, 5, size=rank - 1))


def _positive(r, shape):
    return (np.abs(r.standard_normal(shape)) + 0.2).astype("float32")


# --------------------------------------------------------------------------------------------
# Signatures and weights
# --------------------------------------------------------------------------------------------
NAMES = ["BatchNormalization", "LayerNormalization", "GroupNormalization", "Normalization"]


@pytest.mark.parametrize("name", NAMES)
def test_constructor_signatures_match_keras(keras, name):
    assert inspect.signature(getattr(layers, name).__init__) == inspect.signature(getattr(keras.layers, name).__init__)


@pytest.mark.parametrize("name, kwargs, shape", [
    ("BatchNormalization", {}, (2, 3, 4)),
    ("BatchNormalization", {"center": False}, (2, 5)),
    ("BatchNormalization", {"scale": False, "axis": 1}, (2, 3, 4)),
    ("BatchNormalization", {"renorm": True}, (2, 3)),
    ("LayerNormalization", {"axis": [1, 2]}, (2, 3, 4)),
    ("LayerNormalization", {"scale": False}, (2, 3)),
    ("LayerNormalization", {"rms_scaling": True}, (2, 3)),
    ("GroupNormalization", {"groups": 2}, (2, 3, 4)),
    ("GroupNormalization", {"groups": 3, "axis": 1, "center": False}, (2, 6, 4)),
    ("Normalization", {}, (2, 3, 4)),
    ("Normalization", {"axis": None}, (2, 3)),
    ("Normalization", {"axis": (1, 2)}, (2, 3, 4)),
    ("Normalization", {"mean": 1.0, "variance": 2.0}, (2, 3)),
])
def test_weights_match_keras(keras, name, kwargs, shape):
    with pytest.warns(UserWarning, match="rms_scaling") if kwargs.get("rms_scaling") else contextlib.nullcontext():
        ours = getattr(layers, name)(**kwargs)
    theirs = getattr(keras.layers, name)(**kwargs)
    ours.build(shape)
    theirs.build(shape)
    assert [(w.name, tuple(w.shape), w.dtype, w.trainable) for w in ours.weights] == \
        [(w.name, tuple(w.shape), w.dtype, w.trainable) for w in theirs.weights]
    assert [w.path for w in ours.weights] == [f"{ours.name}/{w.name}" for w in theirs.weights]
    assert ours.count_params() == theirs.count_params()
    assert len(ours.trainable_weights) == len(theirs.trainable_weights)
    ours.trainable = False
    assert ours.trainable_weights == [] and len(ours.non_trainable_weights) == len(ours.weights)


# --------------------------------------------------------------------------------------------
# BatchNormalization
# --------------------------------------------------------------------------------------------
def _bn_cases(n=28, seed=11):
    r = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        rank = int(r.integers(2, 6))
        shape = _random_shape(r, rank)
        kwargs = {
            "axis": int(r.integers(-rank, rank)),
            "momentum": float(r.choice([0.0, 0.5, 0.9, 0.99])),
            "epsilon": float(r.choice([1e-3, 1e-5, 0.1])),
            "center": bool(r.integers(2)),
            "scale": bool(r.integers(2)),
        }
        cases.append(pytest.param(shape, kwargs, i, id=f"{shape}-{kwargs['axis']}-{i}"))
    return cases


def _bn_pair(keras, shape, kwargs, r, dtype="float32"):
    theirs = keras.layers.BatchNormalization(**kwargs, dtype=dtype)
    ours = layers.BatchNormalization(**kwargs, dtype=dtype)
    theirs.build(shape)
    ours.build(shape)
    weights = []
    for w in theirs.weights:
        if w.name == "moving_variance":
            weights.append(_positive(r, w.shape).astype(dtype))
        else:
            weights.append(r.standard_normal(tuple(w.shape)).astype(dtype))
    theirs.set_weights(weights)
    ours.set_weights([keras_numpy(w) for w in theirs.get_weights()])
    return ours, theirs


@pytest.mark.parametrize("shape, kwargs, seed", _bn_cases())
def test_batch_norm_inference_training_and_moving_statistics_match_keras(keras, shape, kwargs, seed):
    r = np.random.default_rng(seed)
    ours, theirs = _bn_pair(keras, shape, kwargs, r)
    x = (1.5 * r.standard_normal(shape) + 0.3).astype("float32")
    np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), **F32)
    np.testing.assert_allclose(ours(x, training=False), keras_numpy(theirs(x, training=False)), **F32)
    for _ in range(3):  # the same batch three times: the moving statistics converge towards it
        np.testing.assert_allclose(ours(x, training=True), keras_numpy(theirs(x, training=True)), **F32)
        for mine, keras_w in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_allclose(mine, keras_numpy(keras_w), rtol=1e-5, atol=1e-6)
    # Inference afterwards reads the updated moving statistics.
    np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), **F32)


def test_batch_norm_moving_update_rule_and_biased_variance():
    x = np.arange(12, dtype="float32").reshape(4, 3) ** 1.5
    layer = layers.BatchNormalization(momentum=0.75)
    layer(x, training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.25 * x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.75 + 0.25 * x.var(axis=0), rtol=1e-6)  # ddof=0


@pytest.mark.parametrize("shape, kwargs, seed", _bn_cases(n=6, seed=5))
def test_frozen_batch_norm_runs_in_inference_mode_as_keras(keras, shape, kwargs, seed):
    r = np.random.default_rng(seed)
    ours, theirs = _bn_pair(keras, shape, kwargs, r)
    ours.trainable = False
    theirs.trainable = False
    before = ours.get_weights()
    x = r.standard_normal(shape).astype("float32")
    np.testing.assert_allclose(ours(x, training=True), keras_numpy(theirs(x, training=True)), **F32)
    np.testing.assert_allclose(ours(x, training=True), ours(x), rtol=0, atol=0)
    for a, b, c in zip(ours.get_weights(), before, theirs.get_weights()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, keras_numpy(c), rtol=0, atol=0)


@pytest.mark.parametrize("clipping", [None, {"rmax": 1.5, "rmin": 0.8, "dmax": 0.5}, {"rmax": 1.1}])
def test_batch_norm_renorm_matches_keras(keras, clipping):
    r = np.random.default_rng(3)
    kwargs = {"renorm": True, "renorm_clipping": clipping, "renorm_momentum": 0.8, "momentum": 0.7}
    shape = (6, 3, 4)
    ours, theirs = _bn_pair(keras, shape, kwargs, r)
    for w in ("moving_stddev", "renorm_stddev"):  # start from positive standard deviations
        value = _positive(r, (4,))
        getattr(theirs, w).assign(value)
        getattr(ours, w).assign(value)
    for _ in range(3):
        x = (2.0 * r.standard_normal(shape) + 0.5).astype("float32")
        np.testing.assert_allclose(ours(x, training=True), keras_numpy(theirs(x, training=True)), **F32)
        for mine, keras_w in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_allclose(mine, keras_numpy(keras_w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), **F32)


def _torch_normalize_grads(x, v, axes, weights, weight_shape, epsilon, grouped=None):
    """Torch autograd, in float64, through the textbook formula: (x - mean) / sqrt(var + eps)
    (biased variance over ``axes``) * gamma + beta, with ``x`` first reshaped to ``grouped`` (group
    normalization). ``weights``: [(gamma or None), (beta or None)]. The reference for the tape's
    gradients; Keras itself cannot be (it normalizes float64 inputs in float32:
    ``result_type('float64', 'float32')`` is float32 in Keras)."""
    import torch

    xt = torch.tensor(x, requires_grad=True)
    params = [None if w is None else torch.tensor(w, requires_grad=True) for w in weights]
    h = xt if grouped is None else xt.reshape(grouped)
    mean = h.mean(dim=axes, keepdim=True)
    var = ((h - mean) ** 2).mean(dim=axes, keepdim=True)
    y = (h - mean) / torch.sqrt(var + epsilon)
    gamma, beta = params
    if gamma is not None:
        y = y * gamma.reshape(weight_shape)
    if beta is not None:
        y = y + beta.reshape(weight_shape)
    y = y.reshape(x.shape)
    (y * torch.tensor(v)).sum().backward()
    grads = [xt.grad.numpy()] + [p.grad.numpy() for p in params if p is not None]
    return y.detach().numpy(), grads


def _gamma_beta(layer):
    return [None if layer.gamma is None else layer.gamma.numpy(), None if layer.beta is None else layer.beta.numpy()]


def _tape_grads(layer, x, v, training):
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training) if training is not None else layer(x)
    grads = tape.gradient(y, [x] + layer.trainable_weights, output_gradients=v)
    return y, grads


@pytest.mark.parametrize("shape, kwargs, seed", _bn_cases(n=10, seed=23))
def test_batch_norm_training_gradients_match_torch_autograd(keras, shape, kwargs, seed):
    r = np.random.default_rng(seed)
    ours, theirs = _bn_pair(keras, shape, kwargs, r, dtype="float64")
    x = r.standard_normal(shape)
    v = r.standard_normal(shape)
    axis = kwargs["axis"] % len(shape)
    reduce = tuple(a for a in range(len(shape)) if a != axis)
    weight_shape = tuple(shape[a] if a == axis else 1 for a in range(len(shape)))
    expected_y, expected = _torch_normalize_grads(x, v, reduce, _gamma_beta(ours), weight_shape, kwargs["epsilon"])
    y, grads = _tape_grads(ours, x, v, True)
    np.testing.assert_allclose(y, expected_y, **F64)
    assert len(grads) == len(expected) == 1 + kwargs["center"] + kwargs["scale"]
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, **F64)
    # The moving statistics were updated once (as Keras' layer, in float32 there), outside the tape.
    keras_numpy(theirs(x, training=True))
    for mine, keras_w in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_numpy(keras_w), rtol=1e-6, atol=1e-7)


def test_batch_norm_inference_gradient_and_no_gradient_to_moving_statistics():
    r = np.random.default_rng(0)
    layer = layers.BatchNormalization(axis=1)
    x = r.standard_normal((3, 4, 2))
    layer.build(x.shape)
    layer.moving_variance.assign(_positive(r, (4,)))
    with gpuconv.GradientTape(persistent=True) as tape:
        tape.watch(x)
        tape.watch(layer.moving_mean)
        y = layer(x, training=True)
    assert tape.gradient(y, layer.moving_mean) is None  # training mode never reads it
    gx, = tape.gradient(y, [x])
    # d/dx of sum(BN_train(x)) is 0 per channel: the batch mean absorbs a constant shift.
    np.testing.assert_allclose(gx, 0, atol=1e-6)
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    gx = tape.gradient(y, x)
    inv = 1 / np.sqrt(layer.moving_variance.numpy().astype("float64") + 1e-3)
    np.testing.assert_allclose(gx, np.broadcast_to(inv[None, :, None], x.shape), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# LayerNormalization
# --------------------------------------------------------------------------------------------
def _ln_cases(n=28, seed=17):
    r = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        rank = int(r.integers(2, 6))
        shape = _random_shape(r, rank)
        n_axes = int(r.integers(1, rank))  # never the batch axis, never all of them
        axes = sorted(int(a) for a in r.choice(np.arange(1, rank), size=n_axes, replace=False))
        if r.integers(2):  # the same axes counted from the end
            axes = [a - rank for a in axes]
        axis = axes[0] if len(axes) == 1 and r.integers(2) else axes
        kwargs = {"axis": axis, "epsilon": float(r.choice([1e-3, 1e-6, 0.1])),
                  "center": bool(r.integers(2)), "scale": bool(r.integers(2))}
        cases.append(pytest.param(shape, kwargs, i, id=f"{shape}-{axis}-{i}"))
    return cases


def _ln_pair(keras, shape, kwargs, r, dtype="float32"):
    theirs = keras.layers.LayerNormalization(**kwargs, dtype=dtype)
    ours = layers.LayerNormalization(**kwargs, dtype=dtype)
    theirs.build(shape)
    ours.build(shape)
    theirs.set_weights([r.standard_normal(tuple(w.shape)).astype(dtype) for w in theirs.weights])
    ours.set_weights([keras_numpy(w) for w in theirs.get_weights()])
    return ours, theirs


def _ln_positions(kwargs, rank):
    axis = kwargs["axis"]
    return tuple(sorted(a % rank for a in (axis if isinstance(axis, list) else [axis])))


def _keras_torch_layer_norm_runs(positions, rank):
    """Keras' torch backend sends consecutive axes to torch's layer_norm, which normalizes
    trailing dims only: consecutive axes that stop before the last one fail there (Keras' bug;
    its other backends compute those configurations with the formula)."""
    consecutive = all(b - a == 1 for a, b in zip(positions, positions[1:]))
    return not consecutive or positions[-1] == rank - 1


def _layer_norm_reference(x, positions, gamma, beta, epsilon):
    """float64 NumPy: (x - mean) / sqrt(var + eps) * gamma + beta over ``positions``."""
    x = x.astype("float64")
    shape = tuple(x.shape[a] if a in positions else 1 for a in range(x.ndim))
    mean, var = x.mean(axis=positions, keepdims=True), x.var(axis=positions, keepdims=True)
    y = (x - mean) / np.sqrt(var + epsilon)
    y = y if gamma is None else y * gamma.reshape(shape)
    return y if beta is None else y + beta.reshape(shape)


@pytest.mark.parametrize("shape, kwargs, seed", _ln_cases())
def test_layer_norm_outputs_and_config_match_keras(keras, shape, kwargs, seed):
    r = np.random.default_rng(seed)
    ours, theirs = _ln_pair(keras, shape, kwargs, r)
    x = (1.5 * r.standard_normal(shape) - 0.4).astype("float32")
    positions = _ln_positions(kwargs, len(shape))
    np.testing.assert_allclose(ours(x), _layer_norm_reference(x, positions, *_gamma_beta(ours), kwargs["epsilon"]),
                               **F32)
    if _keras_torch_layer_norm_runs(positions, len(shape)):
        np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), **F32)
        np.testing.assert_allclose(ours(x, training=True), keras_numpy(theirs(x, training=True)), **F32)
    assert _config_without_name(ours.get_config()) == _config_without_name(theirs.get_config())  # built: sorted list


@pytest.mark.parametrize("shape, kwargs, seed", _ln_cases(n=10, seed=29))
def test_layer_norm_gradients_match_torch_autograd(keras, shape, kwargs, seed):
    r = np.random.default_rng(seed)
    ours, theirs = _ln_pair(keras, shape, kwargs, r, dtype="float64")
    x, v = r.standard_normal(shape), r.standard_normal(shape)
    axes = _ln_positions(kwargs, len(shape))
    weight_shape = tuple(shape[a] if a in axes else 1 for a in range(len(shape)))
    expected_y, expected = _torch_normalize_grads(x, v, axes, _gamma_beta(ours), weight_shape, kwargs["epsilon"])
    if _keras_torch_layer_norm_runs(axes, len(shape)):
        np.testing.assert_allclose(keras_numpy(theirs(x)), expected_y, **F32)  # Keras (in float32) agrees
    y, grads = _tape_grads(ours, x, v, None)
    np.testing.assert_allclose(y, expected_y, **F64)
    assert len(grads) == len(expected)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, **F64)


def test_layer_norm_rms_scaling_matches_keras(keras):
    r = np.random.default_rng(4)
    x = r.standard_normal((3, 5)).astype("float32") + 1.0
    with pytest.warns(UserWarning, match="rms_scaling"):
        ours = layers.LayerNormalization(rms_scaling=True)
    theirs = keras.layers.LayerNormalization(rms_scaling=True)
    theirs.build(x.shape)
    theirs.set_weights([r.standard_normal((5,)).astype("float32")])
    ours.build(x.shape)
    ours.set_weights([keras_numpy(w) for w in theirs.get_weights()])
    np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), **F32)
    assert _config_without_name(ours.get_config()) == _config_without_name(theirs.get_config())


# --------------------------------------------------------------------------------------------
# GroupNormalization
# --------------------------------------------------------------------------------------------
def _gn_cases(n=20, seed=31):
    r = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        rank = int(r.integers(2, 6))
        shape = list(_random_shape(r, rank))
        axis = int(r.choice([-1, int(r.integers(1, rank))]))
        groups = int(r.choice([1, 2, 3, -1]))
        shape[axis] = (abs(groups) if groups > 0 else 1) * int(r.integers(1, 4))
        kwargs = {"groups": groups, "axis": axis, "epsilon": float(r.choice([1e-3, 1e-5])),
                  "center": bool(r.integers(2)), "scale": bool(r.integers(2))}
        cases.append(pytest.param(tuple(shape), kwargs, i, id=f"{tuple(shape)}-{groups}-{axis}-{i}"))
    return cases


def _gn_pair(keras, shape, kwargs, r, dtype="float32"):
    theirs = keras.layers.GroupNormalization(**kwargs, dtype=dtype)
    ours = layers.GroupNormalization(**kwargs, dtype=dtype)
    theirs.build(shape)
    ours.build(shape)
    theirs.set_weights([r.standard_normal(tuple(w.shape)).astype(dtype) for w in theirs.weights])
    ours.set_weights([keras_numpy(w) for w in theirs.get_weights()])
    return ours, theirs


@pytest.mark.parametrize("shape, kwargs, seed", _gn_cases())
def test_group_norm_outputs_and_config_match_keras(keras, shape, kwargs, seed):
    r = np.random.default_rng(seed)
    ours, theirs = _gn_pair(keras, shape, kwargs, r)
    x = (r.standard_normal(shape) + 0.5).astype("float32")
    # A group of one value has variance 0: both sides then give beta (rsqrt(eps) * 0).
    np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), **F32)
    assert _config_without_name(ours.get_config()) == _config_without_name(theirs.get_config())  # groups=-1 resolved


@pytest.mark.parametrize("shape, kwargs, seed", _gn_cases(n=6, seed=37))
def test_group_norm_gradients_match_torch_autograd(keras, shape, kwargs, seed):
    r = np.random.default_rng(seed)
    ours, theirs = _gn_pair(keras, shape, kwargs, r, dtype="float64")
    x, v = r.standard_normal(shape), r.standard_normal(shape)
    a, groups = kwargs["axis"] % len(shape), ours.groups
    grouped = shape[:a] + (groups, shape[a] // groups) + shape[a + 1:]
    reduce = tuple(i for i in range(1, len(grouped)) if i != a)
    weight_shape = tuple(grouped[i] if i in (a, a + 1) else 1 for i in range(len(grouped)))
    expected_y, expected = _torch_normalize_grads(x, v, reduce, _gamma_beta(ours), weight_shape, kwargs["epsilon"],
                                                  grouped=grouped)
    np.testing.assert_allclose(keras_numpy(theirs(x)), expected_y, **F32)  # Keras (in float32) agrees
    y, grads = _tape_grads(ours, x, v, None)
    np.testing.assert_allclose(y, expected_y, **F64)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, **F64)


# --------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------
def _norm_cases(n=20, seed=41):
    r = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        rank = int(r.integers(2, 5))
        shape = _random_shape(r, rank)
        kind = int(r.integers(3))
        if kind == 0:
            axis = None
        elif kind == 1:
            axis = int(r.integers(-rank, rank))
        else:
            axis = tuple(sorted(int(a) for a in r.choice(np.arange(rank), size=int(r.integers(1, rank)), replace=False)))
        cases.append(pytest.param(shape, {"axis": axis, "invert": bool(r.integers(2))}, i, id=f"{shape}-{axis}-{i}"))
    return cases


@pytest.mark.parametrize("shape, kwargs, seed", _norm_cases())
def test_normalization_adapt_matches_keras(keras, shape, kwargs, seed):
    r = np.random.default_rng(seed)
    axis = kwargs["axis"]
    keeps_batch = axis is not None and 0 in [a % len(shape) for a in np.atleast_1d(axis)]
    data_shape = shape if keeps_batch else (5,) + shape[1:]  # a kept batch axis must match
    data = (3.0 * r.standard_normal(data_shape) + 2.0).astype("float32")
    x = r.standard_normal(shape).astype("float32")
    ours, theirs = layers.Normalization(**kwargs), keras.layers.Normalization(**kwargs)
    ours.adapt(data)
    theirs.adapt(data)
    for mine, keras_w in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_numpy(keras_w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), **F32)
    np.testing.assert_allclose(ours.mean, keras_numpy(theirs.mean), rtol=1e-6)
    assert _config_without_name(ours.get_config()) == _config_without_name(theirs.get_config())
    # Batches (an iterable, (x, y) pairs, a generator) give the statistics of the whole array
    # (when the batch axis is reduced: batches cut along a kept axis are other statistics).
    splits = ([data[:2], data[2:]], [(data[:1], None), (data[1:], None)], (b for b in (data[:3], data[3:])))
    for batches in [] if keeps_batch else splits:
        again = layers.Normalization(**kwargs)
        again.adapt(batches)
        for mine, whole in zip(again.get_weights(), ours.get_weights()):
            np.testing.assert_allclose(mine, whole, rtol=1e-5, atol=1e-6)
    # Keras' weights, set on an unadapted layer, take effect at once.
    fresh = layers.Normalization(**kwargs)
    fresh.build(shape)
    fresh.set_weights([keras_numpy(w) for w in theirs.get_weights()])
    np.testing.assert_allclose(fresh(x), keras_numpy(theirs(x)), **F32)


@pytest.mark.parametrize("axis, mean_shape, shape", [
    (-1, (), (2, 3)), (-1, (3,), (2, 3)), ((1, 2), (3, 4), (2, 3, 4)), ((1, 2), (4,), (2, 3, 4)),
    (None, (), (2, 3, 4)), (1, (3,), (2, 3, 4)), ((0, 2), (2, 4), (2, 3, 4)),
])
@pytest.mark.parametrize("invert", [False, True])
def test_normalization_given_statistics_broadcast_as_keras(keras, axis, mean_shape, shape, invert):
    r = np.random.default_rng(7)
    mean = r.standard_normal(mean_shape)
    variance = np.abs(r.standard_normal(mean_shape)) + 0.1
    mean, variance = (mean.tolist(), variance.tolist()) if mean_shape else (float(mean), float(variance))
    ours = layers.Normalization(axis=axis, mean=mean, variance=variance, invert=invert)
    theirs = keras.layers.Normalization(axis=axis, mean=mean, variance=variance, invert=invert)
    x = r.standard_normal(shape).astype("float32")
    np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), **F32)
    assert ours.weights == [] and theirs.weights == []
    assert _config_without_name(ours.get_config()) == _config_without_name(theirs.get_config())
    with pytest.raises(ValueError, match="mean"):
        ours.adapt(x)


def test_normalization_adapt_of_a_pydataset_like_sequence():
    r = np.random.default_rng(2)
    data = r.standard_normal((6, 3)).astype("float32")

    class Batches:  # what adapt reads of a PyDataset: __len__ and __getitem__
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return data[2 * i:2 * i + 2], None

    layer = layers.Normalization()
    layer.adapt(Batches())
    np.testing.assert_allclose(layer.get_weights()[0], data.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(layer.get_weights()[1], data.var(axis=0), rtol=1e-5)
    assert layer.get_weights()[2] == 0  # Keras' adapt leaves count at 0 too
    import torch

    whole = layers.Normalization()
    whole.adapt(torch.tensor(data))  # a tensor is one array, not a sequence of rows
    for a, b in zip(whole.get_weights(), layer.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# The shared layer contract (tests/test_layer_contract.py)
# --------------------------------------------------------------------------------------------
CONTRACT_CASES = [
    # class, kwargs, input shape, weight shapes, weight names, whether an InputSpec pins the channels
    (layers.BatchNormalization, {}, (2, 4, 3), [(3,)] * 4, ["gamma", "beta", "moving_mean", "moving_variance"], True),
    (layers.BatchNormalization, {"axis": 1, "center": False}, (2, 4, 3), [(4,)] * 3,
     ["gamma", "moving_mean", "moving_variance"], True),
    (layers.LayerNormalization, {"axis": [1, 2]}, (2, 4, 3), [(4, 3)] * 2, ["gamma", "beta"], False),
    (layers.GroupNormalization, {"groups": 2}, (2, 5, 4), [(4,)] * 2, ["gamma", "beta"], True),
    (layers.Normalization, {"axis": 1}, (2, 4, 3), [(4,), (4,), ()], ["mean", "variance", "count"], False),
    (layers.Normalization, {"mean": 1.0, "variance": 4.0}, (2, 3), [], [], False),
]


@pytest.mark.parametrize("case", CONTRACT_CASES, ids=lambda c: f"{c[0].__name__}-{c[1]}")
def test_layer_contract(case):
    from test_layer_contract import run_layer_test

    cls, kwargs, shape, weight_shapes, weight_names, pinned = case
    run_layer_test(cls, kwargs, shape, expected_weight_shapes=weight_shapes, expected_weight_names=weight_names,
                   check_input_spec_change=pinned)


# --------------------------------------------------------------------------------------------
# Configs both ways
# --------------------------------------------------------------------------------------------
CONFIG_CASES = [
    ("BatchNormalization", {}),
    ("BatchNormalization", {"axis": 1, "momentum": 0.9, "epsilon": 1e-5, "center": False,
                            "gamma_regularizer": "l2", "beta_constraint": "non_neg",
                            "moving_variance_initializer": "zeros"}),
    ("BatchNormalization", {"renorm": True, "renorm_clipping": {"rmax": 2.0}, "renorm_momentum": 0.5}),
    ("LayerNormalization", {}),
    ("LayerNormalization", {"axis": [1, 2], "epsilon": 1e-6, "scale": False, "beta_regularizer": "l1"}),
    ("GroupNormalization", {"groups": 4, "axis": 1, "gamma_constraint": "non_neg"}),
    ("GroupNormalization", {"groups": -1}),
    ("Normalization", {}),
    ("Normalization", {"axis": (1, 2), "invert": True}),
    ("Normalization", {"axis": None, "mean": 1.5, "variance": 4.0}),
    ("Normalization", {"mean": [1.0, 2.0], "variance": [3.0, 4.0]}),
]


@pytest.mark.parametrize("name, kwargs", CONFIG_CASES)
def test_config_round_trip_both_ways(keras, name, kwargs):
    theirs = getattr(keras.layers, name)(name="norm", **kwargs).get_config()
    ours = getattr(layers, name)(name="norm", **kwargs).get_config()
    assert ours == theirs
    assert getattr(layers, name).from_config(theirs).get_config() == theirs
    assert getattr(keras.layers, name).from_config(ours).get_config() == ours


def test_sequential_with_normalization_layers_round_trips():
    model = gpuconv.Sequential([
        layers.Input((4, 4, 3)), layers.Conv2D(4, 3), layers.BatchNormalization(),
        layers.GroupNormalization(2), layers.Flatten(), layers.LayerNormalization(),
    ])
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 3)).astype("float32")
    again = gpuconv.Sequential.from_config(model.get_config())
    again.set_weights(model.get_weights())
    np.testing.assert_allclose(again(x), model(x), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: layers.BatchNormalization(axis=3),
    lambda: layers.BatchNormalization(axis=-4),
    lambda: layers.LayerNormalization(axis=[1, 3]),
    lambda: layers.GroupNormalization(groups=1, axis=5),
    lambda: layers.Normalization(axis=(1, 3)),
])
def test_axis_out_of_range_at_build_names_axis(make):
    layer = make()
    with pytest.raises(ValueError, match="axis"):
        layer.build((2, 3, 4))
    with pytest.raises(ValueError, match="axis"):
        layer(np.zeros((2, 3, 4), "float32"))


def test_compute_output_shape_checks_axis_as_keras(keras):
    for name in ("BatchNormalization", "LayerNormalization", "GroupNormalization"):
        ours = getattr(layers, name)(axis=3)
        with pytest.raises(ValueError, match=r"out of bounds.*Received: axis=3"):
            ours.compute_output_shape((2, 3))
        with pytest.raises(ValueError, match=r"out of bounds.*Received: axis=3"):  # Keras' check, unbuilt
            getattr(keras.layers, name)(axis=3).compute_output_shape((2, 3))
        assert getattr(layers, name)(axis=1).compute_output_shape((None, 4)) == (None, 4)


@pytest.mark.parametrize("groups, channels, message", [
    (4, 6, "must divide"), (8, 6, "cannot be more than"), (5, 12, "must divide"),
])
def test_groups_not_dividing_the_channels_raise_naming_groups(keras, groups, channels, message):
    with pytest.raises(ValueError, match=f"{message}.*Received: groups={groups}"):
        layers.GroupNormalization(groups=groups).build((2, 3, channels))
    with pytest.raises(ValueError):  # Keras refuses them too
        keras.layers.GroupNormalization(groups=groups).build((2, 3, channels))


@pytest.mark.parametrize("groups", [0, -2, 2.0, "4", True])
def test_invalid_groups_raise_at_construction(groups):
    with pytest.raises(ValueError, match=f"Received: groups={groups!r}"):
        layers.GroupNormalization(groups=groups)


@pytest.mark.parametrize("make, error, name", [
    (lambda: layers.BatchNormalization(axis=[1, 2]), ValueError, "axis"),
    (lambda: layers.BatchNormalization(axis="1"), TypeError, "axis"),
    (lambda: layers.BatchNormalization(momentum=None), TypeError, "momentum"),
    (lambda: layers.BatchNormalization(epsilon="small"), TypeError, "epsilon"),
    (lambda: layers.BatchNormalization(renorm=True, renorm_clipping={"rmax": 1.0, "bad": 2}), ValueError, "renorm_clipping"),
    (lambda: layers.BatchNormalization(renorm=True, renorm_clipping={"rmax": 1.0, "rmin": 2.0}), ValueError, "rmin"),
    (lambda: layers.BatchNormalization(renorm=True, renorm_clipping={"dmax": -1.0}), ValueError, "dmax"),
    (lambda: layers.LayerNormalization(axis="last"), TypeError, "axis"),
    (lambda: layers.LayerNormalization(epsilon=None), TypeError, "epsilon"),
    (lambda: layers.GroupNormalization(axis=[1]), TypeError, "axis"),
    (lambda: layers.Normalization(mean=1.0), ValueError, "variance"),
    (lambda: layers.Normalization(mean=[1.0, 2.0], variance=[1.0]), ValueError, "variance"),
    (lambda: layers.Normalization(axis=-1, mean=[[1.0]], variance=[[1.0]]), ValueError, "mean"),
    (lambda: layers.Normalization(axis=1.5), TypeError, "axis"),
])
def test_bad_constructor_arguments_name_the_argument(make, error, name):
    with pytest.raises(error, match=name):
        make()


def test_bad_adapt_data_and_shape_mismatches():
    layer = layers.Normalization()
    with pytest.raises(ValueError, match="empty"):
        layer.adapt([])
    with pytest.raises(TypeError, match="shape"):
        layer.adapt([[1.0, 2.0]])
    with pytest.raises(TypeError, match="Unsupported"):
        layer.adapt(3.0)
    layer.adapt(np.ones((4, 3), "float32"))
    with pytest.raises(ValueError, match="incompatible"):
        layer.adapt(np.ones((4, 5), "float32"))
    with pytest.raises(ValueError, match="incompatible"):
        layer.adapt([np.ones((4, 3), "float32"), np.ones((4, 2), "float32")])
    with pytest.raises(ValueError, match="axis"):
        layers.Normalization(axis=2).adapt(np.ones((4, 3), "float32"))


# --------------------------------------------------------------------------------------------
# Devices: the moving statistics live where the batch does
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{"momentum": 0.8}, {"momentum": 0.8, "renorm": True, "renorm_momentum": 0.5}])
def test_batch_norm_on_the_active_engine_matches_numpy(backend_name, kwargs):
    r = np.random.default_rng(13)
    shape = (4, 3, 3, 5)
    x = (2.0 * r.standard_normal(shape) + 1.0).astype("float32")
    reference, layer = layers.BatchNormalization(**kwargs), layers.BatchNormalization(**kwargs)
    gpuconv.set_backend("numpy")
    expected = [reference(x, training=True) for _ in range(3)] + [reference(x)]
    gpuconv.set_backend(_active(backend_name))
    got = [layer(x, training=True) for _ in range(3)]
    assert backend_name == "numpy" or type(got[0]) is not np.ndarray  # computed on the device
    got = [gpuconv.to_numpy(y) for y in got]
    got.append(gpuconv.to_numpy(layer(x)))  # inference on the device reads the updated moving statistics
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, **F32)
    for a, b in zip(layer.get_weights(), reference.get_weights()):  # the host copy is brought up to date
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Weights assigned on the host replace the device copies.
    layer.set_weights(reference.get_weights())
    np.testing.assert_allclose(gpuconv.to_numpy(layer(x)), expected[-1], **F32)


def _active(backend_name):
    """What the ``backend_name`` fixture selected (the 'cuda' case: a real GPU or the emulator)."""
    from conftest import GPU_BACKEND

    return GPU_BACKEND if backend_name == "cuda" else "numpy"


def test_normalization_layers_on_the_active_engine_match_numpy(backend_name):
    r = np.random.default_rng(19)
    x = r.standard_normal((2, 4, 6)).astype("float32")
    made = [layers.LayerNormalization(axis=[1, 2]), layers.GroupNormalization(3), layers.Normalization(axis=1)]
    made[2].adapt(x)
    for layer in made:
        gpuconv.set_backend("numpy")
        expected = layer(x)
        gpuconv.set_backend(_active(backend_name))
        got = layer(x)
        assert type(got) is not np.ndarray or backend_name == "numpy"
        np.testing.assert_allclose(gpuconv.to_numpy(got), expected, **F32)


# --------------------------------------------------------------------------------------------
# Training a model with them, as Keras does
# --------------------------------------------------------------------------------------------
def _normalized_cnn(lib):
    L = lib.layers
    return lib.Sequential([
        L.Input((6, 6, 3)), L.Conv2D(4, 3, use_bias=False), L.BatchNormalization(momentum=0.8), L.Activation("relu"),
        L.GroupNormalization(2), L.Flatten(), L.LayerNormalization(), L.Dense(3, activation="softmax"),
    ])


def test_fit_with_normalization_layers_matches_keras(keras):
    """One epoch of SGD with momentum, shuffle=False (the convolution has no bias: before a
    BatchNormalization its gradient is 0 up to rounding, nothing to compare): every weight (the moving statistics
    included) within 1e-4 relative L2 of Keras' (the bound tests/test_fit_keras_parity.py uses:
    float32 passes whose summation orders differ), and the same evaluation loss."""
    r = np.random.default_rng(8)
    theirs, ours = _normalized_cnn(keras), _normalized_cnn(gpuconv)
    ours.set_weights([keras_numpy(w) for w in theirs.get_weights()])
    x = (2.0 * r.standard_normal((48, 6, 6, 3)) + 0.5).astype("float32")
    y = r.integers(0, 3, size=48)
    theirs.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    ours.compile(optimizer=gpuconv.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    theirs.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    ours.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    names = [w.path for w in theirs.weights]
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    for name, mine, keras_w in zip(names, ours.get_weights(), theirs.get_weights()):
        keras_w = keras_numpy(keras_w).astype("float64")
        err = np.linalg.norm(mine - keras_w) / max(np.linalg.norm(keras_w), 1e-12)
        assert err <= 1e-4, (name, err)
    loss_theirs = theirs.evaluate(x, y, verbose=0)
    loss_ours = ours.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(loss_ours, loss_theirs, rtol=1e-5)


@pytest.mark.parametrize("policy", ["float16", "mixed_float16"])
@pytest.mark.parametrize("name, kwargs", [
    ("BatchNormalization", {}), ("LayerNormalization", {}), ("GroupNormalization", {"groups": 5}), ("Normalization", {}),
])
def test_half_precision_policies_match_keras(keras, policy, name, kwargs):
    """Statistics in float32, outputs rounded once to float16 (both libraries): the same float16
    values up to one rounding; the weights keep the policy's variable dtype."""
    r = np.random.default_rng(6)
    x = (2.0 * r.standard_normal((4, 3, 5)) + 1.0).astype("float32")
    ours, theirs = getattr(layers, name)(dtype=policy, **kwargs), getattr(keras.layers, name)(dtype=policy, **kwargs)
    if name == "Normalization":
        ours.adapt(x)
        theirs.adapt(x)
    expected = keras_numpy(theirs(x))
    got = ours(x)
    assert got.dtype == expected.dtype == np.float16
    np.testing.assert_allclose(got.astype("float32"), expected.astype("float32"), rtol=1e-3, atol=2e-3)
    assert [w.dtype for w in ours.weights] == [w.dtype for w in theirs.weights]
    if name == "BatchNormalization":
        for _ in range(2):
            np.testing.assert_allclose(ours(x, training=True).astype("float32"),
                                       keras_numpy(theirs(x, training=True)).astype("float32"), rtol=1e-3, atol=2e-3)
        for mine, keras_w in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_allclose(mine, keras_numpy(keras_w), rtol=1e-3, atol=1e-3)


def test_weights_files_load_both_ways_with_keras(keras, tmp_path):
    """``.weights.h5`` written by gpuconv load into Keras and the reverse (Normalization's int32
    count included), giving the same outputs."""
    pytest.importorskip("h5py")

    def build(lib):
        L = lib.layers
        return lib.Sequential([L.Input((5, 4)), L.Normalization(), L.BatchNormalization(),
                               L.GroupNormalization(2), L.LayerNormalization(axis=[1, 2])])

    r = np.random.default_rng(9)
    x = (3.0 * r.standard_normal((8, 5, 4)) + 1.0).astype("float32")
    ours = build(gpuconv)
    ours.layers[0].adapt(x)
    ours(x, training=True)  # moving statistics away from their initial values
    ours.save_weights(str(tmp_path / "ours.weights.h5"))
    theirs = build(keras)
    theirs.load_weights(str(tmp_path / "ours.weights.h5"))
    np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), **F32)
    theirs(x, training=True)
    theirs.save_weights(str(tmp_path / "theirs.weights.h5"))
    again = build(gpuconv)
    again.load_weights(str(tmp_path / "theirs.weights.h5"))
    for mine, keras_w in zip(again.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(mine, keras_numpy(keras_w))
    np.testing.assert_allclose(again(x), keras_numpy(theirs(x)), **F32)

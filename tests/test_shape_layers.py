"""Identity, Reshape, Permute, RepeatVector against Keras 3 (torch backend): outputs and
gradients (our GradientTape against torch autograd through the Keras layer) over random shapes,
compute_output_shape with None dims, configs both ways, Keras' error texts, the CUDA engine."""
import inspect
import json
import math

import numpy as np
import pytest

import gpuconv
from gpuconv import layers

from conftest import GPU_BACKEND, gpu_xp, keras_numpy, requires_cuda
from test_layer_contract import run_layer_test

# Keras' own variables/tensors (torch backend) trip NumPy 2's __array__(copy=) deprecation.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

NAMES = ["Identity", "Reshape", "Permute", "RepeatVector"]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _keras_run(layer, x, v):
    import torch

    t = torch.tensor(x, requires_grad=True)
    y = layer(t)
    y.backward(torch.tensor(v))
    return keras_numpy(y), keras_numpy(t.grad)


def _ours_run(layer, x, v):
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    return gpuconv.to_numpy(y), gpuconv.to_numpy(tape.gradient(y, x, output_gradients=v))


def _assert_same_run(ours, theirs):
    (y, gx), (ky, kgx) = ours, theirs
    assert y.dtype == np.float32 and y.shape == ky.shape
    np.testing.assert_array_equal(y, ky)  # pure data movement: bit-exact
    np.testing.assert_allclose(gx, kgx, rtol=1e-6, atol=1e-6)  # RepeatVector sums n gradients


def _without_name(config):
    return {k: v for k, v in config.items() if k != "name"}


def _assert_configs_agree(keras, name, args, kwargs=None):
    kwargs = kwargs or {}
    ours_cls, keras_cls = getattr(layers, name), getattr(keras.layers, name)
    ours, theirs = ours_cls(*args, **kwargs).get_config(), keras_cls(*args, **kwargs).get_config()
    assert list(ours) == list(theirs)
    assert _without_name(ours) == _without_name(theirs)
    assert ours_cls.from_config(theirs).get_config() == theirs
    assert keras_cls.from_config(ours).get_config() == ours
    as_json = json.loads(json.dumps(theirs))  # tuples become lists; both sides make tuples again
    assert ours_cls.from_config(as_json).get_config() == keras_cls.from_config(as_json).get_config()
    rebuilt = gpuconv.saving.deserialize_keras_object(keras.saving.serialize_keras_object(keras_cls(*args, **kwargs)))
    assert type(rebuilt) is ours_cls
    assert _without_name(rebuilt.get_config()) == _without_name(theirs)


def _random_factorization(rng, size, rank):
    """``rank`` ints whose product is ``size``."""
    dims = [1] * rank
    remaining = size
    for p in (2, 3, 5, 7):
        while remaining % p == 0:
            dims[int(rng.integers(rank))] *= p
            remaining //= p
    dims[int(rng.integers(rank))] *= remaining
    return dims


# --------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_constructor_signatures_match_keras(keras, name):
    assert inspect.signature(getattr(layers, name).__init__) == inspect.signature(getattr(keras.layers, name).__init__)


# --------------------------------------------------------------------------------------------
# Numbers and gradients over random shapes
# --------------------------------------------------------------------------------------------
def test_reshape_random_shapes_match_keras(keras, rng):
    for _ in range(40):
        in_shape = tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(1, 4))))
        target = _random_factorization(rng, math.prod(in_shape), int(rng.integers(1, 4)))
        if rng.random() < 0.5:
            target[int(rng.integers(len(target)))] = -1
        target = tuple(target) if rng.random() < 0.5 else list(target)
        batch = int(rng.integers(1, 4))
        x = rng.standard_normal((batch,) + in_shape).astype("float32")
        v = rng.standard_normal(x.shape).astype("float32")
        theirs_layer, ours_layer = keras.layers.Reshape(target), layers.Reshape(target)
        theirs = _keras_run(theirs_layer, x, v.reshape(theirs_layer.compute_output_shape(x.shape)))
        ours = _ours_run(ours_layer, x, v.reshape(theirs[0].shape))
        _assert_same_run(ours, theirs)
        for shape in [(None,) + in_shape, (None, None) + in_shape[1:]]:
            assert ours_layer.compute_output_shape(shape) == theirs_layer.compute_output_shape(shape)


def test_permute_random_permutations_match_keras(keras, rng):
    for _ in range(40):
        rank = int(rng.integers(1, 5))
        dims = tuple(int(d) + 1 for d in rng.permutation(rank))
        shape = (int(rng.integers(1, 4)),) + tuple(int(d) for d in rng.integers(1, 5, size=rank))
        x = rng.standard_normal(shape).astype("float32")
        out_shape = (shape[0],) + tuple(shape[d] for d in dims)
        v = rng.standard_normal(out_shape).astype("float32")
        _assert_same_run(_ours_run(layers.Permute(dims), x, v), _keras_run(keras.layers.Permute(dims), x, v))
        none_shape = (None,) + shape[1:-1] + (None,)
        assert layers.Permute(dims).compute_output_shape(none_shape) == \
            keras.layers.Permute(dims).compute_output_shape(none_shape)


def test_repeat_vector_and_identity_random_shapes_match_keras(keras, rng):
    for _ in range(25):
        n, batch, features = (int(d) for d in rng.integers(1, 6, size=3))
        x = rng.standard_normal((batch, features)).astype("float32")
        v = rng.standard_normal((batch, n, features)).astype("float32")
        _assert_same_run(_ours_run(layers.RepeatVector(n), x, v), _keras_run(keras.layers.RepeatVector(n), x, v))
        assert layers.RepeatVector(n).compute_output_shape((None, features)) == (None, n, features)
        assert keras.layers.RepeatVector(n).compute_output_shape((None, None)) == \
            layers.RepeatVector(n).compute_output_shape((None, None))
        shape = tuple(int(d) for d in rng.integers(1, 4, size=int(rng.integers(1, 5))))
        y = rng.standard_normal(shape).astype("float32")
        w = rng.standard_normal(shape).astype("float32")
        _assert_same_run(_ours_run(layers.Identity(), y, w), _keras_run(keras.layers.Identity(), y, w))
        assert layers.Identity().compute_output_shape((None,) + shape) == (None,) + shape


def test_repeat_vector_keeps_special_values_exactly():
    x = np.array([[np.nan, np.inf, -np.inf, -0.0, 1.5]], "float32")
    y = layers.RepeatVector(3)(x)
    assert y.shape == (1, 3, 5)
    for row in y[0]:
        np.testing.assert_array_equal(row, x[0])
        assert np.signbit(row[3])


def test_reshape_resolves_minus_one_per_call_and_allows_an_empty_batch():
    layer = layers.Reshape((-1, 2))
    assert layer(np.zeros((3, 4), "float32")).shape == (3, 2, 2)
    assert layer(np.zeros((3, 8), "float32")).shape == (3, 4, 2)  # no input spec: each call resolves anew
    assert layer(np.zeros((0, 6), "float32")).shape == (0, 3, 2)


def test_reshape_accepts_numpy_ints_and_writes_python_ints():
    layer = layers.Reshape(np.array([2, -1]))
    assert layer.target_shape == (2, -1) and all(type(d) is int for d in layer.target_shape)
    assert json.dumps(layer.get_config()["target_shape"]) == "[2, -1]"


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,args,kwargs", [
    ("Identity", (), {}), ("Identity", (), {"trainable": False, "dtype": "float64"}),
    ("Reshape", ((2, -1),), {}), ("Reshape", ([3, 4, 1],), {}), ("Reshape", ((-1,),), {"name": "flat"}),
    ("Permute", ((2, 1),), {}), ("Permute", ([3, 1, 2],), {}),
    ("RepeatVector", (3,), {}), ("RepeatVector", (1,), {"dtype": "float16"}),
])
def test_configs_agree_with_keras(keras, name, args, kwargs):
    _assert_configs_agree(keras, name, args, kwargs)


def test_build_at_init_matches_keras(keras):
    # Keras builds Identity and Reshape in __init__ (a model records no build shape for them),
    # Permute and RepeatVector on their first call.
    for name, args in [("Identity", ()), ("Reshape", ((2, 3),)), ("Permute", ((1,),)), ("RepeatVector", (2,))]:
        assert getattr(layers, name)(*args).built == getattr(keras.layers, name)(*args).built, name


# --------------------------------------------------------------------------------------------
# The shared layer contract
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,args,shape,out_shape,dynamic", [
    ("Identity", (), (2, 3, 4), (2, 3, 4), (1, 2)),
    ("Reshape", ((4, -1),), (2, 3, 4), (2, 4, 3), ()),
    ("Reshape", ((12,),), (2, 3, 4), (2, 12), ()),
    ("Permute", ((2, 3, 1),), (2, 3, 4, 5), (2, 4, 5, 3), (1, 2, 3)),
    ("RepeatVector", (3,), (2, 5), (2, 3, 5), (1,)),
])
def test_layer_contract(name, args, shape, out_shape, dynamic):
    cls = getattr(layers, name)
    arg_names = inspect.getfullargspec(cls.__init__).args[1:]
    run_layer_test(cls, dict(zip(arg_names, args)), shape, expected_output_shape=out_shape,
                   expected_weight_shapes=[], dynamic_axes=dynamic)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
# (class, constructor args): Keras and we refuse them with the same type and text.
KERAS_INIT_ERRORS = [
    ("Reshape", ((-1, -1),)), ("Reshape", ((-2, 3),)), ("Reshape", ((2, -1, 3, -1),)),
    ("Permute", ((1, 3),)), ("Permute", ((0, 1),)), ("Permute", ((2, 2),)),
    ("RepeatVector", (0,)), ("RepeatVector", (-3,)), ("RepeatVector", (2.0,)), ("RepeatVector", (True,)),
    ("RepeatVector", ("3",)),
]


@pytest.mark.parametrize("name,args", KERAS_INIT_ERRORS)
def test_bad_arguments_raise_keras_errors(keras, name, args):
    with pytest.raises((ValueError, TypeError)) as theirs:
        getattr(keras.layers, name)(*args)
    with pytest.raises(type(theirs.value)) as ours:
        getattr(layers, name)(*args)
    assert str(ours.value) == str(theirs.value)
    arg = inspect.getfullargspec(getattr(layers, name).__init__).args[1]
    assert f"`{arg}`" in str(ours.value)


@pytest.mark.parametrize("name,args,text", [
    ("Reshape", (3,), "target_shape=3"), ("Reshape", ("23",), "target_shape='23'"),
    ("Reshape", (("a", 3),), r"target_shape=\('a', 3\)"), ("Reshape", ((2.0, 3),), r"target_shape=\(2.0, 3\)"),
    ("Reshape", ((True, 3),), r"target_shape=\(True, 3\)"),
    ("Permute", (3,), "dims=3"), ("Permute", (("a",),), r"dims=\('a',\)"), ("Permute", ((1.0,),), r"dims=\(1.0,\)"),
])
def test_stricter_argument_checks_name_the_argument(name, args, text):
    # Keras takes these at __init__ and fails later, or raises "'int' object is not iterable".
    arg = inspect.getfullargspec(getattr(layers, name).__init__).args[1]
    with pytest.raises(TypeError, match=f"`{arg}`.*{text}"):
        getattr(layers, name)(*args)


@pytest.mark.parametrize("target,in_shape", [((2, 3), (5,)), ((-1, 4), (6,)), ((0, -1), (6,)), ((4, 5), (2, 8, 1))])
def test_reshape_size_errors_match_keras(keras, target, in_shape):
    with pytest.raises(ValueError) as theirs:
        keras.layers.Reshape(target).compute_output_shape((None,) + in_shape)
    with pytest.raises(ValueError) as ours:
        layers.Reshape(target).compute_output_shape((None,) + in_shape)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match="target_shape=") as at_call:
        layers.Reshape(target)(np.zeros((2,) + in_shape, "float32"))
    assert str(at_call.value) == str(theirs.value)


def test_input_rank_errors():
    with pytest.raises(ValueError, match="expected ndim=3, found ndim=2"):
        layers.Permute((2, 1))(np.zeros((1, 2), "float32"))
    with pytest.raises(ValueError, match="expected ndim=2, found ndim=3"):
        layers.RepeatVector(2)(np.zeros((1, 2, 3), "float32"))


# --------------------------------------------------------------------------------------------
# A Keras model with these layers, loaded into gpuconv
# --------------------------------------------------------------------------------------------
def test_keras_sequential_with_shape_layers_loads_and_predicts_the_same(keras, rng):
    model = keras.Sequential([
        keras.Input((12,)), keras.layers.Dense(6), keras.layers.RepeatVector(2), keras.layers.Reshape((3, -1)),
        keras.layers.Permute((2, 1)), keras.layers.Identity(), keras.layers.Reshape((-1,)), keras.layers.Dense(3),
    ])
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
    ours = gpuconv.saving.deserialize_keras_object(config)
    ours.set_weights([keras_numpy(w) for w in model.get_weights()])
    x = rng.standard_normal((4, 12)).astype("float32")
    np.testing.assert_allclose(ours(x), keras_numpy(model(x)), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# The CUDA engine (a GPU, or the cuda-emulator)
# --------------------------------------------------------------------------------------------
@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("name,args,shape", [
    ("Identity", (), (2, 3)), ("Reshape", ((-1, 2),), (2, 3, 4)), ("Permute", ((3, 1, 2),), (2, 3, 4, 5)),
    ("RepeatVector", (4,), (3, 5)),
])
def test_layers_on_the_cuda_backend_match_numpy(restore_backend, rng, name, args, shape):
    xp = gpu_xp()
    x = rng.standard_normal(shape).astype("float32")
    gpuconv.set_backend("numpy")
    expected_y = getattr(layers, name)(*args)(x)
    v = rng.standard_normal(expected_y.shape).astype("float32")
    expected = _ours_run(getattr(layers, name)(*args), x, v)
    gpuconv.set_backend(GPU_BACKEND)
    x_dev = xp.asarray(x)
    with gpuconv.GradientTape() as tape:
        tape.watch(x_dev)
        y = getattr(layers, name)(*args)(x_dev)
    g = tape.gradient(y, x_dev, output_gradients=xp.asarray(v))
    assert isinstance(y, xp.ndarray) and isinstance(g, xp.ndarray)
    _assert_same_run((gpuconv.to_numpy(y), gpuconv.to_numpy(g)), expected)

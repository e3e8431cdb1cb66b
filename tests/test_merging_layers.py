"""The merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot and
their functional forms) against real Keras 3 (torch backend): outputs on random shapes with 2-4
inputs (broadcasting and lower ranks included), configs both ways, compute_output_shape with
unknown sizes, a residual block inside ``gpuconv.Model`` whose functional config equals Keras',
gradients (finite differences; ties against torch's autograd through Keras), bad inputs, and the
CUDA backend."""
import json
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import gpuconv  # noqa: E402
from gpuconv import layers as L  # noqa: E402
from gpuconv.autodiff import functions as F  # noqa: E402
from conftest import GPU_BACKEND, gpu_xp, keras_numpy, requires_cuda  # noqa: E402

RNG = np.random.default_rng(20261202)
ELEMENTWISE = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]
ALL = ELEMENTWISE + ["Concatenate", "Dot"]
FUNCTIONAL_FORMS = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply", "Average": "average",
                    "Maximum": "maximum", "Minimum": "minimum", "Concatenate": "concatenate", "Dot": "dot"}


def _ours(cls_name, **kwargs):
    return getattr(L, cls_name)(**kwargs)


def _theirs(cls_name, **kwargs):
    return getattr(keras.layers, cls_name)(**kwargs)


def _close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(gpuconv.to_numpy(actual), keras_numpy(expected), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------------
# Random shapes
# --------------------------------------------------------------------------------------------
def _elementwise_shapes(rng, count):
    """``count`` shapes that merge under Keras' rules: a common batch, trailing sizes that are
    equal or 1, and sometimes a lower rank (dimensions lined up with the last ones)."""
    batch = int(rng.integers(1, 4))
    full = tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(1, 4))))
    shapes = []
    for _ in range(count):
        keep = int(rng.integers(0, len(full) + 1)) if rng.random() < 0.3 else len(full)
        tail = [d if rng.random() < 0.7 else 1 for d in full[len(full) - keep:]]
        shapes.append((batch, *tail))
    return shapes


def _arrays(rng, shapes):
    return [rng.standard_normal(s).astype("float32") for s in shapes]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_outputs_equal_keras_on_random_shapes(name):
    rng = np.random.default_rng(ELEMENTWISE.index(name))
    for trial in range(12):
        count = 2 if name == "Subtract" else int(rng.integers(2, 5))
        xs = _arrays(rng, _elementwise_shapes(rng, count))
        if name in ("Maximum", "Minimum") and xs[1].shape == xs[0].shape:  # some exact ties
            xs[1] = np.where(rng.random(xs[0].shape) < 0.5, xs[0], xs[1])
        mine, ref = _ours(name)(xs), _theirs(name)(xs)
        assert gpuconv.to_numpy(mine).shape == tuple(ref.shape), [x.shape for x in xs]
        _close(mine, ref)


def test_one_input_is_returned_as_keras_returns_it():
    x = RNG.standard_normal((2, 3)).astype("float32")
    for name in ["Add", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"]:
        _close(_ours(name)([x]), _theirs(name)([x]))


def test_concatenate_equals_keras_on_random_axes():
    rng = np.random.default_rng(7)
    for _ in range(16):
        rank = int(rng.integers(2, 5))
        base = [int(d) for d in rng.integers(1, 4, size=rank)]
        axis = int(rng.integers(-rank, rank))
        shapes = []
        for _ in range(int(rng.integers(2, 5))):
            s = list(base)
            s[axis] = int(rng.integers(1, 4))
            shapes.append(tuple(s))
        xs = _arrays(rng, shapes)
        mine, ref = L.Concatenate(axis=axis)(xs), keras.layers.Concatenate(axis=axis)(xs)
        _close(mine, ref, rtol=0, atol=0)


DOT_CASES = [
    # (shape1, shape2, axes)
    ((3, 4), (3, 4), 1),
    ((3, 4), (3, 4), -1),
    ((2, 3, 4), (2, 5, 4), -1),
    ((2, 3, 4), (2, 5, 4), 2),
    ((2, 3, 4), (2, 3, 5), 1),
    ((2, 3, 4), (2, 4, 5), [2, 1]),
    ((2, 3, 4), (2, 5, 3), (1, 2)),
    ((2, 4), (2, 4, 5), [1, 1]),
    ((2, 3, 4), (2, 4), [-1, -1]),
    ((2, 3, 4, 2), (2, 2, 5), [-1, 1]),
    ((2, 3, 2), (2, 4, 3, 5), [1, 2]),
    ((0, 3), (0, 3), 1),
]


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("shape1,shape2,axes", DOT_CASES)
def test_dot_equals_keras(shape1, shape2, axes, normalize):
    rng = np.random.default_rng(sum(shape1) * 31 + sum(shape2))
    xs = _arrays(rng, [shape1, shape2])
    mine = L.Dot(axes=axes, normalize=normalize)(xs)
    ref = keras.layers.Dot(axes=axes, normalize=normalize)(xs)
    assert gpuconv.to_numpy(mine).shape == tuple(ref.shape)
    _close(mine, ref)
    assert L.Dot(axes=axes).compute_output_shape([shape1, shape2]) == \
        tuple(keras.layers.Dot(axes=axes).compute_output_shape([shape1, shape2]))


def test_dot_normalize_gives_the_cosine():
    x = RNG.standard_normal((5, 6)).astype("float32")
    y = RNG.standard_normal((5, 6)).astype("float32")
    cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    np.testing.assert_allclose(gpuconv.to_numpy(L.Dot(1, normalize=True)([x, y]))[:, 0], cos, rtol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_functional_forms_equal_keras(name):
    xs = _arrays(np.random.default_rng(3), [(2, 3, 4)] * 2)
    kwargs = {"axes": 2} if name == "Dot" else {"axis": 1} if name == "Concatenate" else {}
    form = FUNCTIONAL_FORMS[name]
    mine = getattr(L, form)(xs, name=f"my_{form}", **kwargs)
    ref = getattr(keras.layers, form)(xs, **kwargs)
    _close(mine, ref)
    # On symbolic tensors: one node of a layer of the named class.
    a, b = gpuconv.Input((3, 4)), gpuconv.Input((3, 4))
    out = getattr(L, form)([a, b], name=f"sym_{form}", **kwargs)
    assert type(out.operation).__name__ == name and out.operation.name == f"sym_{form}"
    ka, kb = keras.Input((3, 4)), keras.Input((3, 4))
    assert out.shape == tuple(getattr(keras.layers, form)([ka, kb], **kwargs).shape)


def test_functional_form_defaults_are_keras():
    import inspect

    for form in FUNCTIONAL_FORMS.values():
        assert str(inspect.signature(getattr(L, form))) == str(inspect.signature(getattr(keras.layers, form)))


def test_integer_and_float64_inputs_give_keras_numbers_in_the_compute_dtype():
    ints = [np.arange(6).reshape(2, 3), np.arange(6).reshape(2, 3) + 1]
    mine, ref = L.Average()(ints), keras.layers.Average()(ints)
    assert gpuconv.to_numpy(mine).dtype == np.float32 and str(ref.dtype) == "torch.float32"
    _close(mine, ref)
    # Keras keeps integer inputs of Add as int64; gpuconv's Layer casts every input to the
    # compute dtype (base_layer._standardize_input): the same numbers, as float32.
    _close(L.Add()(ints), keras_numpy(keras.layers.Add()(ints)).astype("float32"))
    wide = [x.astype("float64") for x in ints]
    assert gpuconv.to_numpy(L.Multiply()(wide)).dtype == np.float32
    assert gpuconv.to_numpy(L.Multiply(dtype="float64")(wide)).dtype == np.float64


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------
CONFIG_CASES = [(name, {}) for name in ELEMENTWISE] + [
    ("Concatenate", {}), ("Concatenate", {"axis": 1}), ("Concatenate", {"axis": -2, "trainable": False}),
    ("Dot", {"axes": 1}), ("Dot", {"axes": [1, 2], "normalize": True}), ("Dot", {"axes": -1, "dtype": "float64"}),
    ("Add", {"dtype": "float16"}), ("Maximum", {"trainable": False}),
]


@pytest.mark.parametrize("name,kwargs", CONFIG_CASES)
def test_config_equals_keras_and_round_trips_both_ways(name, kwargs):
    mine = _ours(name, name="merge_x", **kwargs)
    ref = _theirs(name, name="merge_x", **kwargs)
    ours_cfg, their_cfg = json.loads(json.dumps(mine.get_config())), json.loads(json.dumps(ref.get_config()))
    assert ours_cfg == their_cfg
    assert list(ours_cfg) == list(their_cfg)  # key order too
    # gpuconv -> Keras -> gpuconv, and Keras -> gpuconv.
    into_keras = type(ref).from_config(ours_cfg)
    assert json.loads(json.dumps(into_keras.get_config())) == ours_cfg
    from_keras = type(mine).from_config(their_cfg)
    assert type(from_keras) is type(mine)
    assert json.loads(json.dumps(from_keras.get_config())) == their_cfg


def test_serialized_layer_resolves_through_gpuconv_layers():
    from gpuconv.models import _layer_classes

    table = _layer_classes()
    for name in ALL:
        assert table[name] is getattr(L, name)
    assert "add" not in table and "_Merge" not in table  # functions and the base are not layers


# --------------------------------------------------------------------------------------------
# compute_output_shape
# --------------------------------------------------------------------------------------------
SHAPE_CASES = [
    ("Add", {}, [(None, 3), (None, 3)]),
    ("Add", {}, [(None, 1, 3), (2, 4, 1)]),
    ("Multiply", {}, [(None, None, 3), (None, 5, 3), (4, 1, 1)]),
    ("Average", {}, [(None, 4, 3), (None, 3)]),
    ("Maximum", {}, [(None, 3), (None, 4, 3), (None, 1, 1, 3)]),
    ("Minimum", {}, [(2, None), (None, 6)]),
    ("Subtract", {}, [(None, 2, None), (None, 2, 5)]),
    ("Concatenate", {}, [(None, 1, 3), (2, 1, None)]),
    ("Concatenate", {}, [(None, 2, 3), (None, 2, 4), (None, 2, 1)]),
    ("Concatenate", {"axis": 1}, [(None, None, 4), (None, 5, 4)]),
    ("Concatenate", {"axis": 0}, [(2, 3), (4, 3)]),
    ("Dot", {"axes": -1}, [(None, 4, 3), (None, 5, 3)]),
    ("Dot", {"axes": [-1, 1]}, [(None, None, 3), (None, 3, None)]),
    ("Dot", {"axes": 1}, [(None, 4), (None, 4)]),
    ("Dot", {"axes": [1, 2]}, [(None, 2, None, 6), (None, 5, 2)]),
]


@pytest.mark.parametrize("name,kwargs,shapes", SHAPE_CASES)
def test_compute_output_shape_equals_keras(name, kwargs, shapes):
    expected = tuple(_theirs(name, **kwargs).compute_output_shape(shapes))
    assert _ours(name, **kwargs).compute_output_shape(shapes) == expected
    # A symbolic call (build, then the shape) gives the same shape.
    mine = _ours(name, **kwargs)([gpuconv.Input(batch_shape=s) for s in shapes])
    ref = _theirs(name, **kwargs)([keras.Input(batch_shape=s) for s in shapes])
    assert mine.shape == tuple(ref.shape) == expected


def _outcome(fn):
    try:
        return tuple(fn())
    except ValueError as e:
        return ("ValueError", str(e))


def test_compute_output_shape_equals_keras_on_random_shapes_with_unknown_sizes():
    rng = np.random.default_rng(11)
    for _ in range(60):
        rank = int(rng.integers(1, 4))
        shapes = []
        for _ in range(int(rng.integers(2, 5))):
            r = int(rng.integers(1, rank + 1))
            shapes.append(tuple(None if rng.random() < 0.25 else int(rng.choice([1, 2, 3])) for _ in range(r)))
        for name in ["Add", "Maximum"]:
            assert _outcome(lambda: _ours(name).compute_output_shape(shapes)) == \
                _outcome(lambda: _theirs(name).compute_output_shape(shapes)), shapes
        same_rank = [s for s in shapes if len(s) == len(shapes[0])]
        if len(same_rank) > 1:  # Keras computes it without checking the other axes, as gpuconv
            assert L.Concatenate().compute_output_shape(same_rank) == \
                tuple(keras.layers.Concatenate().compute_output_shape(same_rank)), same_rank


# --------------------------------------------------------------------------------------------
# Inside a functional model
# --------------------------------------------------------------------------------------------
def _residual(lib):
    """Input -> Conv2D -> Add([x, conv]), then the other merges on the same tensors."""
    layers = lib.layers
    x = lib.Input((6, 6, 3), name="img")
    conv = layers.Conv2D(3, 3, padding="same", name="conv")(x)
    res = layers.Add(name="residual")([x, conv])
    both = layers.Concatenate(axis=-1, name="concat")([res, conv])
    pooled = layers.GlobalAveragePooling2D(name="gap")(both)
    left = layers.Dense(4, name="left")(pooled)
    right = layers.Dense(4, name="right")(pooled)
    mixed = layers.Average(name="avg")([left, right, layers.Maximum(name="max")([left, right])])
    diff = layers.subtract([left, right], name="diff")
    prod = layers.multiply([mixed, diff], name="prod")
    low = layers.minimum([prod, left], name="min")
    dot = layers.Dot(axes=1, normalize=True, name="cos")([low, right])
    return lib.Model(x, [res, dot], name="residual_block")


def _layer_entries(config):
    return [{k: e[k] for k in ("class_name", "config", "inbound_nodes", "name", "build_config") if k in e}
            for e in config["layers"]]


def test_residual_model_config_equals_keras():
    ours, theirs = _residual(gpuconv), _residual(keras)
    mine = json.loads(json.dumps(ours.get_config()))
    ref = json.loads(json.dumps(theirs.get_config()))
    assert _layer_entries(mine) == _layer_entries(ref)
    assert (mine["input_layers"], mine["output_layers"]) == (ref["input_layers"], ref["output_layers"])
    add_entry = next(e for e in mine["layers"] if e["name"] == "residual")
    assert len(add_entry["inbound_nodes"]) == 1 and len(add_entry["inbound_nodes"][0]["args"][0]) == 2


def test_residual_model_predicts_as_keras_and_configs_load_both_ways():
    ours, theirs = _residual(gpuconv), _residual(keras)
    ours.set_weights([keras_numpy(w) for w in theirs.get_weights()])
    v = RNG.standard_normal((2, 6, 6, 3)).astype("float32")
    for mine, ref in zip(ours(v), theirs.predict(v, verbose=0)):
        _close(mine, ref, rtol=1e-4, atol=1e-5)
    from_keras = gpuconv.Model.from_config(json.loads(json.dumps(theirs.get_config())))
    from_keras.set_weights(ours.get_weights())
    for a, b in zip(from_keras(v), ours(v)):
        np.testing.assert_array_equal(gpuconv.to_numpy(a), gpuconv.to_numpy(b))
    into_keras = keras.Model.from_config(json.loads(json.dumps(ours.get_config())))
    into_keras.set_weights(ours.get_weights())
    for a, b in zip(into_keras.predict(v, verbose=0), ours(v)):
        _close(b, a, rtol=1e-4, atol=1e-5)


def _shared_merge(lib):
    """Two inputs, one Add called twice (two nodes), a Concatenate of three and a Dot."""
    layers = lib.layers
    a, b = lib.Input((4,), name="a"), lib.Input((4,), name="b")
    add = layers.Add(name="shared_add")
    s1 = add([a, b])
    s2 = add([s1, a])
    cat = layers.Concatenate(name="cat")([s1, s2, b])
    return lib.Model([a, b], [cat, layers.Dot(1, name="d")([s2, b])], name="shared_merge")


def test_shared_merge_layer_model_equals_keras():
    ours, theirs = _shared_merge(gpuconv), _shared_merge(keras)
    assert json.loads(json.dumps(ours.get_config())) == json.loads(json.dumps(theirs.get_config()))
    os.environ["COLUMNS"] = "300"  # Keras (rich) crops its table to the terminal's width
    texts = []
    for model in (ours, theirs):
        lines = []
        model.summary(print_fn=lambda s, **_: lines.append(s), line_length=120)
        texts.append("\n".join(lines).splitlines())
    assert texts[0] == texts[1]
    v = [RNG.standard_normal((3, 4)).astype("float32") for _ in range(2)]
    for mine, ref in zip(ours(v), theirs.predict(v, verbose=0)):
        _close(mine, ref)
    again = gpuconv.Model.from_config(json.loads(json.dumps(theirs.get_config())))
    for mine, ref in zip(again(v), ours(v)):
        np.testing.assert_array_equal(gpuconv.to_numpy(mine), gpuconv.to_numpy(ref))


def test_gradient_tape_through_a_residual_model():
    x = gpuconv.Input((4,))
    dense = L.Dense(4, use_bias=False)
    model = gpuconv.Model(x, L.Add()([x, dense(x)]))
    v = RNG.standard_normal((3, 4)).astype("float32")
    with gpuconv.GradientTape() as tape:
        tape.watch(v)
        loss = F.sum(F.square(model(v)))
    gx, gw = tape.gradient(loss, [v, dense.kernel])
    w = dense.kernel.numpy()
    y = v + v @ w
    np.testing.assert_allclose(gpuconv.to_numpy(gw), 2 * v.T @ y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gpuconv.to_numpy(gx), 2 * (y + y @ w.T), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------
def _fd(fn, xs, v, eps=1e-6):
    grads = []
    for x in xs:
        g = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            old = x[idx]
            x[idx] = old + eps
            plus = np.sum(gpuconv.to_numpy(fn()) * v)
            x[idx] = old - eps
            minus = np.sum(gpuconv.to_numpy(fn()) * v)
            x[idx] = old
            g[idx] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def _tape(layer, xs, v):
    with gpuconv.GradientTape() as tape:
        for x in xs:
            tape.watch(x)
        y = layer(xs)
    return y, tape.gradient(y, list(xs), output_gradients=v)


GRAD_CASES = [
    ("Add", {}, [(2, 3), (2, 3), (2, 1)]),
    ("Subtract", {}, [(2, 3, 2), (2, 2)]),
    ("Multiply", {}, [(2, 1, 3), (2, 4, 1), (2, 4, 3)]),
    ("Average", {}, [(2, 3), (2, 3), (2, 3), (2, 3)]),
    ("Maximum", {}, [(2, 3, 2), (2, 3, 2), (2, 2)]),
    ("Minimum", {}, [(2, 4), (2, 4)]),
    ("Concatenate", {"axis": 1}, [(2, 1, 3), (2, 2, 3), (2, 3, 3)]),
    ("Concatenate", {}, [(2, 2), (2, 3)]),
    ("Dot", {"axes": [2, 1]}, [(2, 3, 4), (2, 4, 2)]),
    ("Dot", {"axes": 1, "normalize": True}, [(2, 5), (2, 5)]),
    ("Dot", {"axes": [1, 2], "normalize": True}, [(2, 3, 2), (2, 2, 3)]),
]


@pytest.mark.parametrize("name,kwargs,shapes", GRAD_CASES)
def test_gradients_equal_finite_differences(name, kwargs, shapes):
    rng = np.random.default_rng(len(name) * 13 + len(shapes))
    xs = [rng.standard_normal(s) for s in shapes]  # float64: distinct values, no ties
    layer = _ours(name, dtype="float64", **kwargs)
    y, grads = _tape(layer, xs, None)
    v = rng.standard_normal(gpuconv.to_numpy(y).shape)
    y, grads = _tape(layer, xs, v)
    expected = _fd(lambda: layer(xs), xs, v)
    for g, e, x in zip(grads, expected, xs):
        assert gpuconv.to_numpy(g).shape == x.shape
        np.testing.assert_allclose(gpuconv.to_numpy(g), e, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["Maximum", "Minimum"])
def test_ties_share_the_gradient_as_keras_on_torch(name):
    a = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]], "float32")
    b = np.array([[1.0, 0.0, 3.0], [0.0, 4.0, 5.0]], "float32")
    c = np.array([[1.0, 2.0, -3.0], [0.0, 4.0, 5.0]], "float32")
    v = RNG.standard_normal(a.shape).astype("float32")
    ts = [torch.tensor(x, requires_grad=True) for x in (a, b, c)]
    out = _theirs(name)(ts)
    (out * torch.tensor(v)).sum().backward()
    _, grads = _tape(_ours(name), [a, b, c], v)
    for g, t in zip(grads, ts):
        np.testing.assert_allclose(gpuconv.to_numpy(g), t.grad.numpy(), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------
def _x(*shape):
    return np.ones(shape, "float32")


# (layer, kwargs, inputs, Keras' message fragment): Keras raises a ValueError saying the same.
BAD_CALLS = [
    ("Add", {}, _x(2, 3), "should be called on a list of inputs. Received: input_shape=(2, 3)"),
    ("Maximum", {}, [_x(2, 3), _x(2, 4)], "Inputs have incompatible shapes. Received shapes (3,) and (4,)"),
    ("Multiply", {}, [_x(2, 2, 3), _x(2, 3, 3)], "incompatible shapes. Received shapes (2, 3) and (3, 3)"),
    ("Average", {}, [_x(2, 3), _x(3, 3)], "different batch sizes. Received tensors with shapes [(2, 3), (3, 3)]"),
    ("Subtract", {}, [_x(2, 3)] * 3, "exactly 2 inputs. Received: input_shape=[(2, 3), (2, 3), (2, 3)]"),
    ("Subtract", {}, [_x(2, 3)], "exactly 2 inputs. Received: input_shape=[(2, 3)]"),
    ("Concatenate", {}, [_x(2, 3, 4), _x(2, 5, 3)], "matching shapes except for the concatenation axis. "
     "Received: input_shape=[(2, 3, 4), (2, 5, 3)]"),
    ("Concatenate", {}, [_x(2, 3, 4), _x(2, 3)], "matching shapes except for the concatenation axis"),
    ("Concatenate", {}, _x(2, 3), "should be called on a list of at least 1 input. Received: input_shape=(2, 3)"),
    ("Dot", {"axes": 1}, [_x(2, 3)] * 3, "should be called on a list of 2 inputs. Received: input_shape=[(2, 3), (2, 3), (2, 3)]"),
    ("Dot", {"axes": 1}, [_x(2, 3)], "should be called on a list of 2 inputs"),
    ("Dot", {"axes": 1}, [_x(2, 3), _x(2, 4)], "axis values 3 (at axis 1) != 4 (at axis 1). Full input shapes: (2, 3), (2, 4)"),
    ("Dot", {"axes": 0}, [_x(2, 3), _x(2, 3)], "Cannot perform batch_dot over axis 0"),
    ("Dot", {"axes": 0}, [_x(3), _x(3)], "Cannot do batch_dot on inputs with rank < 2"),
]


@pytest.mark.parametrize("name,kwargs,inputs,fragment", BAD_CALLS)
def test_bad_calls_raise_keras_value_errors(name, kwargs, inputs, fragment):
    with pytest.raises(ValueError) as theirs:
        _theirs(name, **kwargs)(inputs)
    assert fragment in str(theirs.value)
    with pytest.raises(ValueError) as mine:
        _ours(name, **kwargs)(inputs)
    assert fragment in str(mine.value)


SYMBOLIC_BAD = [
    ("Add", {}, [(3,), (4,)], "Received shapes (3,) and (4,)"),
    ("Add", {}, (3,), "should be called on a list of inputs. Received: input_shape=(None, 3)"),
    ("Subtract", {}, [(3,)] * 3, "exactly 2 inputs. Received: input_shape=[(None, 3), (None, 3), (None, 3)]"),
    ("Concatenate", {"axis": 1}, [(3, 4), (5, 3)], "Received: input_shape=[(None, 3, 4), (None, 5, 3)]"),
    ("Dot", {"axes": [-1, -1]}, [(None,), (5,)], "axis values None (at axis -1) != 5 (at axis -1)"),
]


@pytest.mark.parametrize("name,kwargs,shapes,fragment", SYMBOLIC_BAD)
def test_bad_symbolic_calls_raise_keras_value_errors(name, kwargs, shapes, fragment):
    def inputs(make):
        return make(shapes) if isinstance(shapes, tuple) else [make(s) for s in shapes]

    with pytest.raises(ValueError) as theirs:
        _theirs(name, **kwargs)(inputs(keras.Input))
    assert fragment in str(theirs.value)
    with pytest.raises(ValueError) as mine:
        _ours(name, **kwargs)(inputs(gpuconv.Input))
    assert fragment in str(mine.value)


def test_a_built_layer_checks_later_calls_too():
    layer = L.Add()
    layer([_x(2, 3), _x(2, 3)])
    with pytest.raises(ValueError, match=r"incompatible shapes. Received shapes \(3,\) and \(4,\)"):
        layer([_x(2, 3), _x(2, 4)])
    with pytest.raises(ValueError, match="different batch sizes"):
        layer([_x(2, 3), _x(5, 3)])
    concat = L.Concatenate()
    concat([gpuconv.Input((3, 2)), gpuconv.Input((3, 2))])
    with pytest.raises(ValueError, match=r"input_shape=\[\(None, 3, 2\), \(None, 4, 2\)\]"):
        concat([gpuconv.Input((3, 2)), gpuconv.Input((4, 2))])  # Keras returns a wrong shape here
    dot = L.Dot(axes=1)
    dot([_x(2, 3), _x(2, 3)])
    with pytest.raises(ValueError, match=r"x.shape\[1\] != y.shape\[1\] \(3 != 4\)"):
        dot([_x(2, 3), _x(2, 4)])


def test_bad_arguments_name_the_argument():
    with pytest.raises(TypeError, match="argument `axes`.*Received: axes=a"):
        L.Dot("a")
    with pytest.raises(ValueError, match=r"two elements. Received: axes=\[1, 1, 1\]"):
        L.Dot([1, 1, 1])
    with pytest.raises(ValueError, match=r"should be integers. Received: axes=\[1.0, 1\]"):
        L.Dot([1.0, 1])
    with pytest.raises(TypeError, match="`normalize`.*Received: normalize='yes'"):
        L.Dot(1, normalize="yes")
    with pytest.raises(TypeError, match="`axis`.*Received: axis='1'"):
        L.Concatenate(axis="1")
    with pytest.raises(ValueError, match="`axis` is out of range.*Received: axis=5"):
        L.Concatenate(axis=5)([_x(2, 3), _x(2, 3)])
    with pytest.raises(ValueError, match="`axes` is out of range.*Received: axes=3"):
        L.Dot(3)([_x(2, 3), _x(2, 3)])
    with pytest.raises(ValueError, match="at least 1 input. Received 0 inputs"):
        L.Add()([])
    with pytest.raises(ValueError, match="rank 0"):
        L.Add()([np.float32(1.0), np.float32(2.0)])
    with pytest.raises(ValueError, match="Unrecognized keyword arguments.*mask"):
        L.Add(mask=None)


def test_symbolic_tensors_mixed_with_constants_are_refused():
    x = gpuconv.Input((3,))
    with pytest.raises(ValueError, match="mixing symbolic tensors and constants"):
        L.Add()([x, np.ones((1, 3), "float32")])


def test_untrusted_config_values_are_refused():
    from gpuconv.serialization import DeserializationError

    for cls, config in [(L.Dot, {"axes": "os.system"}), (L.Concatenate, {"axis": "__import__"}),
                        (L.Dot, {"axes": 1, "normalize": {"class_name": "eval"}})]:
        with pytest.raises(DeserializationError):
            cls.from_config(config)


# --------------------------------------------------------------------------------------------
# The CUDA backend (a real GPU or the cuda-emulator)
# --------------------------------------------------------------------------------------------
@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("name,kwargs,shapes", GRAD_CASES[:8] + GRAD_CASES[8:10])
def test_device_inputs_match_numpy(restore_backend, name, kwargs, shapes):
    xp = gpu_xp()
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal(s).astype("float32") for s in shapes]
    gpuconv.set_backend("numpy")
    y, grads = _tape(_ours(name, **kwargs), xs, None)
    v = rng.standard_normal(gpuconv.to_numpy(y).shape).astype("float32")
    y, grads = _tape(_ours(name, **kwargs), xs, v)
    gpuconv.set_backend(GPU_BACKEND)
    dev = [xp.asarray(x) for x in xs]
    y_dev, grads_dev = _tape(_ours(name, **kwargs), dev, xp.asarray(v))
    assert isinstance(y_dev, xp.ndarray) and all(isinstance(g, xp.ndarray) for g in grads_dev)
    np.testing.assert_allclose(gpuconv.to_numpy(y_dev), gpuconv.to_numpy(y), rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_dev, grads):
        np.testing.assert_allclose(gpuconv.to_numpy(a), gpuconv.to_numpy(b), rtol=1e-5, atol=1e-6)

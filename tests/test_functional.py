"""The functional API against real Keras 3: the same graph built in both gives the same layer
order, functional config, predictions, summary and training; subclassed models train; graph
errors are Keras'."""
import io
import json
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import gpuconv  # noqa: E402
from gpuconv import layers as L  # noqa: E402
from gpuconv.autodiff import functions as F  # noqa: E402

RNG = np.random.default_rng(20261202)


def _branchy(lib, filters=4):
    """A two-branch model with a shared Dense and array arithmetic, named explicitly."""
    layers = lib.layers
    x = lib.Input((8, 8, 3), name="img")
    a = layers.Conv2D(filters, 3, name="conv_a")(x)
    b = layers.Conv2D(filters, 3, activation="relu", name="conv_b")(x)
    s = a * 2.0 + b
    shared = layers.Dense(2, name="shared")
    return lib.Model(x, [s, shared(s), shared(a)], name="branchy")


def _copy_weights(src, dst):
    dst.set_weights([np.asarray(w) for w in src.get_weights()])


def _strip_auto_names(config):
    """The config with the names Keras generates for array operations ('add', 'multiply_3')
    mapped to their class (the counters differ between two libraries in one process)."""
    text = json.dumps(config)
    for layer in config["layers"]:
        if layer["module"].startswith("keras.src.ops"):
            text = text.replace(f'"{layer["name"]}"', f'"{layer["class_name"]}"')
    return json.loads(text)


def test_layers_are_listed_in_keras_order():
    ours, theirs = _branchy(gpuconv), _branchy(keras)
    assert [type(l).__name__ + ":" + l.name for l in ours.layers] == \
           [type(l).__name__ + ":" + l.name for l in theirs.layers]


def test_functional_config_equals_keras():
    ours, theirs = _branchy(gpuconv), _branchy(keras)
    assert _strip_auto_names(json.loads(json.dumps(ours.get_config()))) == \
           _strip_auto_names(json.loads(json.dumps(theirs.get_config())))


def test_predictions_equal_keras_with_the_same_weights():
    ours, theirs = _branchy(gpuconv), _branchy(keras)
    _copy_weights(theirs, ours)
    x = RNG.standard_normal((3, 8, 8, 3)).astype("float32")
    for mine, ref in zip(ours(x), theirs.predict(x, verbose=0)):
        np.testing.assert_allclose(gpuconv.to_numpy(mine), ref, rtol=1e-5, atol=1e-5)


def test_keras_config_loads_and_predicts_the_same():
    theirs = _branchy(keras)
    ours = gpuconv.Model.from_config(json.loads(json.dumps(theirs.get_config())))
    _copy_weights(theirs, ours)
    x = RNG.standard_normal((2, 8, 8, 3)).astype("float32")
    for mine, ref in zip(ours.predict(x, verbose=0), theirs.predict(x, verbose=0)):
        np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-5)


def test_our_config_loads_in_keras():
    ours = _branchy(gpuconv)
    theirs = keras.Model.from_config(json.loads(json.dumps(ours.get_config())))
    _copy_weights(ours, theirs)
    x = RNG.standard_normal((2, 8, 8, 3)).astype("float32")
    for mine, ref in zip(ours.predict(x, verbose=0), theirs.predict(x, verbose=0)):
        np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-5)


def _summary_text(model, line_length):
    os.environ["COLUMNS"] = "300"  # Keras (rich) crops its table to the terminal's width
    lines = []
    model.summary(print_fn=lambda s, **_: lines.append(s), line_length=line_length)
    return "\n".join(lines)


@pytest.mark.parametrize("line_length", [70, 108, 140])
def test_summary_equals_keras_with_connected_to(line_length):
    ours, theirs = _branchy(gpuconv), _branchy(keras)
    mine = _summary_text(ours, line_length)
    ref = _summary_text(theirs, line_length)
    assert "Connected to" in mine
    # Keras' array-operation names come from a per-process counter; compare the rest exactly.
    for op in ("multiply", "add"):
        ref_names = {w for w in ref.replace("[", " ").replace("(", " ").split() if w.startswith(op)}
        mine_names = {w for w in mine.replace("[", " ").replace("(", " ").split() if w.startswith(op)}
        for r, m in zip(sorted(ref_names), sorted(mine_names)):
            ref = ref.replace(r, m)
    assert mine.splitlines() == ref.splitlines()


def test_sequential_like_functional_summary_has_no_connected_column():
    def chain(lib):
        x = lib.Input((6,), name="x")
        y = lib.layers.Dense(4, name="d1")(x)
        return lib.Model(x, lib.layers.Dense(2, name="d2")(y), name="chain")

    mine, ref = _summary_text(chain(gpuconv), 88), _summary_text(chain(keras), 88)
    assert "Connected to" not in mine
    assert mine.splitlines() == ref.splitlines()


def test_multiple_inputs_by_list_and_by_dict():
    a, b = gpuconv.Input((4,), name="a"), gpuconv.Input((3,), name="b")
    out = L.Dense(2, name="da")(a) + L.Dense(2, name="db")(b)
    model = gpuconv.Model({"a": a, "b": b}, out)
    xa, xb = RNG.standard_normal((5, 4)).astype("float32"), RNG.standard_normal((5, 3)).astype("float32")
    by_dict = gpuconv.to_numpy(model({"a": xa, "b": xb}))
    wa, ba, wb, bb = [model.get_layer(n).get_weights() for n in ("da", "db")][0] + \
                     [model.get_layer(n).get_weights() for n in ("da", "db")][1]
    np.testing.assert_allclose(by_dict, xa @ wa + ba + xb @ wb + bb, rtol=1e-5, atol=1e-6)
    listed = gpuconv.Model([a, b], out)
    np.testing.assert_array_equal(gpuconv.to_numpy(listed([xa, xb])), by_dict)
    with pytest.raises(ValueError, match="missing"):
        model({"a": xa})
    with pytest.raises(ValueError, match="expects 2 input"):
        listed([xa])


def test_nested_models_and_sequential_as_layers():
    inner_in = gpuconv.Input((4,), name="inner_in")
    inner = gpuconv.Model(inner_in, L.Dense(3, name="inner_dense")(inner_in), name="inner")
    seq = gpuconv.Sequential([L.Dense(2, name="seq_dense")], name="seq")
    x = gpuconv.Input((4,), name="outer_in")
    model = gpuconv.Model(x, seq(inner(x)), name="outer")
    assert [l.name for l in model.layers] == ["outer_in", "inner", "seq"]
    assert model.count_params() == 4 * 3 + 3 + 3 * 2 + 2
    v = RNG.standard_normal((2, 4)).astype("float32")
    np.testing.assert_allclose(gpuconv.to_numpy(model(v)), gpuconv.to_numpy(seq(inner(v))), rtol=1e-6)
    again = gpuconv.Model.from_config(json.loads(json.dumps(model.get_config())))
    again.set_weights(model.get_weights())
    np.testing.assert_allclose(gpuconv.to_numpy(again(v)), gpuconv.to_numpy(model(v)), rtol=1e-6)


def test_functional_training_matches_the_same_sequential_bitwise():
    """One graph, two descriptions: fit gives identical losses and weights."""
    seq = gpuconv.Sequential([gpuconv.Input((6,)), L.Dense(5, activation="relu"), L.Dense(3)])
    x = gpuconv.Input((6,))
    func = gpuconv.Model(x, L.Dense(3)(L.Dense(5, activation="relu")(x)))
    func.set_weights(seq.get_weights())
    data = RNG.standard_normal((32, 6)).astype("float32")
    target = RNG.standard_normal((32, 3)).astype("float32")
    histories = []
    for model in (seq, func):
        model.compile(optimizer=gpuconv.optimizers.SGD(0.05), loss="mse")
        histories.append(model.fit(data, target, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"])
    assert histories[0] == histories[1]
    for a, b in zip(seq.get_weights(), func.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_gradient_tape_through_a_branching_model():
    x = gpuconv.Input((3,))
    d = L.Dense(2, use_bias=False)
    model = gpuconv.Model(x, d(x) * d(x))  # shared layer: the gradient sums both uses
    v = RNG.standard_normal((4, 3)).astype("float32")
    with gpuconv.GradientTape() as tape:
        loss = F.sum(model(v))
    (grad,) = tape.gradient(loss, [d.kernel])
    w = d.kernel.numpy()
    expected = 2 * v.T @ (v @ w)  # d/dW sum((vW)^2)
    np.testing.assert_allclose(gpuconv.to_numpy(grad), expected, rtol=1e-4, atol=1e-5)


class _TwoDense(gpuconv.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = L.Dense(8, activation="relu")
        self.head = [L.Dense(1)]

    def call(self, inputs, training=None):
        return self.head[0](self.hidden(inputs))


def test_subclassed_model_tracks_layers_and_trains():
    model = _TwoDense(name="two")
    data = RNG.standard_normal((64, 4)).astype("float32")
    target = (data @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")).astype("float32")
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(data, target, epochs=5, batch_size=16, verbose=0).history["loss"]
    assert [l.name for l in model.layers] == [model.hidden.name, model.head[0].name]
    assert len(model.trainable_weights) == 4
    assert history[-1] < history[0]
    assert model.predict(data[:3], verbose=0).shape == (3, 1)


def test_graph_errors_are_keras_errors():
    x = gpuconv.Input((4,), name="gx")
    other = gpuconv.Input((4,), name="gy")
    y = L.Dense(2)(other)
    with pytest.raises(ValueError, match="Graph disconnected"):
        gpuconv.Model(x, y)
    with pytest.raises(ValueError, match="used 2 times"):
        gpuconv.Model(x, L.Dense(2, name="dup")(L.Dense(2, name="dup")(x)))
    with pytest.raises(ValueError, match="symbolic tensors"):
        gpuconv.Model(x, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="must come from `gpuconv.Input`"):
        gpuconv.Model(L.Dense(2)(x), x)


def test_symbolic_tensor_refuses_to_become_an_array():
    x = gpuconv.Input((4,))
    with pytest.raises(TypeError, match="cannot be converted to an array"):
        np.asarray(x)
    with pytest.raises(TypeError, match="truth value"):
        bool(x)


def test_unknown_operation_in_a_config_names_the_class():
    x = gpuconv.Input((4,), name="ux")
    config = json.loads(json.dumps(gpuconv.Model(x, -x).get_config()))
    op = next(e for e in config["layers"] if e["module"].startswith("keras.src.ops"))
    op["class_name"] = "System"
    with pytest.raises(ValueError, match="Could not locate class 'System'"):
        gpuconv.Model.from_config(config)


def test_symbolic_arithmetic_matches_keras_numbers():
    def arith(lib):
        a, b = lib.Input((4,), name="p"), lib.Input((4,), name="q")
        outs = [a + b, 2.0 - a, a * b, a / 2.0, -a, abs(a), a ** 2.0, 1.0 / (abs(b) + 1.0)]
        return lib.Model([a, b], outs)

    va = RNG.standard_normal((3, 4)).astype("float32")
    vb = RNG.standard_normal((3, 4)).astype("float32")
    for mine, ref in zip(arith(gpuconv)([va, vb]), arith(keras).predict([va, vb], verbose=0)):
        np.testing.assert_allclose(gpuconv.to_numpy(mine), ref, rtol=1e-6, atol=1e-6)


def _nested_twice(lib):
    a = lib.Input((4,), name="ia")
    inner = lib.Model(a, lib.layers.Dense(4, name="di")(a), name="inner")
    x = lib.Input((4,), name="x")
    y1 = inner(x)
    return lib.Model(x, [y1, lib.layers.Dense(2, name="d")(inner(y1))], name="outer")


def test_nested_functional_numbering_is_keras_both_ways():
    """Keras numbers a nested functional model's calls from 1 in ``output_layers`` only."""
    ours, theirs = _nested_twice(gpuconv), _nested_twice(keras)
    mine, ref = json.loads(json.dumps(ours.get_config())), json.loads(json.dumps(theirs.get_config()))
    assert mine["output_layers"] == ref["output_layers"] == [["inner", 1, 0], ["d", 0, 0]]
    assert [l["inbound_nodes"] for l in mine["layers"][1:]] == [l["inbound_nodes"] for l in ref["layers"][1:]]
    loaded = gpuconv.Model.from_config(ref)
    _copy_weights(theirs, loaded)
    v = RNG.standard_normal((2, 4)).astype("float32")
    for got, want in zip(loaded.predict(v, verbose=0), theirs.predict(v, verbose=0)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

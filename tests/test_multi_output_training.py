"""Training functional models with several inputs and outputs against real Keras 3.15 (torch CPU
backend): ``compile`` with one value, a list or a dict for ``loss`` / ``loss_weights`` /
``metrics`` / ``weighted_metrics``; ``y`` and ``sample_weight`` as lists or dicts; ``x`` as a dict
of inputs (arrays, generators, PyDataset, validation data). The same model, initial weights and
data in both libraries, SGD with ``shuffle=False``: the History keys must be identical and every
value within 1e-5 relative of Keras' (float32 sums in a different order), as must ``evaluate``
(dict and list form) and ``predict`` (the model's output structure).
"""
import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras", reason="real-Keras parity needs keras>=3.15 with the torch backend "
                            "(pip install .[parity])", exc_type=ImportError)

import gpuconv  # noqa: E402
from gpuconv.training.compile_utils import OutputStructureError  # noqa: E402

pytestmark = [
    pytest.mark.parity,
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

RTOL, ATOL = 1e-5, 1e-6
N = 24


# ---- models and data ----------------------------------------------------------------------------
def two_outputs(lib, form="list"):
    """x -> h -> a (2 units, regression), b (1 unit, sigmoid)."""
    L = lib.layers
    x = lib.Input((5,), name="x")
    h = L.Dense(6, activation="relu", name="h")(x)
    a, b = L.Dense(2, name="a")(h), L.Dense(1, activation="sigmoid", name="b")(h)
    return lib.Model(x, [a, b] if form == "list" else {"a": a, "b": b})


def three_outputs_two_inputs(lib):
    """Inputs {"img": (6,), "meta": (3,)}; outputs keyed differently from the layers' names
    ("reg" from layer "r", "cls" from "c", "aux" from "z"), so names come from the keys."""
    L = lib.layers
    img, meta = lib.Input((6,), name="img"), lib.Input((3,), name="meta")
    h = L.Concatenate(name="cat")([L.Dense(5, activation="tanh", name="hi")(img),
                                   L.Dense(3, activation="relu", name="hm")(meta)])
    return lib.Model({"img": img, "meta": meta},
                     {"reg": L.Dense(2, name="r")(h), "cls": L.Dense(4, activation="softmax", name="c")(h),
                      "aux": L.Dense(1, name="z")(h)})


def twins(builder, *args):
    theirs, ours = builder(keras, *args), builder(gpuconv, *args)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


@pytest.fixture
def data():
    r = np.random.default_rng(7)
    f = lambda *shape: r.standard_normal(shape).astype("float32")  # noqa: E731
    return {
        "x": f(N, 5), "a": f(N, 2), "b": (r.random((N, 1)) > 0.5).astype("float32"),
        "img": f(N, 6), "meta": f(N, 3), "reg": f(N, 2), "cls": r.integers(0, 4, size=(N,)), "aux": f(N, 1),
        "sw1": r.uniform(0.2, 2.0, N).astype("float32"), "sw2": r.uniform(0.2, 2.0, N).astype("float32"),
    }


def assert_logs_equal(ours, theirs):
    assert list(ours) == list(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=RTOL, atol=ATOL, err_msg=key)


def assert_same_structure_close(ours, theirs):
    assert type(ours) is type(theirs)
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs)
        pairs = [(ours[k], theirs[k]) for k in theirs]
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs)
        pairs = list(zip(ours, theirs))
    else:
        pairs = [(ours, theirs)]
    for got, expected in pairs:
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def fit_both(builder, builder_args, compile_kw, fit_kw, eval_args=None, lr=0.1):
    """Compile and fit both twins (2 epochs of SGD, shuffle=False); the histories must agree.
    ``compile_kw`` may be a function of the library (for objects such as metrics classes)."""
    theirs, ours = twins(builder, *builder_args)
    results = []
    for model, lib in ((theirs, keras), (ours, gpuconv)):
        kw = compile_kw(lib) if callable(compile_kw) else compile_kw
        model.compile(optimizer=lib.optimizers.SGD(lr), **kw)
        history = model.fit(epochs=2, shuffle=False, verbose=0, **fit_kw(lib) if callable(fit_kw) else fit_kw)
        results.append(history.history)
    assert_logs_equal(results[1], results[0])
    for w_ours, w_theirs in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(w_ours, w_theirs, rtol=1e-4, atol=1e-6)
    if eval_args is not None:
        eval_args, eval_kw = (eval_args if isinstance(eval_args[-1], dict) else (eval_args, {}))
        ev_theirs = theirs.evaluate(*eval_args, verbose=0, return_dict=True, **eval_kw)
        assert_logs_equal(ours.evaluate(*eval_args, verbose=0, return_dict=True, **eval_kw), ev_theirs)
        np.testing.assert_allclose(ours.evaluate(*eval_args, verbose=0, **eval_kw),
                                   theirs.evaluate(*eval_args, verbose=0, **eval_kw), rtol=RTOL, atol=ATOL)
    assert ours.metrics_names == theirs.metrics_names
    return theirs, ours, results[0]


# ---- list outputs ----------------------------------------------------------------------------------
def test_list_outputs_losses_weights_metrics_and_sample_weights(data):
    y = [data["a"], data["b"]]
    sw = [data["sw1"], data["sw2"]]
    theirs, ours, history = fit_both(
        two_outputs, ("list",),
        dict(loss=["mse", "binary_crossentropy"], loss_weights=[0.3, 2.0],
             metrics=[["mae", "mse"], ["accuracy"]], weighted_metrics=[["mae"], None]),
        dict(x=data["x"], y=y, sample_weight=sw, batch_size=8),
        eval_args=(data["x"], y, 8))
    assert sorted(history) == ["a_loss", "a_mae", "a_mse", "a_weighted_mae", "b_accuracy", "b_loss", "loss"]
    assert_same_structure_close(ours.predict(data["x"], batch_size=5, verbose=0),
                                theirs.predict(data["x"], batch_size=5, verbose=0))


def test_list_outputs_with_dict_loss_dict_y_and_repeated_metric_names(data):
    y = {"a": data["a"], "b": data["b"]}
    _, _, history = fit_both(
        two_outputs, ("list",),
        dict(loss={"b": "binary_crossentropy", "a": "mae"}, loss_weights={"a": 1.5, "b": 0.5},
             metrics={"b": ["mae", "mae"]}, weighted_metrics={"b": ["mae"]}),
        # (no sample_weight: Keras 3.15 fails to index a broadcast sample_weight dict for list outputs)
        dict(x=data["x"], y=y, batch_size=6, validation_split=0.25),
        eval_args=(data["x"], y, 6))
    assert "b_mae_1" in history and "b_weighted_mae" in history and "val_b_mae_1" in history


def test_list_outputs_one_loss_for_all_and_partial_losses(data):
    fit_both(two_outputs, ("list",), dict(loss="mse", loss_weights=0.5, metrics=["mae", "mse"]),
             dict(x=data["x"], y=[data["a"], data["b"]], batch_size=8), eval_args=(data["x"], [data["a"], data["b"]]))
    # A loss for the first output only: only "loss" is logged, and the other output's y is not needed.
    _, _, history = fit_both(two_outputs, ("list",), dict(loss=["mse", None]),
                             dict(x=data["x"], y=[data["a"], data["b"]], batch_size=8))
    assert list(history) == ["loss"]


# ---- dict outputs, dict inputs ----------------------------------------------------------------------
def test_dict_outputs_and_dict_inputs(data):
    x = {"img": data["img"], "meta": data["meta"]}
    y = {"reg": data["reg"], "cls": data["cls"], "aux": data["aux"]}
    sw = {"reg": data["sw1"], "cls": data["sw2"], "aux": data["sw1"]}
    theirs, ours, history = fit_both(
        three_outputs_two_inputs, (),
        lambda lib: dict(loss={"reg": "mse", "cls": "sparse_categorical_crossentropy", "aux": lib.losses.Huber()},
                         loss_weights={"reg": 1.0, "cls": 0.7, "aux": 2.5},
                         metrics={"cls": ["accuracy", lib.metrics.SparseTopKCategoricalAccuracy(k=2)],
                                  "reg": "mae"},
                         weighted_metrics={"cls": ["accuracy"], "aux": ["mse", "mse"]}),
        dict(x=x, y=y, sample_weight=sw, batch_size=7, validation_data=(x, y, sw)),
        eval_args=((x, y), dict(batch_size=7, sample_weight=sw)))
    assert {"aux_loss", "cls_loss", "reg_loss", "cls_accuracy", "cls_weighted_accuracy", "aux_mse",
            "aux_weighted_mse", "val_cls_sparse_top_k_categorical_accuracy"} <= set(history)
    got, expected = ours.predict(x, batch_size=10, verbose=0), theirs.predict(x, batch_size=10, verbose=0)
    assert isinstance(got, dict) and sorted(got) == ["aux", "cls", "reg"]
    assert_same_structure_close(got, expected)


def test_dict_outputs_with_list_loss_and_list_y(data):
    # A list for dict outputs follows the sorted keys: "a" then "b".
    fit_both(two_outputs, ("dict",),
             dict(loss=["mae", "binary_crossentropy"], loss_weights=[2.0, 1.0], metrics=["mse", ["mae", "mse"]],
                  weighted_metrics=["mae", "mae"]),
             # (no sample_weight: Keras 3.15 indexes its broadcast list by output key and fails)
             dict(x=data["x"], y=[data["a"], data["b"]], batch_size=8),
             eval_args=(data["x"], {"a": data["a"], "b": data["b"]}, 8))


def test_dict_outputs_partial_loss_dict_and_partial_y(data):
    # One sample_weight array for a dict y: used for every output.
    _, _, history = fit_both(two_outputs, ("dict",), dict(loss={"b": "binary_crossentropy"}),
                             dict(x=data["x"], y={"b": data["b"]}, sample_weight=data["sw1"], batch_size=8))
    assert list(history) == ["loss"]
    fit_both(two_outputs, ("dict",), dict(loss="mae", weighted_metrics={"a": "mse", "b": ["mae", "mse"]}),
             dict(x=data["x"], y={"a": data["a"], "b": data["b"]}, sample_weight=data["sw2"], batch_size=8),
             eval_args=((data["x"], {"a": data["a"], "b": data["b"]}), dict(sample_weight=data["sw1"])))


def _generator(x, y, sw, batch):
    for start in range(0, N, batch):
        part = slice(start, start + batch)
        yield ({k: v[part] for k, v in x.items()}, {k: v[part] for k, v in y.items()},
               {k: v[part] for k, v in sw.items()})


def test_generators_and_pydatasets_with_dict_inputs_and_outputs(data):
    x = {"img": data["img"], "meta": data["meta"]}
    y = {"reg": data["reg"], "cls": data["cls"], "aux": data["aux"]}
    sw = {"reg": data["sw1"], "cls": data["sw2"], "aux": data["sw2"]}
    compile_kw = dict(loss={"reg": "mse", "cls": "sparse_categorical_crossentropy", "aux": "mae"},
                      metrics={"aux": ["mae"]}, weighted_metrics={"reg": ["mse"]})

    def make_dataset(lib):
        class Batches(lib.utils.PyDataset):
            def __len__(self):
                return N // 8

            def __getitem__(self, i):
                return next(iter(_generator({k: v[8 * i:] for k, v in x.items()},
                                            {k: v[8 * i:] for k, v in y.items()},
                                            {k: v[8 * i:] for k, v in sw.items()}, 8)))
        return Batches()

    fit_both(three_outputs_two_inputs, (), compile_kw, lambda lib: dict(x=make_dataset(lib)))
    theirs, ours = twins(three_outputs_two_inputs)
    logs = []
    for model, lib in ((theirs, keras), (ours, gpuconv)):
        model.compile(optimizer=lib.optimizers.SGD(0.1), **compile_kw)
        logs.append(model.fit(_generator(x, y, sw, 6), epochs=1, verbose=0).history)
        logs.append(model.evaluate(_generator(x, y, sw, 5), verbose=0, return_dict=True))
    assert_logs_equal(logs[2], logs[0])
    assert_logs_equal(logs[3], logs[1])


# ---- single output unchanged -------------------------------------------------------------------------
def test_single_output_evaluate_list_order_matches_keras(data):
    def model(lib):
        x = lib.Input((5,), name="x")
        return lib.Model(x, lib.layers.Dense(1, name="o")(x))

    theirs, ours = twins(model)
    for m, lib in ((theirs, keras), (ours, gpuconv)):
        m.compile(optimizer=lib.optimizers.SGD(0.1), loss={"o": "mse"}, metrics=["mae"], weighted_metrics=["mae"])
    ev_theirs = theirs.evaluate(data["x"], data["b"], sample_weight=data["sw1"], verbose=0)
    ev_ours = ours.evaluate(data["x"], data["b"], sample_weight=data["sw1"], verbose=0)
    assert len(ev_ours) == len(ev_theirs)
    np.testing.assert_allclose(ev_ours, ev_theirs, rtol=RTOL)


# ---- errors ---------------------------------------------------------------------------------------------
def _both_raise(builder_args, compile_kw, y, expected, match):
    """The same exception type from both libraries (at compile or at the first step)."""
    for lib in (keras, gpuconv):
        model = two_outputs(lib, *builder_args)
        with pytest.raises(expected, match=match if lib is gpuconv else None):
            model.compile(optimizer=lib.optimizers.SGD(0.1), **compile_kw)
            model.fit(np.zeros((4, 5), "float32"), y, epochs=1, verbose=0)


Y2 = [np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32")]
Y2D = {"a": Y2[0], "b": Y2[1]}


def test_wrong_output_name_in_loss_dict():
    _both_raise(("list",), dict(loss={"a": "mse", "c": "mae"}), Y2, ValueError,
                r"Expected keys \['a', 'b'\] in loss dict, but found loss.keys\(\)=\['a', 'c'\]")
    # Keras raises a KeyError for dict outputs; gpuconv's error is both a KeyError and a ValueError.
    _both_raise(("dict",), dict(loss={"a": "mse", "c": "mae"}), Y2D, KeyError, r"The path: \('c',\)")
    with pytest.raises(ValueError, match="can't be found"):
        model = two_outputs(gpuconv, "dict")
        model.compile(optimizer="sgd", loss={"a": "mse", "c": "mae"})
        model.fit(np.zeros((4, 5), "float32"), Y2D, verbose=0)
    assert issubclass(OutputStructureError, ValueError) and issubclass(OutputStructureError, KeyError)


def test_wrong_number_of_losses_weights_and_metrics():
    _both_raise(("list",), dict(loss=["mse", "mae", "mse"]), Y2, KeyError, r"The path: \(2,\)")
    _both_raise(("list",), dict(loss="mse", loss_weights=[1.0, 2.0, 3.0]), Y2, ValueError,
                "`loss_weights` must match the number of losses, got 1 losses and 3 weights")
    _both_raise(("dict",), dict(loss={"a": "mse", "b": "mae"}, loss_weights={"a": 1.0}), Y2D, ValueError,
                "got 2 losses and 1 weights")
    _both_raise(("list",), dict(loss="mse", metrics=["mae"]), Y2, ValueError, r"Invalid `metrics`.*\['a', 'b'\]")
    _both_raise(("dict",), dict(loss="mse", weighted_metrics={"c": "mae"}), Y2D, ValueError,
                "Invalid `weighted_metrics`")
    _both_raise(("list",), dict(loss="mse", metrics="mae"), Y2, ValueError,
                "Expected `metrics` argument to be a list, tuple, or dict")
    _both_raise(("list",), dict(loss="mse", loss_weights="x"), Y2, ValueError, "Expected `loss_weights` argument")


# ---- list inputs, batch methods ------------------------------------------------------------------------
def two_inputs_list(lib):
    L = lib.layers
    p, q = lib.Input((5,), name="p"), lib.Input((2,), name="q")
    h = L.Dense(4, activation="relu", name="h")(L.Concatenate(name="cat")([p, q]))
    return lib.Model([p, q], [L.Dense(2, name="a")(h), L.Dense(1, activation="sigmoid", name="b")(h)])


def test_list_inputs_validation_split_predict_and_batch_methods(data):
    x, y = [data["x"], data["a"]], [data["a"], data["b"]]
    compile_kw = dict(loss={"a": "mse", "b": "binary_crossentropy"}, loss_weights=[1.0, 0.25],
                      metrics={"a": "mae", "b": ["accuracy", "mse"]})
    theirs, ours, history = fit_both(two_inputs_list, (), compile_kw,
                                     dict(x=x, y=y, batch_size=5, validation_split=0.3))
    assert "val_b_accuracy" in history and "val_a_loss" in history
    assert_same_structure_close(ours.predict(x, batch_size=7, verbose=0), theirs.predict(x, batch_size=7, verbose=0))
    assert_same_structure_close(ours.predict_on_batch(x), theirs.predict_on_batch(x))
    sw = [data["sw1"], data["sw2"]]
    assert_logs_equal(ours.train_on_batch(x, y, sample_weight=sw, return_dict=True),
                      theirs.train_on_batch(x, y, sample_weight=sw, return_dict=True))
    np.testing.assert_allclose(ours.test_on_batch(x, {"a": y[0], "b": y[1]}),
                               theirs.test_on_batch(x, {"a": y[0], "b": y[1]}), rtol=RTOL, atol=ATOL)
    for model in (theirs, ours):
        with pytest.raises(ValueError, match="single output"):
            model.fit(x, y, class_weight={0: 1.0, 1: 2.0}, verbose=0)

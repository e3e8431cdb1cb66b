"""Keras 2 legacy ``.h5`` model files (read), written here by h5py with tf.keras 2's layout.

Each file holds a Keras 2 ``model_config`` (class_name/config without module,
``batch_input_shape``, ``inbound_nodes`` as ``[[name, node, tensor, kwargs]]`` lists, Keras 2 keys
such as BatchNormalization's list ``axis`` and LeakyReLU's ``alpha``), a ``training_config`` and
the ``model_weights`` group (``layer_names``, per-layer ``weight_names`` naming nested datasets).
The oracle is real Keras 3 (torch backend): the same architecture built directly with the same
weights must predict what gpuconv's loaded model predicts (float32 relative L2 <= 1e-5).
"""
import json
import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process
keras = pytest.importorskip("keras", reason="real-Keras parity needs keras>=3.15 with the torch backend",
                            exc_type=ImportError)
h5py = pytest.importorskip("h5py", reason="model files need h5py")

import gpuconv  # noqa: E402
from gpuconv.legacy_h5 import convert_config, convert_training_config  # noqa: E402
from gpuconv.saving import DeserializationError, load_model  # noqa: E402

pytestmark = [
    pytest.mark.parity,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]
RTOL = 1e-5
GLOROT = {"class_name": "GlorotUniform", "config": {"seed": None}}
ZEROS = {"class_name": "Zeros", "config": {}}
ONES = {"class_name": "Ones", "config": {}}


# ------------------------------------------------------------------------------------------------
# Keras 2 configs, as tf.keras 2.12 wrote them
# ------------------------------------------------------------------------------------------------
def k2_dense(name, units, activation="linear", **extra):
    return {"class_name": "Dense", "config": {
        "name": name, "trainable": True, "dtype": "float32", "units": units, "activation": activation,
        "use_bias": True, "kernel_initializer": GLOROT, "bias_initializer": ZEROS, "kernel_regularizer": None,
        "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None,
        **extra}}


def k2_conv(name, filters, **extra):
    return {"class_name": "Conv2D", "config": {
        "name": name, "trainable": True, "dtype": "float32", "filters": filters, "kernel_size": [3, 3],
        "strides": [1, 1], "padding": "valid", "data_format": "channels_last", "dilation_rate": [1, 1],
        "groups": 1, "activation": "relu", "use_bias": True, "kernel_initializer": GLOROT,
        "bias_initializer": ZEROS, "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.01}},
        "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
        "bias_constraint": None, **extra}}


def k2_bn(name):
    return {"class_name": "BatchNormalization", "config": {
        "name": name, "trainable": True, "dtype": "float32", "axis": [3], "momentum": 0.99, "epsilon": 0.001,
        "center": True, "scale": True, "beta_initializer": ZEROS, "gamma_initializer": ONES,
        "moving_mean_initializer": ZEROS, "moving_variance_initializer": ONES, "beta_regularizer": None,
        "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None}}


def k2_simple(class_name, name, **config):
    return {"class_name": class_name, "config": {"name": name, "trainable": True, "dtype": "float32", **config}}


def sequential_config():
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 10, 10, 3], "dtype": "float32",
                                                "sparse": False, "ragged": False, "name": "conv2d_input"}},
        k2_conv("conv2d", 4, batch_input_shape=[None, 10, 10, 3]),
        k2_bn("batch_normalization"),
        k2_simple("LeakyReLU", "leaky_re_lu", alpha=0.2),
        k2_simple("MaxPooling2D", "max_pooling2d", pool_size=[2, 2], padding="valid", strides=[2, 2],
                  data_format="channels_last"),
        k2_simple("Flatten", "flatten", data_format="channels_last"),
        k2_simple("Dropout", "dropout", rate=0.25, noise_shape=None, seed=None),
        k2_dense("dense", 3, "softmax"),
    ]}}


def node(*calls):
    return [[name, index, 0, {}] for name, index in calls]


def functional_config():
    """Two inputs, a shared Dense, Add / Concatenate merges, a nested Sequential, two outputs."""
    inner = {"class_name": "Sequential", "config": {"name": "inner", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 6], "dtype": "float32",
                                                "sparse": False, "ragged": False, "name": "inner_input"}},
        k2_dense("inner_dense", 5, "tanh"), k2_simple("Dropout", "inner_drop", rate=0.5, noise_shape=None, seed=None),
    ]}}

    def layer(entry, name, *nodes):
        return {**entry, "name": name, "inbound_nodes": list(nodes)}

    return {"class_name": "Functional", "config": {"name": "model", "layers": [
        layer({"class_name": "InputLayer", "config": {"batch_input_shape": [None, 6], "dtype": "float32",
                                                      "sparse": False, "ragged": False, "name": "in_a"}}, "in_a"),
        layer({"class_name": "InputLayer", "config": {"batch_input_shape": [None, 6], "dtype": "float32",
                                                      "sparse": False, "ragged": False, "name": "in_b"}}, "in_b"),
        layer(k2_dense("shared", 6, "relu"), "shared", node(("in_a", 0)), node(("in_b", 0))),
        layer(k2_simple("Add", "add"), "add", node(("shared", 0), ("shared", 1))),
        layer(inner, "inner", node(("add", 0))),
        layer(k2_simple("Concatenate", "concatenate", axis=-1), "concatenate", node(("inner", 1), ("shared", 1))),
        layer(k2_dense("out1", 2), "out1", node(("concatenate", 0))),
        layer(k2_dense("out2", 1, "sigmoid"), "out2", node(("add", 0))),
    ], "input_layers": [["in_a", 0, 0], ["in_b", 0, 0]], "output_layers": [["out1", 0, 0], ["out2", 0, 0]]}}


# The same architectures in Keras 3 (the oracle).
def keras_sequential():
    L = keras.layers
    return keras.Sequential([
        keras.Input((10, 10, 3)), L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(), L.LeakyReLU(0.2),
        L.MaxPooling2D(), L.Flatten(), L.Dropout(0.25), L.Dense(3, activation="softmax"),
    ])


def keras_functional():
    L = keras.layers
    a, b = keras.Input((6,)), keras.Input((6,))
    shared = L.Dense(6, activation="relu")
    s = L.Add()([shared(a), shared(b)])
    inner = keras.Sequential([keras.Input((6,)), L.Dense(5, activation="tanh"), L.Dropout(0.5)])
    out1 = L.Dense(2)(L.Concatenate()([inner(s), shared(b)]))
    return keras.Model([a, b], [out1, L.Dense(1, activation="sigmoid")(s)])


# ------------------------------------------------------------------------------------------------
# Writing a Keras 2 file
# ------------------------------------------------------------------------------------------------
ADAM_TF2 = {"class_name": "Custom>Adam", "config": {
    "name": "Adam", "weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
    "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None, "jit_compile": True,
    "is_legacy_optimizer": False, "learning_rate": 0.005, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07,
    "amsgrad": False}}


def training_config(optimizer=ADAM_TF2, loss="mse", metrics=("mae",)):
    return {"loss": loss, "metrics": list(metrics), "weighted_metrics": None, "loss_weights": None,
            "optimizer_config": optimizer}


def write_keras2(path, config, layer_weights, training=None, layer_names=None):
    """``layer_weights``: [(layer name, [(weight name, array)])] in the model's layer order."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.12.0"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode("utf8")
        if training is not None:
            f.attrs["training_config"] = json.dumps(training).encode("utf8")
        group = f.create_group("model_weights")
        names = layer_names or [name for name, _ in layer_weights]
        group.attrs["layer_names"] = [n.encode("utf8") for n in names]
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = b"2.12.0"
        weights = dict(layer_weights)
        for name in names:
            layer_group = group.create_group(name)
            entries = weights.get(name, [])
            layer_group.attrs["weight_names"] = [w.encode("utf8") for w, _ in entries]
            for weight_name, value in entries:
                layer_group.create_dataset(weight_name, data=value)  # nested: conv2d/kernel:0
    return path


def random_weights(keras_model, names, suffixes, seed=0):
    """Per weighted layer: Keras 2 weight names and random values in the Keras 3 model's shapes."""
    rng = np.random.default_rng(seed)
    layers = [layer for layer in keras_model.layers if layer.weights]
    out, flat = [], []
    for layer, name in zip(layers, names):
        entries = []
        for w, suffix in zip(layer.trainable_weights + layer.non_trainable_weights, suffixes[name]):
            value = (rng.standard_normal(tuple(w.shape)) * 0.5).astype("float32")
            if "variance" in suffix:
                value = np.abs(value) + 0.5
            entries.append((suffix, value))
        out.append((name, entries))
        for w, (_, value) in zip(layer.trainable_weights + layer.non_trainable_weights, entries):
            w.assign(value)
    return out


SEQ_SUFFIXES = {
    "conv2d": ["conv2d/kernel:0", "conv2d/bias:0"],
    "batch_normalization": [f"batch_normalization/{n}:0" for n in ("gamma", "beta", "moving_mean", "moving_variance")],
    "dense": ["dense/kernel:0", "dense/bias:0"],
}
FN_SUFFIXES = {
    "shared": ["shared/kernel:0", "shared/bias:0"],
    "inner": ["inner_dense/kernel:0", "inner_dense/bias:0"],
    "out1": ["out1/kernel:0", "out1/bias:0"],
    "out2": ["out2/kernel:0", "out2/bias:0"],
}
SEQ_NAMES = ["conv2d", "batch_normalization", "leaky_re_lu", "max_pooling2d", "flatten", "dropout", "dense"]
FN_NAMES = ["in_a", "in_b", "shared", "add", "inner", "concatenate", "out1", "out2"]


def keras_out(model, x):
    out = model(x, training=False)
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in out]


def gp_out(model, x):
    out = model(x)
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(gpuconv.to_numpy(o)) for o in out]


def assert_close(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        assert np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-30) <= RTOL


@pytest.fixture
def seq_file(tmp_path):
    km = keras_sequential()
    weights = random_weights(km, ["conv2d", "batch_normalization", "dense"], SEQ_SUFFIXES)
    names = SEQ_NAMES
    path = write_keras2(str(tmp_path / "seq.h5"), sequential_config(), weights, training_config(), names)
    return path, km, weights


@pytest.fixture
def fn_file(tmp_path):
    km = keras_functional()
    weights = random_weights(km, ["shared", "inner", "out1", "out2"], FN_SUFFIXES, seed=3)
    path = write_keras2(str(tmp_path / "fn.h5"), functional_config(), weights,
                        training_config(loss=["mse", "binary_crossentropy"], metrics=()), FN_NAMES)
    return path, km, weights


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
def test_sequential_keras2_file(seq_file):
    path, km, weights = seq_file
    gm = load_model(path)
    assert isinstance(gm, gpuconv.Sequential)
    assert [layer.name for layer in gm.layers] == SEQ_NAMES
    expected = [value for _, entries in weights for _, value in entries]
    for got, want in zip(gm.get_weights(), expected):
        np.testing.assert_array_equal(got, want)
    assert len(gm.get_weights()) == len(expected) == 8
    x = np.random.default_rng(5).standard_normal((3, 10, 10, 3)).astype("float32")
    assert_close(gp_out(gm, x), keras_out(km, x))
    assert gm.count_params() == km.count_params()
    bn = gm.get_layer("batch_normalization")
    assert bn.get_config()["axis"] == 3
    assert gm.get_layer("leaky_re_lu").get_config()["negative_slope"] == pytest.approx(0.2)
    assert gm.get_layer("conv2d").get_config()["kernel_regularizer"]["config"] == {"l2": pytest.approx(0.01)}


def test_sequential_training_config_restored(seq_file):
    gm = load_model(seq_file[0])
    assert gm.compiled
    assert type(gm.optimizer).__name__ == "Adam"
    assert float(gpuconv.to_numpy(gm.optimizer.learning_rate)) == pytest.approx(0.005)
    config = gm.get_compile_config()
    assert config["loss"] == "mse" and config["metrics"] == ["mae"]
    assert not load_model(seq_file[0], compile=False).compiled


def test_functional_keras2_file(fn_file):
    path, km, weights = fn_file
    gm = load_model(path)
    assert isinstance(gm, gpuconv.Model) and not isinstance(gm, gpuconv.Sequential)
    assert [layer.name for layer in gm.layers] == FN_NAMES
    rng = np.random.default_rng(7)
    x = [rng.standard_normal((4, 6)).astype("float32") for _ in range(2)]
    assert_close(gp_out(gm, x), keras_out(km, x))
    assert gm.count_params() == km.count_params()
    assert gm.get_compile_config()["loss"] == ["mse", "binary_crossentropy"]


def test_single_output_functional_returns_an_array(tmp_path):
    config = {"class_name": "Model", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "dtype": "float32", "name": "x",
                                                "sparse": False, "ragged": False}, "name": "x", "inbound_nodes": []},
        {**k2_dense("d", 2), "name": "d", "inbound_nodes": [node(("x", 0))]},
    ], "input_layers": [["x", 0, 0]], "output_layers": [["d", 0, 0]]}}
    kernel, bias = np.arange(8, dtype="float32").reshape(4, 2), np.array([1.0, -1.0], "float32")
    path = write_keras2(str(tmp_path / "one.h5"), config, [("d", [("d/kernel:0", kernel), ("d/bias:0", bias)])],
                        layer_names=["x", "d"])
    gm = load_model(path)
    x = np.ones((1, 4), "float32")
    out = gm(x)
    assert not isinstance(out, list)
    np.testing.assert_allclose(gpuconv.to_numpy(out), x @ kernel + bias, rtol=1e-6)
    assert not gm.compiled  # no training_config


def test_oldest_forms(tmp_path):
    """Keras 2.0's Sequential config (a bare list), 'lr' and 'decay' in the optimizer."""
    layers = [k2_dense("d", 2, batch_input_shape=[None, 3])]
    kernel, bias = np.ones((3, 2), "float32"), np.zeros(2, "float32")
    sgd = {"class_name": "SGD", "config": {"lr": 0.1, "momentum": 0.9, "decay": 0.0, "nesterov": False}}
    path = write_keras2(str(tmp_path / "old.h5"), {"class_name": "Sequential", "config": layers},
                        [("d", [("d/kernel:0", kernel), ("d/bias:0", bias)])], training_config(sgd, metrics=("acc",)))
    gm = load_model(path)
    assert gm.input_shape == (None, 3)
    np.testing.assert_allclose(gpuconv.to_numpy(gm(np.ones((1, 3), "float32"))), [[3.0, 3.0]])
    assert type(gm.optimizer).__name__ == "SGD"
    assert float(gpuconv.to_numpy(gm.optimizer.learning_rate)) == pytest.approx(0.1)
    assert gm.optimizer.get_config()["momentum"] == pytest.approx(0.9)


def test_tf2_serialized_loss_and_metrics():
    converted = convert_training_config(training_config(
        loss={"class_name": "MeanSquaredError", "config": {"reduction": "auto", "name": "mean_squared_error"}},
        metrics=[{"class_name": "MeanMetricWrapper", "config": {"name": "mae", "dtype": "float32",
                                                                "fn": "mean_absolute_error"}}]))
    assert converted["loss"]["config"]["reduction"] == "sum_over_batch_size"
    assert converted["metrics"] == ["mean_absolute_error"]
    assert converted["optimizer"]["class_name"] == "Adam"
    assert "jit_compile" not in converted["optimizer"]["config"]


def test_convert_config_maps_keras2_keys():
    converted = convert_config(sequential_config())
    layers = converted["config"]["layers"]
    assert layers[0]["config"]["batch_shape"] == [None, 10, 10, 3]
    assert "batch_input_shape" not in layers[1]["config"]
    assert layers[2]["config"]["axis"] == 3
    assert layers[3]["config"] == {"name": "leaky_re_lu", "trainable": True, "dtype": "float32", "negative_slope": 0.2}
    fn = convert_config(functional_config())["config"]
    add = next(entry for entry in fn["layers"] if entry["name"] == "add")
    history = [t["config"]["keras_history"] for t in add["inbound_nodes"][0]["args"][0]]
    assert history == [["shared", 0, 0], ["shared", 1, 0]]


def test_keras2_only_feature_is_refused(tmp_path):
    config = sequential_config()
    config["config"]["layers"][2]["config"]["virtual_batch_size"] = 4
    with pytest.raises(ValueError, match="virtual_batch_size=4"):
        convert_config(config)


# ------------------------------------------------------------------------------------------------
# Mismatches and untrusted files
# ------------------------------------------------------------------------------------------------
def test_weight_shape_mismatch_names_the_layer(tmp_path, seq_file):
    _, km, weights = seq_file
    weights = [(n, [(w, v[..., :1] if n == "dense" and w.endswith("bias:0") else v) for w, v in e]) for n, e in weights]
    path = write_keras2(str(tmp_path / "bad.h5"), sequential_config(), weights, layer_names=SEQ_NAMES)
    with pytest.raises(ValueError, match=r"Shape mismatch in layer 'dense'.*\(3,\).*\(1,\)"):
        load_model(path)


def test_layer_count_mismatch(tmp_path, seq_file):
    weights = seq_file[2][:2]
    path = write_keras2(str(tmp_path / "few.h5"), sequential_config(), weights, layer_names=SEQ_NAMES)
    with pytest.raises(ValueError, match="Model expected 3 layers, found 2 saved layers"):
        load_model(path)


def test_soft_link_is_refused(tmp_path, seq_file):
    path = seq_file[0]
    with h5py.File(path, "a") as f:
        del f["model_weights/dense/dense/bias:0"]
        f["model_weights/dense/dense/bias:0"] = h5py.SoftLink("/model_weights/conv2d/conv2d/bias:0")
    with pytest.raises(ValueError, match="Not allowed: H5 file with SoftLink"):
        load_model(path)


def test_lambda_and_unknown_classes_are_refused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    config = sequential_config()
    config["config"]["layers"].append({"class_name": "Lambda", "config": {
        "name": "lam", "trainable": True, "dtype": "float32", "function": ["4wEAAAAAAAAA", None, None],
        "function_type": "lambda", "module": "__main__", "output_shape": None, "arguments": {}}})
    path = write_keras2(str(tmp_path / "lam.h5"), config, [])
    with pytest.raises(ValueError, match="Requested the deserialization of a `Lambda` layer"):
        load_model(path)
    with pytest.raises(ValueError, match="never runs code"):
        load_model(path, safe_mode=False)
    config = sequential_config()
    config["config"]["layers"].append({"class_name": "system", "module": "os", "config": {"name": "x"}})
    path = write_keras2(str(tmp_path / "os.h5"), config, [])
    with pytest.raises(DeserializationError, match="Could not locate class 'system'"):
        load_model(path)
    assert calls == []


def test_weights_only_file_is_not_a_model(tmp_path):
    model = gpuconv.Sequential([gpuconv.Input((3,)), gpuconv.layers.Dense(2)])
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    with pytest.raises(ValueError, match=r"No model config found in the file at .*w\.weights\.h5.*load_weights"):
        load_model(path)


def test_keras3_written_h5_file(tmp_path):
    """Keras 3's own `model.save('m.h5')` (legacy layout, Keras 3 configs) reads too."""
    km = keras_sequential()
    rng = np.random.default_rng(9)
    for w in km.weights:
        value = rng.standard_normal(tuple(w.shape)).astype("float32") * 0.5
        w.assign(np.abs(value) + 0.5 if "variance" in w.path else value)
    path = str(tmp_path / "k3.h5")
    km.save(path)
    gm = load_model(path, compile=False)
    x = rng.standard_normal((2, 10, 10, 3)).astype("float32")
    assert_close(gp_out(gm, x), keras_out(km, x))

"""``.keras`` archives between real Keras 3 (torch backend) and gpuconv, both ways, and the
archive's security rules.

Each architecture is written once as ``arch(lib)`` and built with Keras and with gpuconv (same
layer names). Keras saves it with random weights: gpuconv loads it with the same predictions
(float32 relative L2 <= 1e-5), the same summary totals and the compile config restored. gpuconv
saves it: real Keras' ``keras.saving.load_model`` reads it back with the same predictions and
compile config, and the archive has Keras' members, metadata and top-level config keys.
"""
import json
import os
import re
import zipfile

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process
keras = pytest.importorskip("keras", reason="real-Keras parity needs keras>=3.15 with the torch backend",
                            exc_type=ImportError)
h5py = pytest.importorskip("h5py", reason="model files need h5py")

import gpuconv  # noqa: E402
from gpuconv import keras_archive  # noqa: E402
from gpuconv.saving import DeserializationError, load_model, save_model  # noqa: E402

pytestmark = [
    pytest.mark.parity,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer"),
]

RTOL = 1e-5


class GP:
    """gpuconv under Keras' names, so one function builds a model in either library."""
    Input = staticmethod(gpuconv.Input)
    layers = gpuconv.layers
    Model = gpuconv.Model
    Sequential = gpuconv.Sequential


# ------------------------------------------------------------------------------------------------
# Architectures
# ------------------------------------------------------------------------------------------------
def seq_cnn(lib):
    L = lib.layers
    return lib.Sequential([
        lib.Input((10, 10, 3)), L.Conv2D(4, 3, activation="relu", name="c1"), L.MaxPooling2D(name="p1"),
        L.Conv2D(5, 3, padding="same", name="c2"), L.AveragePooling2D(2, name="p2"), L.Flatten(name="f"),
        L.Dropout(0.3, name="d"), L.Dense(3, activation="softmax", name="out"),
    ], name="seq_cnn")


def seq_bn(lib):
    L = lib.layers
    return lib.Sequential([
        lib.Input((12, 3)), L.Conv1D(6, 3, name="c"), L.BatchNormalization(name="bn"), L.ReLU(name="r"),
        L.GlobalAveragePooling1D(name="g"), L.Dense(2, name="out"),
    ], name="seq_bn")


def branches(lib):
    """Two branches joined by Add and Concatenate layers and keras.ops arithmetic."""
    L = lib.layers
    x = lib.Input((8, 8, 2), name="img")
    a = L.Conv2D(3, 3, padding="same", name="ca")(x)
    b = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="cb")(x)
    b = L.Conv2D(3, 1, name="cb2")(b)
    s = L.Add(name="add")([a, b])
    c = L.Concatenate(name="cat")([s, a * 0.5])
    y = L.GlobalMaxPooling2D(name="gmp")(c)
    return lib.Model(x, L.Dense(4, name="out")(y - 1.0), name="branches")


def multi_io_nested(lib):
    """Two inputs, two outputs, a layer shared at two depths, a nested Sequential and a nested
    functional model called twice."""
    L = lib.layers
    inner_seq = lib.Sequential([lib.Input((6,)), L.Dense(4, activation="tanh", name="s_dense"),
                                L.Dropout(0.2, name="s_drop")], name="inner_seq")
    i = lib.Input((4,), name="inner_in")
    inner_fn = lib.Model(i, L.Dense(3, name="f_dense")(i) * 2.0, name="inner_fn")
    a = lib.Input((8, 8, 3), name="a")
    b = lib.Input((36,), name="b")
    x = L.Flatten(name="flat")(L.MaxPooling2D(name="pool")(L.Conv2D(4, 3, activation="relu", name="conv")(a)))
    shared = L.Dense(36, activation="relu", name="shared")
    y = shared(shared(x)) + shared(b)
    z = L.Dense(6, name="mid")(y)
    h = inner_seq(z)
    o2 = inner_fn(h) + inner_fn(h * -1.0)
    return lib.Model([a, b], [L.Dense(2, name="o1")(z), o2], name="multi_io")


def separable_transpose(lib):
    L = lib.layers
    x = lib.Input((6, 6, 2), name="x")
    y = L.SeparableConv2D(4, 3, padding="same", name="sep")(x)
    y = L.Conv2DTranspose(3, 3, strides=2, name="tr")(y)
    y = L.ZeroPadding2D(1, name="pad")(L.UpSampling2D(name="up")(y))
    return lib.Model(x, L.GlobalAveragePooling2D(name="gap")(y), name="sep_tr")


ARCHITECTURES = [seq_cnn, seq_bn, branches, multi_io_nested, separable_transpose]


def inputs_for(model, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [tuple(t.shape) for t in model.inputs] if hasattr(model, "inputs") else [tuple(model.input_shape)]
    xs = [rng.standard_normal((2,) + s[1:]).astype("float32") for s in shapes]
    return xs[0] if len(xs) == 1 else xs


def positive_variances(model, values):
    """Moving variances must stay positive: give every non-trainable weight |value| + 0.5."""
    paths = [w.path for w in model.weights]
    return [np.abs(v) + 0.5 if "moving_variance" in p else v for v, p in zip(values, paths)]


def flat(outputs):
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [np.asarray(gpuconv.to_numpy(o)) if not hasattr(o, "detach") else o.detach().cpu().numpy() for o in outputs]


def relative_l2(actual, expected):
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))


def assert_same_predictions(actual, expected):
    actual, expected = flat(actual), flat(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        assert relative_l2(a, e) <= RTOL


def keras_predict(model, x):
    out = model(x, training=False)
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in out]


def summary_totals(model):
    lines = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line))
    text = "\n".join(lines)
    return re.findall(r"(Total|Trainable|Non-trainable) params: ([\d,]+)", text)


def keras_model(arch, seed=1, compiled=True):
    model = arch(keras)
    weights = [np.asarray(keras.ops.convert_to_numpy(w)) for w in model.weights]
    rng = np.random.default_rng(seed)
    values = [(rng.standard_normal(w.shape) * 0.5).astype(w.dtype) for w in weights]
    paths = [w.path for w in model.weights]
    values = [np.abs(v) + 0.5 if "moving_variance" in p else v for v, p in zip(values, paths)]
    for w, v in zip(model.weights, values):
        w.assign(v)
    if compiled:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.003), loss="mse", metrics=["mae"])
    return model


def archive_config(path):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("config.json"))


# ------------------------------------------------------------------------------------------------
# Keras writes, gpuconv reads
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
def test_keras_archive_loads_with_same_predictions(arch, tmp_path):
    path = str(tmp_path / "m.keras")
    km = keras_model(arch)
    km.save(path)
    gm = load_model(path)
    x = inputs_for(gm)
    assert_same_predictions(gm(x), keras_predict(km, x))
    assert gm.count_params() == km.count_params()
    assert summary_totals(gm) == summary_totals(km)
    assert [layer.name for layer in gm.layers] == [layer.name for layer in km.layers]


def test_compile_config_restored(tmp_path):
    path = str(tmp_path / "m.keras")
    keras_model(seq_cnn).save(path)
    saved = archive_config(path)["compile_config"]
    gm = load_model(path)
    assert gm.compiled
    restored = gm.get_compile_config()
    assert type(gm.optimizer).__name__ == "Adam"
    assert restored["optimizer"]["config"] == saved["optimizer"]["config"]
    assert np.isclose(float(gpuconv.to_numpy(gm.optimizer.learning_rate)), 0.003)
    for key in ("loss", "metrics", "loss_weights", "weighted_metrics"):
        assert restored[key] == saved[key], key
    assert not load_model(path, compile=False).compiled


def test_trained_optimizer_state_restored(tmp_path):
    """A Keras model trained one step: its Adam's iterations and slots come back exactly."""
    path = str(tmp_path / "t.keras")
    km = keras_model(seq_bn)
    rng = np.random.default_rng(4)
    km.fit(rng.standard_normal((4, 12, 3)).astype("float32"), rng.standard_normal((4, 2)).astype("float32"),
           epochs=1, verbose=0)
    km.save(path)
    gm = load_model(path)
    expected = [np.asarray(keras.ops.convert_to_numpy(v)) for v in km.optimizer.variables]
    assert len(gm.optimizer.variables) == len(expected) == 2 + 2 * len(km.trainable_weights)
    for got, want in zip(gm.optimizer.variables, expected):
        np.testing.assert_array_equal(got.numpy(), want)
    assert int(gm.optimizer.iterations.numpy()) == 1


def test_uncompiled_archive_loads_uncompiled(tmp_path):
    path = str(tmp_path / "m.keras")
    keras_model(seq_bn, compiled=False).save(path)
    assert archive_config(path)["compile_config"] in ({}, None)
    assert not load_model(path).compiled


def test_unknown_keras_class_is_named(tmp_path):
    @keras.saving.register_keras_serializable(package="archive_test")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    path = str(tmp_path / "m.keras")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), Doubler(name="dbl")]).save(path)
    with pytest.raises(TypeError, match="Could not locate class 'Doubler'"):
        load_model(path)


# ------------------------------------------------------------------------------------------------
# gpuconv writes, Keras reads
# ------------------------------------------------------------------------------------------------
def gpuconv_model(arch, seed=2, compiled=True):
    model = arch(GP)
    rng = np.random.default_rng(seed)
    values = [(rng.standard_normal(w.shape) * 0.5).astype(w.dtype) for w in model.get_weights()]
    model.set_weights(positive_variances(model, values))
    if compiled:
        model.compile(optimizer=gpuconv.optimizers.Adam(learning_rate=0.02), loss="mse", metrics=["mae"])
    return model


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
def test_gpuconv_archive_loads_in_keras(arch, tmp_path):
    path = str(tmp_path / "g.keras")
    gm = gpuconv_model(arch)
    gm.save(path)
    km = keras.saving.load_model(path)
    x = inputs_for(gm)
    assert_same_predictions(keras_predict(km, x), gm(x))
    assert km.count_params() == gm.count_params()
    assert km.compiled and type(km.optimizer).__name__ == "Adam"
    assert np.isclose(float(keras.ops.convert_to_numpy(km.optimizer.learning_rate)), 0.02)
    assert km.loss == "mse"
    # and back into gpuconv
    again = load_model(path)
    assert_same_predictions(again(x), gm(x))


def test_loss_and_metric_objects_round_trip(tmp_path):
    path = str(tmp_path / "o.keras")
    gm = gpuconv_model(seq_cnn, compiled=False)
    gm.compile(optimizer=gpuconv.optimizers.SGD(0.1, momentum=0.5),
               loss=gpuconv.losses.CategoricalCrossentropy(label_smoothing=0.1),
               metrics=[gpuconv.metrics.CategoricalAccuracy(), "mae"])
    gm.save(path)
    saved = archive_config(path)["compile_config"]
    assert saved["loss"]["config"]["label_smoothing"] == pytest.approx(0.1)
    assert load_model(path).get_compile_config() == saved
    km = keras.saving.load_model(path)
    assert km.optimizer.get_config()["momentum"] == pytest.approx(0.5)
    assert km.get_compile_config()["loss"]["config"]["label_smoothing"] == pytest.approx(0.1)


def test_archive_layout_matches_keras(tmp_path):
    # Auto-generated names ('add_3') come from per-process counters: start both from zero so
    # the output triples compare whatever ran before.
    gpuconv.clear_session()
    keras.backend.clear_session()
    g_path, k_path = str(tmp_path / "g.keras"), str(tmp_path / "k.keras")
    gpuconv_model(multi_io_nested).save(g_path)
    keras_model(multi_io_nested).save(k_path)
    with zipfile.ZipFile(g_path) as g, zipfile.ZipFile(k_path) as k:
        assert g.namelist() == k.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in g.infolist())
        meta = json.loads(g.read("metadata.json"))
        assert set(meta) == set(json.loads(k.read("metadata.json"))) == {"keras_version", "date_saved"}
        assert meta["keras_version"] == "3.15.0"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d@\d\d:\d\d:\d\d", meta["date_saved"])
        # The weights file: Keras' groups, datasets (shapes, dtypes) and `name` attributes, the
        # functional model's InputLayers and nested models included.
        assert h5_listing(g) == h5_listing(k)
    g_cfg, k_cfg = archive_config(g_path), archive_config(k_path)
    assert set(g_cfg) == set(k_cfg)
    for key in ("module", "class_name", "registered_name", "build_config"):
        assert g_cfg[key] == k_cfg[key], key
    # Keras numbers a nested functional model's calls from 1 (its own graph is node 0).
    assert g_cfg["config"]["output_layers"] == k_cfg["config"]["output_layers"]
    assert g_cfg["config"]["input_layers"] == k_cfg["config"]["input_layers"]
    assert set(g_cfg["compile_config"]) == set(k_cfg["compile_config"])


def h5_listing(zf):
    """{path: (kind, shape, dtype, attrs)} of model.weights.h5, the optimizer left out (Keras
    saved an unbuilt one)."""
    import io

    listing = {}
    with h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as f:
        def visit(name, obj):
            if name.startswith("optimizer"):
                return
            attrs = {k: str(v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                listing[name] = ("dataset", obj.shape, str(obj.dtype), attrs)
            else:
                listing[name] = ("group", None, None, attrs)
        f.visititems(visit)
    return listing


def test_save_model_and_directory_round_trip(tmp_path):
    gm = gpuconv_model(seq_cnn, compiled=False)
    x = inputs_for(gm)
    save_model(gm, str(tmp_path / "s.keras"))
    assert_same_predictions(load_model(str(tmp_path / "s.keras"))(x), gm(x))
    directory = str(tmp_path / "as_dir")
    gm.save(directory, zipped=False)
    assert sorted(os.listdir(directory)) == ["config.json", "metadata.json", "model.weights.h5"]
    assert_same_predictions(load_model(directory)(x), gm(x))
    assert_same_predictions(keras_predict(keras.saving.load_model(directory), x), gm(x))


def test_save_argument_errors(tmp_path):
    gm = gpuconv_model(seq_bn, compiled=False)
    with pytest.raises(ValueError, match=r"expected a `\.keras` extension. Received: filepath=.*m\.h5"):
        gm.save(str(tmp_path / "m.h5"))
    with pytest.raises(ValueError, match="should not end in `.keras`"):
        gm.save(str(tmp_path / "m.keras"), zipped=False)
    with pytest.raises(TypeError, match="zipped"):
        gm.save(str(tmp_path / "m.keras"), zipped="yes")
    with pytest.raises(TypeError, match="filepath"):
        gm.save(42)
    gm.save(str(tmp_path / "m.keras"))
    with pytest.raises(FileExistsError):
        gm.save(str(tmp_path / "m.keras"), overwrite=False)
    with pytest.raises(TypeError, match="model"):
        save_model(gpuconv.layers.Dense(2), str(tmp_path / "d.keras"))


# ------------------------------------------------------------------------------------------------
# Untrusted archives
# ------------------------------------------------------------------------------------------------
def write_archive(path, config, weights=None, extra=()):
    """A zip with the given config.json (dict or raw bytes), an empty or given weights file and
    extra (name, bytes) members."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.0", "date_saved": "x"}))
        zf.writestr("config.json", config if isinstance(config, bytes) else json.dumps(config))
        if weights is not None:
            zf.write(weights, "model.weights.h5")
        for name, data in extra:
            zf.writestr(name, data)
    return path


def small_config(tmp_path):
    path = str(tmp_path / "ok.keras")
    gpuconv_model(seq_bn, compiled=False).save(path)
    return archive_config(path)


def test_config_naming_os_system_is_refused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    config = small_config(tmp_path)
    config["config"]["layers"].append({"module": "os", "class_name": "system", "config": {"command": "echo hi"},
                                       "registered_name": None})
    path = write_archive(str(tmp_path / "evil.keras"), config)
    with pytest.raises(DeserializationError, match="Could not locate class 'system'"):
        load_model(path)
    config = small_config(tmp_path)
    config["config"]["layers"][-1]["config"]["activation"] = {"module": "os", "class_name": "function",
                                                              "config": "system", "registered_name": "function"}
    path = write_archive(str(tmp_path / "evil2.keras"), config)
    with pytest.raises(ValueError):
        load_model(path)
    top = {"module": "os", "class_name": "system", "config": {}, "registered_name": None}
    with pytest.raises(TypeError, match="Could not locate class 'system'"):
        load_model(write_archive(str(tmp_path / "evil3.keras"), top))
    assert calls == []


def keras_lambda_message():
    try:
        keras.layers.Lambda._raise_for_lambda_deserialization(True)
    except ValueError as e:
        return str(e)


def test_lambda_layer_refused_with_keras_message(tmp_path):
    path = str(tmp_path / "lam.keras")
    keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda t: t * 2)]).save(path)
    with pytest.raises(ValueError) as keras_error:
        keras.saving.load_model(path)
    with pytest.raises(ValueError) as ours:
        load_model(path)
    assert str(ours.value) == str(keras_error.value) == keras_lambda_message()
    with pytest.raises(ValueError, match="never runs code"):
        load_model(path, safe_mode=False)


def test_python_lambda_anywhere_is_refused(tmp_path):
    config = small_config(tmp_path)
    config["config"]["layers"][-1]["config"]["activation"] = {"class_name": "__lambda__",
                                                              "config": {"value": ["x", None, None]}}
    path = write_archive(str(tmp_path / "l.keras"), config)
    with pytest.raises(ValueError, match="Requested the deserialization of a Python lambda"):
        load_model(path)
    with pytest.raises(ValueError, match="never runs code"):
        load_model(path, safe_mode=False)


@pytest.mark.parametrize("member", ["../x", "a/../../x", "/etc/x", "C:/x", "..\\x"])
def test_member_escaping_the_archive_is_refused(member, tmp_path):
    path = write_archive(str(tmp_path / "z.keras"), small_config(tmp_path), extra=[(member, b"data")])
    with pytest.raises(ValueError, match=re.escape(repr(member))):
        load_model(path)


def test_oversized_config_is_refused_before_reading(tmp_path, monkeypatch):
    path = str(tmp_path / "bomb.keras")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("config.json", "w", force_zip64=True) as f:
            chunk = b" " * (1 << 20)
            for _ in range(65):
                f.write(chunk)
    assert os.path.getsize(path) < 1 << 20
    monkeypatch.setattr(keras_archive, "_parse_json", lambda *a: pytest.fail("config.json was parsed"))
    monkeypatch.setattr(zipfile.ZipFile, "open", _no_open(zipfile.ZipFile.open))
    with pytest.raises(ValueError, match="config.json' of .*bomb.keras declares 68157440 bytes"):
        load_model(path)


def _no_open(original):
    def guarded(self, name, mode="r", *args, **kwargs):
        if mode == "r":
            pytest.fail(f"{name} was opened for reading")
        return original(self, name, mode, *args, **kwargs)
    return guarded


def test_oversized_weights_member_is_refused(tmp_path):
    weights = str(tmp_path / "big.h5")
    with h5py.File(weights, "w") as f:
        f["pad"] = np.zeros((80 << 20) // 8)
    path = write_archive(str(tmp_path / "w.keras"), small_config(tmp_path), weights=weights)
    with pytest.raises(ValueError, match="model.weights.h5' of .* declares"):
        load_model(path)


def test_soft_link_in_weights_is_refused(tmp_path):
    good = str(tmp_path / "good.keras")
    gpuconv_model(seq_bn, compiled=False).save(good)
    with zipfile.ZipFile(good) as zf:
        config = json.loads(zf.read("config.json"))
        weights = str(tmp_path / "w.h5")
        with open(weights, "wb") as f:
            f.write(zf.read("model.weights.h5"))
    with h5py.File(weights, "a") as f:
        del f["layers/conv1d/vars"]
        f["layers/conv1d/vars"] = h5py.SoftLink("/layers/dense/vars")
    path = write_archive(str(tmp_path / "link.keras"), config, weights=weights)
    with pytest.raises(ValueError, match="Not allowed: H5 file with SoftLink"):
        load_model(path)


def test_not_a_model_file(tmp_path):
    with pytest.raises(ValueError, match="File not found: filepath=.*missing.keras"):
        load_model(str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match=r"filepath=.*empty_dir is a directory without a config.json"):
        os.mkdir(tmp_path / "empty_dir")
        load_model(str(tmp_path / "empty_dir"))
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip, not hdf5" * 10)
    with pytest.raises(ValueError, match=r"File format not supported: filepath=.*junk.keras"):
        load_model(str(junk))
    fifo = str(tmp_path / "pipe.keras")
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"filepath=.*pipe.keras is not a regular file"):
        load_model(fifo)
    with pytest.raises(ValueError, match="no config.json"):
        load_model(_zip_without_config(tmp_path))
    with pytest.raises(ValueError, match="Invalid config.json"):
        load_model(write_archive(str(tmp_path / "bad.keras"), b"{not json"))
    with pytest.raises(TypeError, match="custom_objects"):
        load_model(str(junk), custom_objects=["x"])
    with pytest.raises(TypeError, match="compile"):
        load_model(str(junk), compile="yes")


def _zip_without_config(tmp_path):
    path = str(tmp_path / "nocfg.keras")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", "{}")
    return path


def test_missing_weights_member(tmp_path):
    path = write_archive(str(tmp_path / "now.keras"), small_config(tmp_path))
    with pytest.raises(ValueError, match="expected a model.weights.h5 member"):
        load_model(path)

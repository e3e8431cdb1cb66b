"""``.weights.h5`` files cross between real Keras 3 (torch backend) and gpuconv in both directions.

For each architecture Keras can build (every gpuconv layer family Keras has, and a nested
Sequential), the same model is built in both libraries with the same layer names; we check:
the file gpuconv writes has exactly the groups, datasets (names, shapes, dtypes) and attributes
Keras writes; a Keras file loads into gpuconv and a gpuconv file into Keras with identical
weights and predictions (relative L2 <= 1e-6); LoRA kernels; optimizer variables (Keras' Adam
after a training step against a gpuconv optimizer of the same layout, both ways); and Keras'
mismatch reports, which gpuconv's match word for word up to the variable's repr.
"""
import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process
keras = pytest.importorskip("keras", reason="real-Keras parity needs keras>=3.15 with the torch backend "
                            "(pip install .[parity])", exc_type=ImportError)
h5py = pytest.importorskip("h5py", reason="`.weights.h5` files need h5py (pip install gpuconv[training])")

import gpuconv  # noqa: E402
from gpuconv.weights_file import load_weights, save_weights  # noqa: E402

from test_weights_file import (  # noqa: E402
    INPUT_SHAPES, KERAS_ARCHITECTURES, build, inputs_for, listing, randomize,
)

pytestmark = [
    pytest.mark.parity,
    # Keras' own variables/tensors (torch backend) trip NumPy 2's __array__(copy=) deprecation.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

RTOL = 1e-6


def keras_build(arch):
    return arch(keras)


def keras_predict(model, x):
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


def relative_l2(actual, expected):
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))


def assert_same_weights(gp_model, k_model):
    k_weights = [np.asarray(keras.ops.convert_to_numpy(w)) for w in k_model.weights]
    g_weights = [w.numpy() for w in gp_model.weights]
    assert len(k_weights) == len(g_weights)
    for g, k, w in zip(g_weights, k_weights, gp_model.weights):
        assert g.dtype == k.dtype, w.path
        np.testing.assert_array_equal(g, k, err_msg=w.path)


@pytest.fixture
def tmp_file(tmp_path):
    return str(tmp_path / "model.weights.h5")


@pytest.mark.parametrize("arch", KERAS_ARCHITECTURES, ids=lambda a: a.__name__)
def test_gpuconv_writes_the_layout_keras_writes(arch, tmp_path):
    k_path, g_path = str(tmp_path / "k.weights.h5"), str(tmp_path / "g.weights.h5")
    keras_build(arch).save_weights(k_path)
    save_weights(build(arch), g_path)
    assert listing(g_path) == listing(k_path)


@pytest.mark.parametrize("arch", KERAS_ARCHITECTURES, ids=lambda a: a.__name__)
def test_keras_file_loads_into_gpuconv(arch, tmp_file):
    k_model = keras_build(arch)
    k_model.set_weights([np.random.default_rng(i).normal(0, 0.3, w.shape).astype("float32")
                         for i, w in enumerate(k_model.get_weights())])
    k_model.save_weights(tmp_file)
    g_model = build(arch)
    load_weights(g_model, tmp_file)
    assert_same_weights(g_model, k_model)
    x = inputs_for(g_model)
    assert relative_l2(g_model.predict(x, verbose=0), keras_predict(k_model, x)) <= RTOL


@pytest.mark.parametrize("arch", KERAS_ARCHITECTURES, ids=lambda a: a.__name__)
def test_gpuconv_file_loads_into_keras(arch, tmp_file):
    g_model = build(arch)
    randomize(g_model, 7)
    save_weights(g_model, tmp_file)
    k_model = keras_build(arch)
    k_model.load_weights(tmp_file)
    assert_same_weights(g_model, k_model)
    x = inputs_for(g_model)
    assert relative_l2(keras_predict(k_model, x), g_model.predict(x, verbose=0)) <= RTOL


# ------------------------------------------------------------------------------------------------
# LoRA (Keras saves the merged kernel)
# ------------------------------------------------------------------------------------------------
def _lora_arch(lib, lora):
    L = lib.layers
    return lib.Sequential([L.Input((6, 6, 3)), L.Conv2D(4, 3, lora_rank=2 if lora else None, name="c"),
                           L.Flatten(name="f")], name="lora")


def test_lora_files_cross_both_ways(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    k_lora = _lora_arch(keras, lora=True)
    rng = np.random.default_rng(1)
    for w in k_lora.layers[0].weights:
        w.assign(rng.normal(size=w.shape).astype("float32"))
    k_path = str(tmp_path / "k.weights.h5")
    k_lora.save_weights(k_path)
    g_lora = _lora_arch(gpuconv, lora=True)
    load_weights(g_lora, k_path)
    assert relative_l2(g_lora.predict(x, verbose=0), keras_predict(k_lora, x)) <= 1e-5

    g_src = _lora_arch(gpuconv, lora=True)
    for w in g_src.layers[0].weights:
        w.assign(rng.normal(size=w.shape).astype("float32"))
    g_path = str(tmp_path / "g.weights.h5")
    save_weights(g_src, g_path)
    assert listing(g_path) == listing(k_path)
    for lora in (True, False):
        k_model = _lora_arch(keras, lora=lora)
        k_model.load_weights(g_path)
        assert relative_l2(keras_predict(k_model, x), g_src.predict(x, verbose=0)) <= 1e-5


# ------------------------------------------------------------------------------------------------
# Optimizer variables
# ------------------------------------------------------------------------------------------------
def _trained_keras(arch, steps=2):
    model = keras_build(arch)
    model.compile(optimizer=keras.optimizers.Adam(name="adam"), loss="mse")
    rng = np.random.default_rng(3)
    shape = (4,) + INPUT_SHAPES[model.name]
    y_shape = (4,) + tuple(model.output_shape[1:])
    for _ in range(steps):
        model.train_on_batch(rng.normal(size=shape).astype("float32"), rng.normal(size=y_shape).astype("float32"))
    return model


def _gpuconv_compiled(arch, optimizer="adam", steps=0):
    """The gpuconv model, weights randomized, compiled with gpuconv's own Adam (built, after
    ``steps`` training steps) or SGD (never built: two variables)."""
    from gpuconv import optimizers

    model = build(arch)
    randomize(model, 5)
    opt = optimizers.Adam(name="adam") if optimizer == "adam" else optimizers.SGD(name="sgd")
    model.compile(optimizer=opt, loss="mse")
    if optimizer == "adam":
        model.optimizer.build(model.trainable_weights)
    for step in range(steps):
        x = inputs_for(model, seed=20 + step)
        model.train_on_batch(x, np.random.default_rng(step).normal(size=model.predict(x, verbose=0).shape))
    return model


def _keras_values(variables):
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]


def test_keras_adam_state_loads_into_gpuconv_adam(tmp_file):
    arch = KERAS_ARCHITECTURES[1]
    k_model = _trained_keras(arch)
    k_model.save_weights(tmp_file)
    g_model = _gpuconv_compiled(arch)
    load_weights(g_model, tmp_file)
    assert_same_weights(g_model, k_model)
    k_vars = _keras_values(k_model.optimizer.variables)
    assert len(k_vars) == len(g_model.optimizer.variables) == 2 + 2 * len(k_model.trainable_weights)
    for g, k in zip(g_model.optimizer.variables, k_vars):
        assert g.dtype == str(k.dtype)
        np.testing.assert_array_equal(g.numpy(), k)


def test_gpuconv_adam_state_loads_into_keras_adam(tmp_path):
    arch = KERAS_ARCHITECTURES[3]
    g_model = _gpuconv_compiled(arch, steps=2)
    k_model = _trained_keras(arch, steps=1)
    g_path, k_path = str(tmp_path / "g.weights.h5"), str(tmp_path / "k.weights.h5")
    save_weights(g_model, g_path)
    k_model.save_weights(k_path)
    assert listing(g_path) == listing(k_path)
    k_model.load_weights(g_path)
    assert_same_weights(g_model, k_model)
    k_vars = _keras_values(k_model.optimizer.variables)
    assert int(k_vars[0]) == 2
    for g, k in zip(g_model.optimizer.variables, k_vars):
        np.testing.assert_array_equal(k, g.numpy())


def test_optimizer_count_mismatch_warns_as_keras_does(tmp_file):
    arch = KERAS_ARCHITECTURES[3]
    _trained_keras(arch).save_weights(tmp_file)
    k_model = keras_build(arch)
    k_model.compile(optimizer=keras.optimizers.SGD(name="sgd"), loss="mse")
    g_model = _gpuconv_compiled(arch, optimizer="sgd")
    with pytest.warns(UserWarning) as k_record:
        k_model.load_weights(tmp_file)
    with pytest.warns(UserWarning) as g_record:
        load_weights(g_model, tmp_file)
    k_messages = [str(w.message) for w in k_record if "optimizer" in str(w.message)]
    assert k_messages and [str(w.message) for w in g_record] == k_messages


# ------------------------------------------------------------------------------------------------
# Mismatch reports
# ------------------------------------------------------------------------------------------------
def _mismatch_arch(filters, extra):
    def arch(lib):
        L = lib.layers
        stack = [L.Input((8, 8, 3)), L.Conv2D(filters, 3, name="conv"), L.Flatten(name="flat"), L.Dense(3, name="head")]
        if extra:
            stack.append(L.Dense(2, name="extra"))
        return lib.Sequential(stack, name="m")

    return arch


def _load_error(load):
    with pytest.raises(ValueError) as info:
        load()
    return str(info.value)


@pytest.mark.parametrize("saved, loaded", [((4, False), (6, False)), ((4, False), (4, True))],
                         ids=["shapes", "missing-layer"])
def test_mismatch_reports_match_keras(saved, loaded, tmp_file):
    keras_build(_mismatch_arch(*saved)).save_weights(tmp_file)
    k_msg = _load_error(lambda: keras_build(_mismatch_arch(*loaded)).load_weights(tmp_file))
    g_msg = _load_error(lambda: load_weights(build(_mismatch_arch(*loaded)), tmp_file))
    # Keras' variable repr prints the whole value (and torch's shape type): compare around it.
    k_head, _, k_tail = k_msg.partition("Target variable: ")
    g_head, _, g_tail = g_msg.partition("Target variable: ")
    assert g_head == k_head.replace("torch.Size([", "(").replace("])", ")")
    assert g_tail.split("\n\n")[-1] == k_tail.split("\n\n")[-1]
    assert ("List of objects that could not be loaded:" in g_msg) and (len(g_msg) < 2000)

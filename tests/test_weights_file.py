"""gpuconv.weights_file: Keras 3's ``.weights.h5`` files written and read by gpuconv alone --
round trips over every layer family (nested models included), the file's layout, LoRA kernels,
optimizer variables, the argument and path errors, mismatches, and hostile files.

The architectures here are written once for any library with Keras' API (``lib.layers``,
``lib.Sequential``), so test_weights_file_keras_parity.py builds the same models in real Keras.
The optimizer part uses a small stand-in (``FakeOptimizer``: ``name``, ``built``, ``variables``),
the contract the weights file relies on.
"""
import os
import re
import sys
import warnings

import numpy as np
import pytest

import gpuconv
from gpuconv import layers as glayers
from gpuconv.variables import Variable
from gpuconv.weights_file import load_weights, save_weights, weight_entries

h5py = pytest.importorskip("h5py", reason="`.weights.h5` files need h5py (pip install gpuconv[training])")


# ------------------------------------------------------------------------------------------------
# Architectures (explicit names: a layer's name is stored in the file, so both sides must agree)
# ------------------------------------------------------------------------------------------------
def arch_1d(lib):
    L = lib.layers
    return lib.Sequential([
        L.Input((16, 4)),
        L.Conv1D(4, 3, name="c1"), L.Conv1D(6, 3, groups=2, padding="same", name="c1g"),
        L.Conv1DTranspose(4, 3, strides=2, name="c1t"), L.DepthwiseConv1D(3, depth_multiplier=2, name="dw1"),
        L.SeparableConv1D(3, 3, depth_multiplier=2, name="sep1"), L.ZeroPadding1D(1, name="zp1"),
        L.Cropping1D(1, name="cr1"), L.UpSampling1D(2, name="up1"), L.MaxPooling1D(2, name="mp1"),
        L.AveragePooling1D(2, name="ap1"), L.GlobalMaxPooling1D(keepdims=True, name="gmp1"),
        L.Flatten(name="fl"), L.Dropout(0.3, name="do"), L.Activation("tanh", name="act"), L.Dense(3, name="out"),
    ], name="arch_1d")


def arch_2d(lib):
    L = lib.layers
    return lib.Sequential([
        L.Input((12, 12, 4)),
        L.Conv2D(8, 3, groups=2, name="c2g"), L.DepthwiseConv2D(3, depth_multiplier=2, name="dw2"),
        L.SeparableConv2D(4, 1, name="sep2"), L.Conv2DTranspose(4, 2, name="c2t"),
        L.ZeroPadding2D(1, name="zp2"), L.Cropping2D(1, name="cr2"), L.UpSampling2D(name="up2"),
        L.AveragePooling2D(2, name="ap2"), L.MaxPooling2D(name="mp2"), L.Conv2D(3, 1, name="c2"),
        L.GlobalAveragePooling2D(keepdims=True, name="gap2"), L.Flatten(name="fl"), L.Dense(5, name="d1"),
        L.Dropout(0.2, name="do"), L.Activation("relu", name="act"), L.Dense(3, name="out"),
    ], name="arch_2d")


def arch_3d(lib):
    L = lib.layers
    return lib.Sequential([
        L.Input((6, 6, 6, 2)),
        L.Conv3D(4, 3, groups=2, padding="same", name="c3g"), L.Conv3DTranspose(2, 2, strides=2, name="c3t"),
        L.ZeroPadding3D(1, name="zp3"), L.Cropping3D(2, name="cr3"), L.UpSampling3D(2, name="up3"),
        L.MaxPooling3D(2, name="mp3"), L.AveragePooling3D(2, name="ap3"), L.Conv3D(3, 2, name="c3"),
        L.GlobalMaxPooling3D(name="gmp3"), L.Dense(2, name="out"),
    ], name="arch_3d")


def arch_nested(lib):
    """A Sequential used as a layer, and class names repeated inside and outside it."""
    L = lib.layers
    inner = lib.Sequential([L.Dense(6, name="in_a"), L.Dropout(0.1, name="in_do"), L.Dense(4, name="in_b")],
                           name="inner")
    return lib.Sequential([
        L.Input((7,)), L.Dense(6, name="d_a"), inner, L.Dense(5, name="d_b"), L.Dense(2, name="d_c"),
    ], name="arch_nested")


def arch_locally_connected_2d(lib):
    """LocallyConnected1D/2D (Keras 2) and DepthwiseConv3D have no Keras 3 counterpart: they are
    stored like every other layer (kernel, then bias), under their snake_case class name."""
    L = lib.layers
    return lib.Sequential([L.Input((9, 9, 3)), L.LocallyConnected2D(4, 3, name="lc2"), L.Flatten(name="fl"),
                           L.Dense(8, name="d")], name="lc2d")


def arch_locally_connected_1d(lib):
    L = lib.layers
    return lib.Sequential([L.Input((10, 3)), L.LocallyConnected1D(4, 3, name="lc1"), L.Flatten(name="fl"),
                           L.Dense(2, name="d")], name="lc1d")


def arch_depthwise_3d(lib):
    L = lib.layers
    return lib.Sequential([L.Input((5, 5, 5, 2)), L.DepthwiseConv3D(2, depth_multiplier=2, name="dw3"),
                           L.GlobalAveragePooling3D(name="gap3"), L.Dense(2, name="d")], name="dw3d")


INPUT_SHAPES = {"arch_1d": (16, 4), "arch_2d": (12, 12, 4), "arch_3d": (6, 6, 6, 2), "arch_nested": (7,),
                "lc2d": (9, 9, 3), "lc1d": (10, 3), "dw3d": (5, 5, 5, 2)}
# Architectures Keras 3 can build too (the parity module builds these with keras).
KERAS_ARCHITECTURES = [arch_1d, arch_2d, arch_3d, arch_nested]
ARCHITECTURES = KERAS_ARCHITECTURES + [arch_locally_connected_2d, arch_locally_connected_1d, arch_depthwise_3d]


class _Gpuconv:
    layers = glayers
    Sequential = gpuconv.Sequential


def build(arch):
    return arch(_Gpuconv)


def randomize(model, seed):
    """Nonzero values everywhere (fresh biases are zeros: a swapped bias would go unnoticed)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, np.shape(w)).astype(np.asarray(w).dtype) for w in model.get_weights()])


def inputs_for(model, seed=1):
    return np.random.default_rng(seed).normal(size=(2,) + INPUT_SHAPES[model.name]).astype("float32")


def listing(path):
    """{name: ('group', attrs) | ('dataset', shape, dtype, attrs)} of every object in the file."""
    out = {}

    def visit(name, obj):
        attrs = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in obj.attrs.items()}
        out[name] = ("dataset", obj.shape, str(obj.dtype), attrs) if isinstance(obj, h5py.Dataset) else ("group", attrs)

    with h5py.File(path, "r") as f:
        assert dict(f.attrs) == {}
        f.visititems(visit)
    return out


def values(variables):
    return [v.numpy() for v in variables]


def assert_values(variables, expected):
    """Each variable holds exactly the expected array (dtype included)."""
    variables, expected = list(variables), list(expected)
    assert len(variables) == len(expected)
    for var, value in zip(variables, expected):
        assert var.dtype == str(np.asarray(value).dtype), var.path
        np.testing.assert_array_equal(var.numpy(), value, err_msg=var.path)


class FakeOptimizer:
    """What the weights file needs of an optimizer: ``name``, ``built`` and ``variables``."""

    def __init__(self, shapes, name="adam", built=True, seed=0):
        rng = np.random.default_rng(seed)
        self.name, self.built = name, built
        self.variables = [
            Variable(np.asarray(rng.integers(0, 9) if shape == () else rng.normal(size=shape),
                                dtype="int64" if shape == () else "float32"), name=f"v{i}", path=f"{name}/v{i}")
            for i, shape in enumerate(shapes)
        ]


def adam_like(model, seed=0, name="adam"):
    """Adam's layout: iterations, learning_rate, then a momentum and a velocity per trainable weight."""
    shapes = [(), ()] + [tuple(w.shape) for w in model.trainable_weights for _ in range(2)]
    opt = FakeOptimizer(shapes, name=name, seed=seed)
    opt.variables[1] = Variable(np.float32(0.001 * (seed + 1)), name="learning_rate", path=f"{name}/learning_rate")
    return opt


@pytest.fixture
def tmp_file(tmp_path):
    return str(tmp_path / "model.weights.h5")


# ------------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.__name__)
def test_round_trip_restores_weights_and_predictions(arch, tmp_file):
    source = build(arch)
    randomize(source, 0)
    save_weights(source, tmp_file)
    target = build(arch)
    x = inputs_for(target)
    before = target.predict(x, verbose=0)
    load_weights(target, tmp_file)
    assert_values(target.weights, values(source.weights))
    after = target.predict(x, verbose=0)
    np.testing.assert_array_equal(after, source.predict(x, verbose=0))
    assert not np.allclose(before, after)  # the load changed something


def test_round_trip_of_float64_and_float16_layers(tmp_file):
    def model():
        return gpuconv.Sequential([glayers.Input((5, 3)), glayers.Conv1D(2, 2, dtype="float64", name="c"),
                                   glayers.Dense(2, dtype="float16", name="d")])

    source = model()
    randomize(source, 3)
    save_weights(source, tmp_file)
    assert [v[2] for k, v in sorted(listing(tmp_file).items()) if v[0] == "dataset"] == \
        ["float64", "float64", "float16", "float16"]
    target = model()
    load_weights(target, tmp_file)
    assert_values(target.weights, values(source.weights))


def test_save_accepts_pathlib_and_leaves_no_temporary_file(tmp_path):
    from pathlib import Path

    model = build(arch_nested)
    path = Path(tmp_path) / "m.weights.h5"
    save_weights(model, path)
    save_weights(model, path)  # overwrite=True by default
    assert sorted(os.listdir(tmp_path)) == ["m.weights.h5"]
    load_weights(build(arch_nested), path)


# ------------------------------------------------------------------------------------------------
# Layout (the same one Keras writes: see the parity module for the comparison with Keras itself)
# ------------------------------------------------------------------------------------------------
def test_layout_names_groups_by_class_and_keeps_layer_names_in_attributes(tmp_file):
    L = glayers
    inner = gpuconv.Sequential([L.Dense(3, name="i1"), L.Dense(2, name="i2")], name="inner")
    model = gpuconv.Sequential([
        L.Input((8, 8, 3)), L.Conv2D(4, 3, name="first"), L.Conv2D(2, 3, use_bias=False, name="second"),
        L.MaxPooling2D(name="pool"), L.Flatten(name="flat"), L.Dense(3, name="head"), inner,
    ], name="top")
    save_weights(model, tmp_file)
    g = ("group", {})
    assert listing(tmp_file) == {
        "vars": ("group", {"name": "top"}),
        "layers": g,
        "layers/conv2d": g,
        "layers/conv2d/vars": ("group", {"name": "first"}),
        "layers/conv2d/vars/0": ("dataset", (3, 3, 3, 4), "float32", {}),
        "layers/conv2d/vars/1": ("dataset", (4,), "float32", {}),
        "layers/conv2d_1": g,
        "layers/conv2d_1/vars": ("group", {"name": "second"}),
        "layers/conv2d_1/vars/0": ("dataset", (3, 3, 4, 2), "float32", {}),
        "layers/max_pooling2d": g,
        "layers/max_pooling2d/vars": ("group", {"name": "pool"}),
        "layers/flatten": g,
        "layers/flatten/vars": ("group", {"name": "flat"}),
        "layers/dense": g,
        "layers/dense/vars": ("group", {"name": "head"}),
        "layers/dense/vars/0": ("dataset", (8, 3), "float32", {}),
        "layers/dense/vars/1": ("dataset", (3,), "float32", {}),
        "layers/sequential": g,
        "layers/sequential/vars": ("group", {"name": "inner"}),
        "layers/sequential/layers": g,
        "layers/sequential/layers/dense": g,
        "layers/sequential/layers/dense/vars": ("group", {"name": "i1"}),
        "layers/sequential/layers/dense/vars/0": ("dataset", (3, 3), "float32", {}),
        "layers/sequential/layers/dense/vars/1": ("dataset", (3,), "float32", {}),
        "layers/sequential/layers/dense_1": g,
        "layers/sequential/layers/dense_1/vars": ("group", {"name": "i2"}),
        "layers/sequential/layers/dense_1/vars/0": ("dataset", (3, 2), "float32", {}),
        "layers/sequential/layers/dense_1/vars/1": ("dataset", (2,), "float32", {}),
    }
    with h5py.File(tmp_file, "r") as f:  # the values, in each layer's weight order
        np.testing.assert_array_equal(f["layers/sequential/layers/dense_1/vars/0"][()],
                                      inner.layers[1].weights[0].numpy())
        np.testing.assert_array_equal(f["layers/dense/vars/1"][()], model.layers[4].weights[1].numpy())


def test_separable_weights_are_stored_in_layer_order(tmp_file):
    model = gpuconv.Sequential([glayers.Input((6, 6, 2)), glayers.SeparableConv2D(3, 3, depth_multiplier=2)])
    randomize(model, 4)
    save_weights(model, tmp_file)
    with h5py.File(tmp_file, "r") as f:
        stored = [f[f"layers/separable_conv2d/vars/{i}"][()] for i in range(3)]
    names = [w.name for w in model.layers[0].weights]
    assert names == ["depthwise_kernel", "pointwise_kernel", "bias"]
    assert_values(model.layers[0].weights, stored)


def test_weight_entries_lists_each_object_once_with_its_path():
    dense = glayers.Dense(2, name="shared")
    inner = gpuconv.Sequential([dense], name="inner")
    model = gpuconv.Sequential([glayers.Input((3,)), glayers.Dense(2, name="a"), inner], name="m")
    model.optimizer = FakeOptimizer([()])
    paths = [(path, obj.name) for path, obj in weight_entries(model)]
    assert paths == [("", "m"), ("layers/dense", "a"), ("layers/sequential", "inner"),
                     ("layers/sequential/layers/dense", "shared"), ("optimizer", "adam")]


def test_sublayers_kept_as_attributes_of_a_custom_layer_are_saved(tmp_file):
    class Block(glayers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.proj = glayers.Dense(3, name="proj")
            self.heads = [glayers.Dense(2, name="h0"), glayers.Dense(2, name="h1")]

        def build(self, input_shape):
            self.proj.build(input_shape)
            for head in self.heads:
                head.build(input_shape[:-1] + (3,))
            self.built = True

    block = Block(name="block")
    block.build((None, 4))
    entries = [(path, obj.name) for path, obj in weight_entries(block)]
    assert entries == [("", "block"), ("heads/dense", "h0"), ("heads/dense_1", "h1"), ("proj", "proj")]
    randomize_layers = [block.proj, *block.heads]
    for i, layer in enumerate(randomize_layers):
        randomize(layer, 10 + i)
    save_weights(block, tmp_file)
    other = Block(name="block")
    other.build((None, 4))
    load_weights(other, tmp_file)
    for a, b in zip(randomize_layers, [other.proj, *other.heads]):
        assert_values(b.weights, values(a.weights))


# ------------------------------------------------------------------------------------------------
# LoRA: Keras stores the merged kernel and loads into the frozen kernel, restarting the adapters
# ------------------------------------------------------------------------------------------------
def _lora_model(lora):
    return gpuconv.Sequential([glayers.Input((6, 6, 3)),
                               glayers.Conv2D(4, 3, lora_rank=2 if lora else None, name="c"),
                               glayers.Flatten(name="f")], name="lora")


def test_lora_layer_saves_its_merged_kernel(tmp_file):
    source = _lora_model(lora=True)
    conv = source.layers[0]
    rng = np.random.default_rng(5)
    for w in conv.weights:
        w.assign(rng.normal(size=w.shape).astype("float32"))
    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    save_weights(source, tmp_file)
    with h5py.File(tmp_file, "r") as f:
        assert sorted(f["layers/conv2d/vars"]) == ["0", "1"]
        np.testing.assert_array_equal(f["layers/conv2d/vars/0"][()], conv.kernel)
    plain = _lora_model(lora=False)
    load_weights(plain, tmp_file)
    np.testing.assert_allclose(plain.predict(x, verbose=0), source.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    again = _lora_model(lora=True)
    load_weights(again, tmp_file)  # the merged kernel goes into the frozen kernel, adapters zeroed
    lora_conv = again.layers[0]
    np.testing.assert_array_equal(lora_conv._kernel.numpy(), conv.kernel)
    assert not lora_conv.lora_kernel_a.numpy().any() and not lora_conv.lora_kernel_b.numpy().any()
    np.testing.assert_allclose(again.predict(x, verbose=0), source.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Optimizer variables
# ------------------------------------------------------------------------------------------------
def test_optimizer_variables_round_trip(tmp_file):
    source = build(arch_2d)
    randomize(source, 0)
    source.optimizer = adam_like(source, seed=1)
    save_weights(source, tmp_file)
    layout = listing(tmp_file)
    assert layout["optimizer/vars"] == ("group", {"name": "adam"})
    assert layout["optimizer/vars/0"][1:3] == ((), "int64")
    assert len([k for k in layout if k.startswith("optimizer/vars/")]) == len(source.optimizer.variables)
    target = build(arch_2d)
    target.optimizer = adam_like(target, seed=2)
    load_weights(target, tmp_file)
    assert_values(target.optimizer.variables, values(source.optimizer.variables))
    assert_values(target.weights, values(source.weights))


def test_unbuilt_optimizer_is_skipped_with_keras_warning(tmp_file):
    source = build(arch_nested)
    source.optimizer = adam_like(source)
    randomize(source, 0)
    save_weights(source, tmp_file)
    target = build(arch_nested)
    target.optimizer = FakeOptimizer([], name="adam_1", built=False)
    with pytest.warns(UserWarning) as record:
        load_weights(target, tmp_file)
    n = len(source.optimizer.variables)
    assert [str(w.message) for w in record] == [
        f"Skipping variable loading for optimizer 'adam_1', because it has 0 variables whereas the saved "
        f"optimizer has {n} variables. This is likely because the optimizer has not been called/built yet."
    ]
    assert_values(target.weights, values(source.weights))  # the layers still load


def test_optimizer_with_another_variable_count_is_skipped(tmp_file):
    source = build(arch_nested)
    source.optimizer = adam_like(source)
    save_weights(source, tmp_file)
    target = build(arch_nested)
    target.optimizer = FakeOptimizer([(), ()], name="sgd")  # SGD without momentum: 2 variables
    kept = values(target.optimizer.variables)
    with pytest.warns(UserWarning, match=r"optimizer 'sgd', because it has 2 variables whereas the saved "
                                         r"optimizer has \d+ variables\. $"):
        load_weights(target, tmp_file)
    assert_values(target.optimizer.variables, kept)


def test_file_without_optimizer_leaves_the_optimizer_alone(tmp_file):
    save_weights(build(arch_nested), tmp_file)
    target = build(arch_nested)
    target.optimizer = adam_like(target)
    kept = values(target.optimizer.variables)
    with pytest.warns(UserWarning, match="whereas the saved optimizer has 0 variables"):
        load_weights(target, tmp_file)
    assert_values(target.optimizer.variables, kept)


def test_optimizer_in_file_is_ignored_by_a_model_without_one(tmp_file):
    source = build(arch_nested)
    source.optimizer = adam_like(source)
    randomize(source, 0)
    save_weights(source, tmp_file)
    target = build(arch_nested)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_weights(target, tmp_file)
    assert_values(target.weights, values(source.weights))


def test_optimizer_shape_mismatch_is_never_misassigned(tmp_file):
    source = gpuconv.Sequential([glayers.Input((3,)), glayers.Dense(2, name="d")], name="m")
    source.optimizer = FakeOptimizer([(), (3, 2), (2,)], name="opt")
    save_weights(source, tmp_file)
    target = gpuconv.Sequential([glayers.Input((3,)), glayers.Dense(2, name="d")], name="m")
    target.optimizer = FakeOptimizer([(), (2,), (3, 2)], name="opt", seed=7)  # same count, swapped shapes
    kept = values(target.optimizer.variables)
    with pytest.raises(ValueError, match=r"A total of 1 objects could not be loaded") as info:
        load_weights(target, tmp_file)
    assert "variable.shape=(2,), Received: value.shape=(3, 2)" in str(info.value)
    assert_values(target.optimizer.variables, kept)  # not even the scalar that matched
    with pytest.warns(UserWarning, match="could not be loaded"):
        load_weights(target, tmp_file, skip_mismatch=True)
    assert_values(target.optimizer.variables, kept)
    np.testing.assert_array_equal(target.weights[0].numpy(), source.weights[0].numpy())


def _compiled_dense(seed):
    from gpuconv import optimizers

    model = gpuconv.Sequential([glayers.Input((4,)), glayers.Dense(3, name="h"), glayers.Dense(2, name="o")], name="m")
    randomize(model, seed)
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01, name="adam"), loss="mse")
    return model


def test_real_optimizer_state_round_trip_resumes_training_identically(tmp_file):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")
    source = _compiled_dense(0)
    for _ in range(2):
        source.train_on_batch(x, y)
    save_weights(source, tmp_file)
    n = len(source.optimizer.variables)
    assert n == 2 + 2 * len(source.trainable_weights)
    assert listing(tmp_file)["optimizer/vars"] == ("group", {"name": "adam"})

    target = _compiled_dense(1)
    target.optimizer.build(target.trainable_weights)
    load_weights(target, tmp_file)
    assert_values(target.optimizer.variables, values(source.optimizer.variables))
    assert int(target.optimizer.iterations.numpy()) == 2
    source.train_on_batch(x, y)
    target.train_on_batch(x, y)  # the third Adam step, from the restored moments
    assert_values(target.weights, values(source.weights))

    unbuilt = _compiled_dense(2)  # compiled, never trained: only iterations and learning_rate
    with pytest.warns(UserWarning, match=f"optimizer 'adam', because it has 2 variables whereas the saved "
                                         f"optimizer has {n} variables. $"):
        load_weights(unbuilt, tmp_file)
    assert int(unbuilt.optimizer.iterations.numpy()) == 0


def test_device_updated_weights_are_saved_and_loaded_weights_reach_the_device(backend_name, tmp_file):
    """On the CUDA engine an optimizer step leaves the new values on the device: the file must get
    them, and a load must replace the device copies a model already used."""
    from gpuconv import optimizers

    def model():
        return gpuconv.Sequential([glayers.Input((6, 2)), glayers.Conv1D(3, 3, name="c"), glayers.Flatten(name="f"),
                                   glayers.Dense(2, name="d")], name="dev")

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 6, 2)).astype("float32"), rng.normal(size=(4, 2)).astype("float32")
    source = model()
    source.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="mse")
    initial = source.get_weights()
    source.train_on_batch(x, y)
    save_weights(source, tmp_file)
    trained = source.get_weights()
    with h5py.File(tmp_file, "r") as f:
        stored = [f[f"layers/{layer}/vars/{i}"][()] for layer in ("conv1d", "dense") for i in (0, 1)]
    for value, before, after in zip(stored, initial, trained):
        np.testing.assert_array_equal(value, after)
        assert not np.array_equal(value, before)
    target = model()
    stale = target.predict(x, verbose=0)  # caches its weights on the device
    load_weights(target, tmp_file)
    fresh = target.predict(x, verbose=0)
    np.testing.assert_allclose(fresh, source.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    assert not np.allclose(fresh, stale)


# ------------------------------------------------------------------------------------------------
# Mismatches
# ------------------------------------------------------------------------------------------------
def _conv_model(filters, extra_dense=False, name="m"):
    L = glayers
    stack = [L.Input((8, 8, 3)), L.Conv2D(filters, 3, name="conv"), L.Flatten(name="flat"), L.Dense(3, name="head")]
    if extra_dense:
        stack.append(L.Dense(2, name="extra"))
    return gpuconv.Sequential(stack, name=name)


def test_shape_mismatch_names_layers_and_shapes_and_assigns_nothing(tmp_file):
    save_weights(_conv_model(4), tmp_file)
    target = _conv_model(6)
    kept = target.get_weights()
    with pytest.raises(ValueError) as info:
        load_weights(target, tmp_file)
    msg = str(info.value)
    assert msg.startswith(
        "A total of 2 objects could not be loaded. Example error message for object <Conv2D name=conv, built=True>:"
        "\n\nThe shape of the target variable and the shape of the target value in `variable.assign(value)` must "
        "match. variable.shape=(3, 3, 3, 6), Received: value.shape=(3, 3, 3, 4). Target variable: "
        "<Variable path=conv/kernel, shape=(3, 3, 3, 6), dtype=float32>"
    )
    assert msg.endswith("List of objects that could not be loaded:\n"
                        "[<Conv2D name=conv, built=True>, <Dense name=head, built=True>]")
    assert_values(target.weights, kept)


def test_skip_mismatch_loads_the_rest_and_warns(tmp_path):
    source = _conv_model(4)
    randomize(source, 0)
    path = str(tmp_path / "a.weights.h5")
    save_weights(source, path)
    # Same conv, a head of another size: the conv loads, the head keeps its values.
    target = gpuconv.Sequential([glayers.Input((8, 8, 3)), glayers.Conv2D(4, 3, name="conv"),
                                 glayers.Flatten(name="flat"), glayers.Dense(5, name="head")], name="m")
    head_before = values(target.layers[2].weights)
    with pytest.warns(UserWarning) as record:
        load_weights(target, path, skip_mismatch=True)
    assert len(record) == 1
    assert str(record[0].message).startswith(
        "A total of 1 objects could not be loaded. Example error message for object <Dense name=head, built=True>"
    )
    assert_values(target.layers[0].weights, values(source.layers[0].weights))
    assert_values(target.layers[2].weights, head_before)


def test_model_with_a_layer_the_file_lacks(tmp_file):
    save_weights(_conv_model(4), tmp_file)
    target = _conv_model(4, extra_dense=True)
    with pytest.raises(ValueError) as info:
        load_weights(target, tmp_file)
    assert str(info.value) == (
        "A total of 1 objects could not be loaded. Example error message for object <Dense name=extra, built=True>:"
        "\n\nLayer 'extra' expected 2 variables, but received 0 variables during loading. "
        "Expected: ['kernel', 'bias']\n\nList of objects that could not be loaded:\n[<Dense name=extra, built=True>]"
    )


def test_file_with_more_layers_than_the_model_loads_what_the_model_has(tmp_file):
    source = _conv_model(4, extra_dense=True)
    randomize(source, 0)
    save_weights(source, tmp_file)
    target = _conv_model(4)
    load_weights(target, tmp_file)  # as Keras: groups the model has no object for are ignored
    assert_values(target.weights, values(source.weights)[:-2])  # all but the extra Dense's kernel and bias


def test_variable_count_mismatch_bias_vs_no_bias(tmp_file):
    save_weights(gpuconv.Sequential([glayers.Input((3,)), glayers.Dense(2, name="d")]), tmp_file)
    target = gpuconv.Sequential([glayers.Input((3,)), glayers.Dense(2, use_bias=False, name="d")])
    with pytest.raises(ValueError, match=r"Layer 'd' expected 1 variables, but received 2 variables during "
                                         r"loading\. Expected: \['kernel'\]"):
        load_weights(target, tmp_file)


def _edit(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)


def _replace_dataset(path, group, name, **dataset):
    def replace(f):
        del f[f"{group}/{name}"]
        f[group].create_dataset(name, **dataset)

    _edit(path, replace)


def test_weightless_layer_with_stray_dataset_is_a_mismatch(tmp_file):
    save_weights(_conv_model(4), tmp_file)
    _edit(tmp_file, lambda f: f["layers/flatten/vars"].create_dataset("0", data=np.zeros(3)))
    with pytest.raises(ValueError, match=r"Layer 'flat' expected 0 variables, but received 1 variables"):
        load_weights(_conv_model(4), tmp_file)


def test_non_numeric_dataset_is_refused(tmp_file):
    save_weights(_conv_model(4), tmp_file)

    _replace_dataset(tmp_file, "layers/dense/vars", "1", data=np.array([b"a", b"b", b"c"]))
    with pytest.raises(ValueError, match=r"has dtype \|S1, which cannot be assigned to variable "
                                         r"<Variable path=head/bias"):
        load_weights(_conv_model(4), tmp_file)


def test_oversized_dataset_is_refused_before_it_is_read(tmp_file):
    save_weights(_conv_model(4), tmp_file)

    # 2**40 float64 declared, nothing stored: reading it would try to allocate 8 TiB.
    _replace_dataset(tmp_file, "layers/dense/vars", "1", shape=(2 ** 40,), dtype="f8", chunks=(2 ** 16,),
                     compression="gzip")
    with pytest.raises(ValueError, match=r"variable.shape=\(3,\), Received: value.shape=\(1099511627776,\)"):
        load_weights(_conv_model(4), tmp_file)


def test_links_and_groups_in_place_of_datasets_are_refused(tmp_path):
    outside = str(tmp_path / "outside.h5")
    with h5py.File(outside, "w") as f:
        f["k"] = np.zeros((3, 3, 3, 4), "float32")
    cases = {
        "soft": lambda f: f["layers/conv2d/vars"].__setitem__("0", h5py.SoftLink("/layers/conv2d/vars/1")),
        "external": lambda f: f["layers/conv2d/vars"].__setitem__("0", h5py.ExternalLink(outside, "k")),
        "group": lambda f: f["layers/conv2d/vars"].create_group("0"),
        "soft_group": lambda f: f["layers"].__setitem__("conv2d", h5py.SoftLink("/layers/dense")),
    }
    expected = {"soft": "Not allowed: H5 file with SoftLink", "external": "Not allowed: H5 file with ExternalLink",
                "group": "expected a dataset at '/layers/conv2d/vars/0', found Group",
                "soft_group": "Not allowed: H5 file with SoftLink"}
    for kind, corrupt in cases.items():
        path = str(tmp_path / f"{kind}.weights.h5")
        save_weights(_conv_model(4), path)

        def apply(f, corrupt=corrupt, kind=kind):
            if kind == "soft_group":
                del f["layers/conv2d"]
            else:
                del f["layers/conv2d/vars/0"]
            corrupt(f)

        _edit(path, apply)
        target = _conv_model(4)
        kept = target.get_weights()
        with pytest.raises(ValueError, match=expected[kind]):
            load_weights(target, path)
        assert_values(target.weights, kept)


def test_keras_2_13_group_name_is_read(tmp_file):
    source = _conv_model(4)
    randomize(source, 2)
    save_weights(source, tmp_file)
    _edit(tmp_file, lambda f: f.move("layers", "_layer_checkpoint_dependencies"))
    target = _conv_model(4)
    load_weights(target, tmp_file)
    assert_values(target.weights, values(source.weights))


# ------------------------------------------------------------------------------------------------
# Arguments and paths
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["model.h5", "model.keras", "model.weights", "weights.h5.tmp"])
def test_filename_must_end_in_weights_h5(bad, tmp_path):
    model = _conv_model(4)
    path = str(tmp_path / bad)
    with pytest.raises(ValueError, match=r"^The filename must end in `\.weights\.h5`\. Received: filepath="
                                         + re.escape(path) + "$"):
        save_weights(model, path)
    assert not os.path.exists(path)
    with open(path, "wb"):
        pass
    with pytest.raises(ValueError, match=r"^File format not supported: filepath=" + re.escape(path)):
        load_weights(model, path)


def test_missing_file_and_directory(tmp_path):
    model = _conv_model(4)
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        load_weights(model, str(tmp_path / "missing.weights.h5"))
    directory = tmp_path / "dir.weights.h5"
    directory.mkdir()
    with pytest.raises(ValueError, match="is not a regular file"):
        load_weights(model, str(directory))


def test_file_that_is_not_hdf5(tmp_file):
    with open(tmp_file, "wb") as f:
        f.write(b"\x80\x04not an hdf5 file at all" * 10)
    with pytest.raises(ValueError, match=r"Cannot read .* as an HDF5 \(`\.weights\.h5`\) file"):
        load_weights(_conv_model(4), tmp_file)


def test_overwrite_false_refuses_an_existing_file(tmp_file):
    first = _conv_model(4)
    randomize(first, 0)
    save_weights(first, tmp_file)
    second = _conv_model(4)
    with pytest.raises(FileExistsError, match="already exists and `overwrite=False`"):
        save_weights(second, tmp_file, overwrite=False)
    check = _conv_model(4)
    load_weights(check, tmp_file)  # still the first model's file
    assert_values(check.weights, values(first.weights))
    save_weights(second, tmp_file, overwrite=True)
    load_weights(check, tmp_file)
    assert_values(check.weights, values(second.weights))


def test_failed_save_keeps_the_previous_file(tmp_file, monkeypatch):
    first = _conv_model(4)
    save_weights(first, tmp_file)
    before = listing(tmp_file)
    second = _conv_model(4)

    def broken_numpy():
        raise RuntimeError("device lost")

    monkeypatch.setattr(second.layers[2].weights[1], "numpy", broken_numpy)
    with pytest.raises(RuntimeError, match="device lost"):
        save_weights(second, tmp_file)
    assert listing(tmp_file) == before
    assert os.listdir(os.path.dirname(tmp_file)) == [os.path.basename(tmp_file)]


def test_unbuilt_model(tmp_file):
    model = gpuconv.Sequential([glayers.Dense(2)])
    with pytest.raises(ValueError, match=r"^You are saving a model that has not yet been built\. Try building"):
        save_weights(model, tmp_file)
    save_weights(_conv_model(4), tmp_file)
    with pytest.raises(ValueError, match=r"^You are loading weights into a model that has not yet been built"):
        load_weights(model, tmp_file)


def test_argument_types(tmp_file):
    model = _conv_model(4)
    with pytest.raises(TypeError, match=r"Argument `filepath` must be a string or a path-like object\. "
                                        r"Received: filepath=3"):
        save_weights(model, 3)
    with pytest.raises(TypeError, match=r"Argument `filepath` .* Received: filepath=b'm\.weights\.h5'"):
        load_weights(model, b"m.weights.h5")
    with pytest.raises(TypeError, match=r"Argument `overwrite` must be a boolean\. Received: overwrite='yes'"):
        save_weights(model, tmp_file, overwrite="yes")
    save_weights(model, tmp_file)
    with pytest.raises(TypeError, match=r"Argument `skip_mismatch` must be a boolean\. Received: skip_mismatch=1"):
        load_weights(model, tmp_file, skip_mismatch=1)
    with pytest.raises(TypeError, match=r"Argument `model` must be a gpuconv model or layer\. Received: model=\[\]"):
        save_weights([], tmp_file)


def test_missing_h5py_gives_an_install_hint(tmp_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # `import h5py` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install h5py.*gpuconv\[training\]"):
        save_weights(_conv_model(4), tmp_file)
    assert not os.path.exists(tmp_file)

"""Inference fusion (gpuconv.fusion): BatchNormalization folded into the convolution (or Dense)
before it, and the activation after it fused into the op, when a Sequential or functional model
predicts.

Every fused result is compared with the same model run unfused (``model.fuse_inference =
False``): relative L2 <= 1e-5 in float32 (DESIGN.md), with moving statistics and gammas far from
their initial values so a wrong fold cannot hide. That the fusion happened is asserted from the
plan (``plan_for(model).describe()``) and by counting BatchNormalization's own calls (none when
folded); that training and taped calls run unfused by the same counts and by BN's batch statistics.
A conv output read by two layers, a BN on another axis, a conv with its own activation: never
folded. One check compares the fused model with real Keras (torch backend)."""
import numpy as np
import pytest

import gpuconv
from gpuconv import fusion
from gpuconv import layers as L
from conftest import keras_numpy, relative_l2_error

F32_TOLERANCE = 1e-5


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _fusion_on():
    """Each test starts with fusion on for the process, and leaves it as the environment had it."""
    previous = fusion._state["enabled"]
    fusion.set_enabled(True)
    yield
    fusion._state["enabled"] = previous


@pytest.fixture
def bn_calls(monkeypatch):
    """How many times BatchNormalization's own code ran (inference or training)."""
    counts = {"call": 0, "train": 0}
    call, train = L.BatchNormalization.call, L.BatchNormalization._call_training

    def counted_call(self, inputs):
        counts["call"] += 1
        return call(self, inputs)

    def counted_train(self, inputs, training):
        counts["train"] += 1
        return train(self, inputs, training)

    monkeypatch.setattr(L.BatchNormalization, "call", counted_call)
    monkeypatch.setattr(L.BatchNormalization, "_call_training", counted_train)
    return counts


def _randomize_batch_norms(model, rng):
    """Moving statistics, gammas and betas far from the initial 0 / 1 (a fold that ignored one
    of them, or applied it on the wrong channel, would be seen)."""
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            values = []
            n = layer.moving_mean.shape[0]
            for var in layer.weights:
                if var.name == "gamma":
                    values.append(rng.uniform(0.5, 1.5, n) * rng.choice([-1, 1], n))
                elif var.name == "moving_variance":
                    values.append(rng.uniform(0.3, 2.5, n))
                else:  # beta, moving_mean
                    values.append(rng.normal(0, 0.5, n))
            layer.set_weights(values)
        elif layer.weights and not isinstance(layer, L.BatchNormalization):
            layer.set_weights([w + rng.normal(0, 0.05, w.shape) for w in layer.get_weights()])


def _unfused(model, x, **kwargs):
    model.fuse_inference = False
    try:
        return gpuconv.to_numpy(model(x, **kwargs))
    finally:
        model.fuse_inference = True


def _check_matches_unfused(model, x, groups):
    """The fused call agrees with the unfused one, the plan has ``groups`` groups, and no
    folded BatchNormalization ran."""
    plan = fusion.plan_for(model)
    assert len(plan.groups) == groups, plan.describe()
    fused = gpuconv.to_numpy(model(x))
    expected = _unfused(model, x)
    assert fused.dtype == expected.dtype and fused.shape == expected.shape
    error = relative_l2_error(fused, expected)
    assert error <= F32_TOLERANCE, (error, plan.describe())
    return plan, fused


def _x(rng, shape):
    return rng.normal(size=shape).astype("float32")


# --------------------------------------------------------------------------------------------
# Sequential stacks
# --------------------------------------------------------------------------------------------
_ACTIVATIONS = [
    lambda: L.ReLU(), lambda: L.ReLU(6.0), lambda: L.Activation("relu"), lambda: L.Activation("relu6"),
    lambda: L.Activation("tanh"), lambda: L.Activation("sigmoid"), lambda: L.Activation("gelu"),
    lambda: L.Activation("silu"),
]


@pytest.mark.parametrize("seed", range(12))
def test_random_conv_bn_activation_stacks_match_unfused(seed, bn_calls):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 4))
    data_format = str(rng.choice(["channels_last", "channels_first"]))
    channels_axis = -1 if data_format == "channels_last" else 1
    spatial = tuple(int(s) for s in rng.integers(5, 8 if rank < 3 else 6, size=rank))
    c_in = int(rng.integers(1, 4))
    shape = (2,) + (spatial + (c_in,) if data_format == "channels_last" else (c_in,) + spatial)
    conv = (L.Conv1D, L.Conv2D, L.Conv3D)[rank - 1]
    model = gpuconv.Sequential([gpuconv.Input(shape[1:])])
    expected_groups = 0
    for _ in range(int(rng.integers(1, 4))):
        model.add(conv(int(rng.integers(2, 6)), int(rng.integers(1, 4)), padding=str(rng.choice(["same", "valid"])),
                       strides=int(rng.integers(1, 3)) if rank < 3 else 1,
                       use_bias=bool(rng.integers(2)), data_format=data_format))
        model.add(L.BatchNormalization(axis=channels_axis, center=bool(rng.integers(2)),
                                       scale=bool(rng.integers(2)), epsilon=float(rng.choice([1e-3, 1e-5]))))
        if rng.integers(3):
            model.add(_ACTIVATIONS[int(rng.integers(len(_ACTIVATIONS)))]())
        expected_groups += 1
    _randomize_batch_norms(model, rng)
    _check_matches_unfused(model, _x(rng, shape), expected_groups)
    # The unfused reference called every BN once; the fused call none.
    assert bn_calls == {"call": expected_groups, "train": 0}


def test_fused_model_agrees_with_keras(keras, rng):
    """A Conv2D-BN-ReLU6 / Conv2D-BN-ReLU stack with the same weights in Keras: the fused
    gpuconv model agrees with Keras' unfused one to float32 rounding."""
    def build(lib):
        return lib.Sequential([
            lib.Input((9, 9, 3)), lib.layers.Conv2D(6, 3, padding="same"), lib.layers.BatchNormalization(),
            lib.layers.ReLU(6.0), lib.layers.Conv2D(4, 3, strides=2, use_bias=False),
            lib.layers.BatchNormalization(epsilon=1e-5), lib.layers.ReLU(),
        ])

    ours, theirs = build(gpuconv), build(keras)
    _randomize_batch_norms(ours, rng)
    theirs.set_weights(ours.get_weights())
    x = _x(rng, (3, 9, 9, 3))
    assert len(fusion.plan_for(ours).groups) == 2
    expected = keras_numpy(theirs(x, training=False))
    assert relative_l2_error(gpuconv.to_numpy(ours.predict(x, verbose=0)), expected) <= F32_TOLERANCE


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_depthwise_separable_and_transposed_fold(data_format, rng):
    axis = -1 if data_format == "channels_last" else 1
    shape = (8, 8, 3) if data_format == "channels_last" else (3, 8, 8)
    model = gpuconv.Sequential([
        gpuconv.Input(shape),
        L.DepthwiseConv2D(3, depth_multiplier=3, data_format=data_format), L.BatchNormalization(axis=axis),
        L.ReLU(6.0),
        L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", data_format=data_format, use_bias=False),
        L.BatchNormalization(axis=axis), L.Activation("relu"),
        L.Conv2DTranspose(6, 3, strides=2, output_padding=1, data_format=data_format),
        L.BatchNormalization(axis=axis),
    ])
    _randomize_batch_norms(model, rng)
    plan, _ = _check_matches_unfused(model, _x(rng, (2,) + shape), 3)
    kinds = [g.kind for g in plan.groups]
    assert kinds == ["depthwise", "separable", "transpose"]
    assert [g.activation_name for g in plan.groups] == ["relu6", "relu", None]


def test_grouped_conv_and_grouped_transposed_fold_per_output_channel(rng):
    """Grouped kernels put output channels in two places (transposed: axis -2 within a group):
    a fold on the wrong channel would mix groups."""
    grouped = gpuconv.Sequential([gpuconv.Input((5, 5, 4)), L.Conv2D(6, 3, groups=2, padding="same"),
                                  L.BatchNormalization(), L.Activation("relu")])
    transposed = gpuconv.Sequential([gpuconv.Input((5, 5, 4)), L.Conv2DTranspose(6, 3, strides=2, groups=2),
                                     L.BatchNormalization()])
    assert transposed.layers[0].kernel.shape == (3, 3, 3, 4)
    for model in (grouped, transposed):
        _randomize_batch_norms(model, rng)
        _check_matches_unfused(model, _x(rng, (2, 5, 5, 4)), 1)


def test_depthwise_3d_and_separable_1d_and_conv_transpose_3d(rng):
    for model, shape in [
        (gpuconv.Sequential([gpuconv.Input((5, 5, 5, 2)), L.DepthwiseConv3D(2, depth_multiplier=2),
                             L.BatchNormalization()]), (2, 5, 5, 5, 2)),
        (gpuconv.Sequential([gpuconv.Input((9, 3)), L.SeparableConv1D(4, 3, padding="causal"),
                             L.BatchNormalization(), L.ReLU()]), (2, 9, 3)),
        (gpuconv.Sequential([gpuconv.Input((2, 4, 4, 4), ), L.Conv3DTranspose(3, 2, data_format="channels_first"),
                             L.BatchNormalization(axis=1), L.Activation("tanh")]), (2, 2, 4, 4, 4)),
        (gpuconv.Sequential([gpuconv.Input((9, 3)), L.Conv1DTranspose(3, 3, strides=2), L.BatchNormalization()]),
         (2, 9, 3)),
    ]:
        _randomize_batch_norms(model, rng)
        _check_matches_unfused(model, _x(rng, shape), 1)


def test_dense_batch_norm_folds(rng):
    model = gpuconv.Sequential([gpuconv.Input((4, 4, 3)), L.Conv2D(4, 3), L.Flatten(), L.Dense(7),
                                L.BatchNormalization(), L.Activation("sigmoid"), L.Dense(5, use_bias=False),
                                L.BatchNormalization(center=False)])
    _randomize_batch_norms(model, rng)
    plan, _ = _check_matches_unfused(model, _x(rng, (3, 4, 4, 3)), 2)
    assert [g.kind for g in plan.groups] == ["dense", "dense"]


def test_activation_alone_is_fused_without_batch_norm(rng):
    """A linear conv followed by ReLU: one op with the activation, no BN in the group."""
    model = gpuconv.Sequential([gpuconv.Input((6, 6, 2)), L.Conv2D(3, 3), L.ReLU(), L.Dense(2), L.ReLU()])
    plan, _ = _check_matches_unfused(model, _x(rng, (2, 6, 6, 2)), 1)  # Dense + ReLU alone gains nothing
    (group,) = plan.groups
    assert group.batch_norm is None and group.activation_name == "relu"
    assert "conv2d" in plan.describe()[0] and "BatchNormalization folded" not in plan.describe()[0]


def test_float64_policy_folds_to_float64_rounding(rng):
    model = gpuconv.Sequential([gpuconv.Input((6, 6, 2)), L.Conv2D(3, 3, dtype="float64"),
                                L.BatchNormalization(dtype="float64"), L.ReLU(dtype="float64")])
    _randomize_batch_norms(model, rng)
    x = rng.normal(size=(2, 6, 6, 2))
    assert len(fusion.plan_for(model).groups) == 1
    fused = gpuconv.to_numpy(model(x))
    assert fused.dtype == np.float64
    assert relative_l2_error(fused, _unfused(model, x)) <= 1e-12


def test_mixed_float16_policy(rng):
    model = gpuconv.Sequential([gpuconv.Input((6, 6, 2)), L.Conv2D(3, 3, dtype="mixed_float16"),
                                L.BatchNormalization(dtype="mixed_float16"), L.ReLU(dtype="mixed_float16")])
    _randomize_batch_norms(model, rng)
    x = _x(rng, (2, 6, 6, 2))
    assert len(fusion.plan_for(model).groups) == 1
    fused = gpuconv.to_numpy(model(x))
    assert fused.dtype == np.float16
    assert relative_l2_error(fused, _unfused(model, x)) <= 2e-3


def test_lora_conv_folds_the_merged_kernel(rng):
    conv = L.Conv2D(4, 3)
    model = gpuconv.Sequential([gpuconv.Input((6, 6, 2)), conv, L.BatchNormalization()])
    conv.enable_lora(2)
    conv.lora_kernel_b.assign(rng.normal(size=conv.lora_kernel_b.shape))
    _randomize_batch_norms(model, rng)
    _check_matches_unfused(model, _x(rng, (2, 6, 6, 2)), 1)


# --------------------------------------------------------------------------------------------
# What must not fold
# --------------------------------------------------------------------------------------------
def test_not_folded_when_it_would_change_results(rng, bn_calls):
    cases = [
        # the conv has an activation of its own: BN comes after it, not after the affine map
        [L.Conv2D(3, 3, activation="relu"), L.BatchNormalization()],
        # BN over another axis than the conv's channels
        [L.Conv2D(6, 3), L.BatchNormalization(axis=1)],
        # an activity regularizer needs the conv's own output
        [L.Conv2D(3, 3, activity_regularizer="l2"), L.BatchNormalization()],
        # a parametrised relu is not a built-in the op takes
        [L.Conv2D(3, 3), L.ReLU(negative_slope=0.1)],
        [L.Conv2D(3, 3), L.LeakyReLU()],
        # a non-elementwise activation
        [L.Conv2D(3, 3), L.Activation("softmax")],
        # BN in another dtype than the conv
        [L.Conv2D(3, 3), L.BatchNormalization(dtype="float64")],
    ]
    for stack in cases:
        model = gpuconv.Sequential([gpuconv.Input((6, 6, 6))] + stack)
        _randomize_batch_norms(model, rng)
        before = bn_calls["call"]
        _check_matches_unfused(model, _x(rng, (2, 6, 6, 6)), 0)
        bns = sum(isinstance(layer, L.BatchNormalization) for layer in stack)
        assert bn_calls["call"] - before == 2 * bns  # fused and unfused calls both ran the BN


def test_subclass_overriding_call_is_not_folded(rng):
    class Doubled(L.Conv2D):
        def call(self, inputs):
            return super().call(inputs) * 2.0

    model = gpuconv.Sequential([gpuconv.Input((6, 6, 2)), Doubled(3, 3), L.BatchNormalization()])
    _randomize_batch_norms(model, rng)
    _check_matches_unfused(model, _x(rng, (2, 6, 6, 2)), 0)


# --------------------------------------------------------------------------------------------
# Functional models
# --------------------------------------------------------------------------------------------
def test_functional_branches_fold_only_single_readers(rng, bn_calls):
    inputs = gpuconv.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", name="stem")(inputs)
    a = L.BatchNormalization(name="stem_bn")(a)
    a = L.ReLU(name="stem_relu")(a)
    shared = L.Conv2D(4, 1, name="shared")(a)  # read by a BN and by the add: must NOT fold
    left = L.BatchNormalization(name="left_bn")(shared)
    right = L.Conv2D(4, 3, padding="same", name="right")(shared)
    right = L.BatchNormalization(name="right_bn")(right)
    right = L.Activation("relu6", name="right_act")(right)
    merged = left + right + shared  # non-layer nodes (symbolic arithmetic) read the conv outputs too
    out = L.Conv2D(2, 1, name="head")(merged)
    out_bn = L.BatchNormalization(name="head_bn")(out)
    model = gpuconv.Model(inputs, [out_bn, out])  # `head` is also an output: must NOT fold
    _randomize_batch_norms(model, rng)
    plan = fusion.plan_for(model)
    names = [tuple(m.name for m in g.layers) for g in plan.groups]
    assert names == [("stem", "stem_bn", "stem_relu"), ("right", "right_bn", "right_act")]
    x = _x(rng, (2, 8, 8, 3))
    fused = [gpuconv.to_numpy(y) for y in model(x)]
    bn_calls["call"] = 0
    model.fuse_inference = False
    expected = [gpuconv.to_numpy(y) for y in model(x)]
    assert bn_calls["call"] == 4
    for got, want in zip(fused, expected):
        assert relative_l2_error(got, want) <= F32_TOLERANCE


def test_functional_shared_layer_and_nested_sequential(rng):
    """A conv called twice, each call followed by its own BN: each node folds with its BN. A
    Sequential inside the model folds its own stack."""
    conv = L.Conv2D(3, 3, padding="same", name="twice")
    inner = gpuconv.Sequential([gpuconv.Input((6, 6, 3)), L.Conv2D(3, 1), L.BatchNormalization(), L.ReLU()],
                               name="inner")
    inputs = gpuconv.Input((6, 6, 3))
    first = L.BatchNormalization(name="bn_first")(conv(inputs))
    second = L.BatchNormalization(name="bn_second")(conv(first))
    model = gpuconv.Model(inputs, inner(second))
    _randomize_batch_norms(model, rng)
    _randomize_batch_norms(inner, rng)
    plan = fusion.plan_for(model)
    assert [tuple(m.name for m in g.layers) for g in plan.groups] == [("twice", "bn_first"), ("twice", "bn_second")]
    assert len(fusion.plan_for(inner).groups) == 1
    x = _x(rng, (2, 6, 6, 3))
    fused = gpuconv.to_numpy(model(x))
    model.fuse_inference = inner.fuse_inference = False
    assert relative_l2_error(fused, gpuconv.to_numpy(model(x))) <= F32_TOLERANCE


def test_functional_channels_first_chain(rng):
    inputs = gpuconv.Input((2, 7, 7))
    y = L.Conv2D(4, 3, data_format="channels_first")(inputs)
    y = L.BatchNormalization(axis=1)(y)
    y = L.ReLU()(y)
    y = L.DepthwiseConv2D(3, data_format="channels_first", depth_multiplier=2)(y)
    y = L.BatchNormalization(axis=1)(y)
    model = gpuconv.Model(inputs, y)
    _randomize_batch_norms(model, rng)
    _check_matches_unfused(model, _x(rng, (2, 2, 7, 7)), 2)


# --------------------------------------------------------------------------------------------
# Training, tapes, switches, invalidation
# --------------------------------------------------------------------------------------------
def _stack():
    return gpuconv.Sequential([gpuconv.Input((6, 6, 2)), L.Conv2D(3, 3), L.BatchNormalization(momentum=0.5),
                               L.ReLU()])


def test_training_call_runs_unfused_with_batch_statistics(rng, bn_calls):
    model = _stack()
    _randomize_batch_norms(model, rng)
    x = _x(rng, (4, 6, 6, 2))
    weights = model.get_weights()
    y = gpuconv.to_numpy(model(x, training=True))
    assert bn_calls["train"] == 1
    # Batch statistics: each channel of the BN output (before the relu) has mean beta; after the
    # relu, compare with the unfused training call from the same weights instead.
    model.set_weights(weights)
    model.fuse_inference = False
    assert np.array_equal(y, gpuconv.to_numpy(model(x, training=True)))
    # The moving statistics moved: the next fused prediction uses the new ones.
    model.fuse_inference = True
    assert not np.array_equal(model.layers[1].moving_mean.numpy(), weights[4])
    _check_matches_unfused(model, x, 1)


def test_gradient_tape_runs_unfused(rng, bn_calls, monkeypatch):
    model = _stack()
    _randomize_batch_norms(model, rng)
    x = _x(rng, (2, 6, 6, 2))
    predicted = gpuconv.to_numpy(model(x))
    assert bn_calls["call"] == 0

    def refuse(*args, **kwargs):
        raise AssertionError("a fused group ran under a tape")

    monkeypatch.setattr(fusion.FusedGroup, "__call__", refuse)
    with gpuconv.GradientTape() as tape:
        y = model(x)
        loss = gpuconv.ops.sum(y)
    grads = tape.gradient(loss, model.trainable_weights)
    assert bn_calls["call"] == 1
    assert all(g is not None for g in grads)
    assert relative_l2_error(gpuconv.to_numpy(y), predicted) <= F32_TOLERANCE


def test_switches(rng, bn_calls, monkeypatch):
    model = _stack()
    _randomize_batch_norms(model, rng)
    x = _x(rng, (2, 6, 6, 2))
    model(x)
    assert bn_calls["call"] == 0
    fusion.set_enabled(False)
    assert not fusion.is_enabled()
    model(x)
    assert bn_calls["call"] == 1
    assert len(fusion.plan_for(model).groups) == 1  # the plan is still available to look at
    fusion.set_enabled(True)
    model.fuse_inference = False
    model(x)
    assert bn_calls["call"] == 2
    model.fuse_inference = True
    model.predict(x, verbose=0)
    assert bn_calls["call"] == 2
    # The environment variable, read when nothing was set.
    for value, expected in [("0", False), ("off", False), ("1", True), ("", True), ("TRUE", True)]:
        monkeypatch.setenv("GPUCONV_FUSION", value)
        fusion._state["enabled"] = None
        assert fusion.is_enabled() is expected
    monkeypatch.setenv("GPUCONV_FUSION", "maybe")
    fusion._state["enabled"] = None
    with pytest.raises(ValueError, match="GPUCONV_FUSION='maybe'"):
        fusion.is_enabled()
    fusion.set_enabled(True)
    with pytest.raises(TypeError, match="enabled='yes'"):
        fusion.set_enabled("yes")
    model.fuse_inference = "no"
    with pytest.raises(TypeError, match="fuse_inference='no'"):
        model(x)
    with pytest.raises(TypeError, match="model="):
        fusion.plan_for(L.Conv2D(2, 2))


def test_weight_changes_refold(rng):
    model = _stack()
    _randomize_batch_norms(model, rng)
    x = _x(rng, (2, 6, 6, 2))
    _check_matches_unfused(model, x, 1)
    _randomize_batch_norms(model, rng)  # set_weights on every layer
    _check_matches_unfused(model, x, 1)
    model.layers[0].bias.assign(rng.normal(size=3))
    _check_matches_unfused(model, x, 1)
    # An optimizer step updates the weights in place (array_for_update).
    model.compile(optimizer=gpuconv.optimizers.SGD(0.5), loss="mse")
    before = gpuconv.to_numpy(model(x))
    model.fit(x, rng.normal(size=(2, 4, 4, 3)).astype("float32"), epochs=1, verbose=0)
    _, after = _check_matches_unfused(model, x, 1)
    assert relative_l2_error(after, before) > 1e-3


def test_plan_follows_layer_changes(rng):
    model = _stack()
    _randomize_batch_norms(model, rng)
    x = _x(rng, (2, 6, 6, 2))
    plan = fusion.plan_for(model)
    assert fusion.plan_for(model) is plan  # cached while nothing changes
    model.layers[1].trainable = False
    assert fusion.plan_for(model) is not plan
    model.layers[1].epsilon = 0.5  # the fold reads epsilon: a new plan refolds
    _check_matches_unfused(model, x, 1)
    model.layers[0].activation = gpuconv.activations.get("relu")  # BN now follows a relu: no fold
    _check_matches_unfused(model, x, 0)
    model.layers[0].activation = gpuconv.activations.get("linear")
    model.add(L.Conv2D(2, 1))
    model.add(L.BatchNormalization())
    model(x)  # builds the new layers
    _randomize_batch_norms(model, rng)
    _check_matches_unfused(model, x, 2)
    model.pop()
    _check_matches_unfused(model, x, 1)


def test_unbuilt_sequential_first_call_then_fused(rng, bn_calls):
    model = gpuconv.Sequential([L.Conv2D(3, 3), L.BatchNormalization(), L.ReLU()])
    x = _x(rng, (2, 6, 6, 2))
    model(x)  # the first call builds the layers, unfused
    assert bn_calls["call"] == 1
    _randomize_batch_norms(model, rng)
    _check_matches_unfused(model, x, 1)


def test_fused_on_each_backend(backend_name, rng):
    """The fold and the fused op on the active engine (the CUDA engine: weights folded on the
    device; a GPU run also checks the CUDA epilogue's relu6/relu)."""
    model = gpuconv.Sequential([gpuconv.Input((4, 4, 2)), L.Conv2D(3, 3, padding="same"), L.BatchNormalization(),
                                L.ReLU(6.0), L.DepthwiseConv2D(3, depth_multiplier=2), L.BatchNormalization(),
                                L.ReLU()])
    _randomize_batch_norms(model, rng)
    _check_matches_unfused(model, _x(rng, (1, 4, 4, 2)), 2)

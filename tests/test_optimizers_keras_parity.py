"""Parity of ``gpuconv.optimizers`` with real Keras 3.15 optimizers (torch backend).

Each case builds the same float32 variables in Keras and gpuconv (a kernel and a bias under the
name scope "dense"), feeds both optimizers the same sequence of random gradients, and after every
step compares every model variable, every optimizer variable (count, order, names, shapes,
values), ``iterations`` and the current learning rate. Configs are compared too, both ways.

Tolerance. The update rules are written to Keras' torch order of operations, with torch's fused
multiply-adds (``gpuconv.optimizers.rules``); what remains is torch's float32 ``sqrt``, which on
x86 CPUs is off by one unit in the last place on a small fraction of elements, and the summation
order of the norms in gradient clipping. Those 1-ulp differences (about 6e-8 relative) propagate
through a few steps, so values must agree within ``1e-6`` of each array's largest magnitude
(``RTOL``): about ten float32 ulps, while a wrong epsilon placement, bias correction or decay
changes results by 1e-5 or more. Cases without sqrt or norms must agree bit for bit wherever
torch fuses its ``add(alpha=)`` on this CPU (probed, not assumed).
"""
import os
import re

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process
keras = pytest.importorskip("keras", reason="optimizer parity needs keras>=3.15 with the torch backend",
                            exc_type=ImportError)
import torch  # noqa: E402  (keras' torch backend is importable, so torch is)

from gpuconv import constraints as gconstraints  # noqa: E402
from gpuconv import optimizers as goptimizers  # noqa: E402
from gpuconv.variables import Variable  # noqa: E402

pytestmark = [
    pytest.mark.parity,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Gradients do not exist for variables"),
]

RTOL = 1e-6
SHAPES = {"kernel": (6, 4), "bias": (4,)}
STEPS = 7


def _torch_fuses_add_alpha():
    """Whether torch's CPU ``add_(x, alpha=a)`` rounds once (a fused multiply-add) on this machine."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(4096).astype(np.float32), rng.standard_normal(4096).astype(np.float32)
    fused = (a.astype(np.float64) + b.astype(np.float64) * np.float64(np.float32(-0.01))).astype(np.float32)
    return np.array_equal(torch.tensor(a).add_(torch.tensor(b), alpha=-0.01).numpy(), fused)


FUSED = _torch_fuses_add_alpha()


def _schedules(name, *args, **kwargs):
    """The same schedule in both libraries."""
    return getattr(keras.optimizers.schedules, name)(*args, **kwargs), getattr(goptimizers.schedules, name)(*args, **kwargs)


# (id, class, kwargs, exact): kwargs may hold a ("schedule", name, args, kwargs) learning rate.
CASES = [
    ("sgd", "SGD", {}, True),
    ("sgd-momentum", "SGD", {"momentum": 0.9}, True),
    ("sgd-nesterov", "SGD", {"momentum": 0.8, "nesterov": True, "learning_rate": 0.05}, True),
    ("sgd-nesterov-no-momentum", "SGD", {"nesterov": True}, True),
    ("adam", "Adam", {}, False),
    ("adam-hyper", "Adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.9, "epsilon": 1e-3}, False),
    ("adam-amsgrad", "Adam", {"amsgrad": True}, False),
    ("adamw", "AdamW", {}, False),
    ("adamw-strong-decay", "AdamW", {"weight_decay": 0.3, "learning_rate": 0.1, "amsgrad": True}, False),
    ("rmsprop", "RMSprop", {}, False),
    ("rmsprop-momentum", "RMSprop", {"momentum": 0.5, "rho": 0.8}, False),
    ("rmsprop-centered", "RMSprop", {"centered": True}, False),
    ("rmsprop-centered-momentum", "RMSprop", {"centered": True, "momentum": 0.3, "epsilon": 1e-3}, False),
    ("adagrad", "Adagrad", {}, False),
    ("adagrad-hyper", "Adagrad", {"initial_accumulator_value": 0.5, "epsilon": 1e-3, "learning_rate": 0.1}, False),
    ("adadelta", "Adadelta", {}, False),
    ("adadelta-hyper", "Adadelta", {"rho": 0.5, "epsilon": 1e-4, "learning_rate": 1.0}, False),
    ("adamax", "Adamax", {}, False),
    ("adamax-hyper", "Adamax", {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-2, "learning_rate": 0.1}, False),
    ("nadam", "Nadam", {}, False),
    ("nadam-hyper", "Nadam", {"beta_1": 0.7, "beta_2": 0.95, "epsilon": 1e-3, "learning_rate": 0.01}, False),
    ("lion", "Lion", {}, True),
    ("lion-hyper", "Lion", {"beta_1": 0.5, "beta_2": 0.8, "learning_rate": 0.01}, True),
    ("weight-decay-sgd", "SGD", {"weight_decay": 0.1, "momentum": 0.9}, True),
    ("weight-decay-adam", "Adam", {"weight_decay": 0.05}, False),
    ("weight-decay-lion", "Lion", {"weight_decay": 0.2}, True),
    ("clipnorm", "Adam", {"clipnorm": 0.5}, False),
    ("clipnorm-sgd", "SGD", {"clipnorm": 1.0, "momentum": 0.5}, False),
    ("global-clipnorm", "RMSprop", {"global_clipnorm": 0.7}, False),
    ("global-clipnorm-sgd", "SGD", {"global_clipnorm": 1.0}, False),
    ("clipvalue", "SGD", {"clipvalue": 0.5, "momentum": 0.9}, True),
    ("clipvalue-adam", "Adam", {"clipvalue": 0.3}, False),
    ("ema", "SGD", {"use_ema": True, "momentum": 0.5}, True),
    ("ema-overwrite", "Adam", {"use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 3}, False),
    ("ema-overwrite-lion", "Lion", {"use_ema": True, "ema_overwrite_frequency": 2}, True),
    ("accumulation", "SGD", {"gradient_accumulation_steps": 3, "momentum": 0.9}, True),
    ("accumulation-adam", "Adam", {"gradient_accumulation_steps": 2}, False),
    ("accumulation-nadam-ema", "Nadam", {"gradient_accumulation_steps": 2, "use_ema": True,
                                         "ema_overwrite_frequency": 2}, False),
    ("loss-scale", "Adam", {"loss_scale_factor": 8.0}, False),
    ("schedule-exponential", "SGD", {"learning_rate": ("schedule", "ExponentialDecay", (0.1, 3, 0.5), {})}, True),
    ("schedule-exponential-staircase", "Adam",
     {"learning_rate": ("schedule", "ExponentialDecay", (0.01, 2, 0.7), {"staircase": True})}, False),
    ("schedule-piecewise", "SGD",
     {"momentum": 0.5, "learning_rate": ("schedule", "PiecewiseConstantDecay", ([2, 4], [0.1, 0.05, 0.01]), {})}, True),
    ("schedule-cosine", "Adam", {"learning_rate": ("schedule", "CosineDecay", (0.1, 5), {"alpha": 0.1})}, False),
    ("schedule-cosine-warmup", "SGD", {"learning_rate": ("schedule", "CosineDecay", (0.0, 4),
                                                         {"warmup_target": 0.2, "warmup_steps": 3})}, True),
    ("schedule-inverse-time", "RMSprop",
     {"learning_rate": ("schedule", "InverseTimeDecay", (0.01, 2, 0.5), {"staircase": True})}, False),
    ("schedule-polynomial", "SGD", {"learning_rate": ("schedule", "PolynomialDecay", (0.1, 4), {"power": 2.0})}, True),
    ("schedule-polynomial-cycle", "Lion",
     {"learning_rate": ("schedule", "PolynomialDecay", (0.01, 3), {"cycle": True, "end_learning_rate": 0.001})}, True),
    ("schedule-with-weight-decay", "AdamW",
     {"learning_rate": ("schedule", "ExponentialDecay", (0.01, 2, 0.5), {})}, False),
]


def _split_kwargs(kwargs):
    """(keras kwargs, gpuconv kwargs): a learning-rate schedule spec becomes each library's object."""
    keras_kwargs, gpuconv_kwargs = dict(kwargs), dict(kwargs)
    lr = kwargs.get("learning_rate")
    if isinstance(lr, tuple) and lr[0] == "schedule":
        keras_kwargs["learning_rate"], gpuconv_kwargs["learning_rate"] = _schedules(lr[1], *lr[2], **lr[3])
    return keras_kwargs, gpuconv_kwargs


def _variables(rng, constraint=False):
    """The same kernel and bias in both libraries ('dense/kernel', 'dense/bias')."""
    values = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in SHAPES.items()}
    with keras.name_scope("dense"):
        k_vars = [keras.Variable(values[name], name=name) for name in SHAPES]
    g_vars = [Variable(values[name], name=name, path=f"dense/{name}") for name in SHAPES]
    if constraint:
        k_vars[0].constraint = keras.constraints.NonNeg()
        g_vars[0].constraint = gconstraints.NonNeg()
    return k_vars, g_vars


def _base_name(name):
    """A name without the ``_N`` Keras adds to an unnamed variable (Nadam's ``variable``): that
    suffix counts every unnamed variable this process created, not a property of the optimizer."""
    return re.sub(r"^variable(_\d+)?$", "variable", name)


def _as_numpy(value):
    value = value.numpy() if hasattr(value, "numpy") else value
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _assert_values(actual, expected, what, exact):
    actual, expected = _as_numpy(actual), _as_numpy(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (
        f"{what}: shape/dtype {actual.shape} {actual.dtype} != Keras' {expected.shape} {expected.dtype}")
    if exact and FUSED:
        assert np.array_equal(actual, expected), f"{what}: not bitwise equal, max |diff| {np.abs(actual - expected).max()}"
        return
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def _assert_optimizer_state(k_opt, g_opt, exact, step):
    k_vars, g_vars = k_opt.variables, g_opt.variables
    assert len(g_vars) == len(k_vars), [v.path for v in g_vars]
    for k, g in zip(k_vars, g_vars):
        assert _base_name(g.name) == _base_name(k.name), (g.name, k.name)
        assert _base_name(g.path.split("/")[-1]) == _base_name(k.path.split("/")[-1]), (g.path, k.path)
        assert tuple(g.shape) == tuple(k.shape), g.path
        _assert_values(g.numpy(), k.numpy(), f"step {step}: {g.path}", exact)
    assert int(g_opt.iterations) == int(_as_numpy(k_opt.iterations)), step
    _assert_values(np.asarray(g_opt.learning_rate), np.asarray(_as_numpy(k_opt.learning_rate), np.float32),
                   f"step {step}: learning_rate", exact=True)


def _run(class_name, kwargs, exact, *, seed=0, steps=STEPS, none_at=None, constraint=False, lr_change_at=None):
    rng = np.random.default_rng(seed)
    k_kwargs, g_kwargs = _split_kwargs(kwargs)
    k_opt = getattr(keras.optimizers, class_name)(name="opt", **k_kwargs)
    g_opt = getattr(goptimizers, class_name)(name="opt", **g_kwargs)
    k_vars, g_vars = _variables(rng, constraint)
    for step in range(steps):
        grads = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES.values()]
        if step == none_at:
            grads[1] = None
        if step == lr_change_at:
            k_opt.learning_rate = 0.0123
            g_opt.learning_rate = 0.0123
        k_opt.apply_gradients([(None if g is None else torch.tensor(g), v) for g, v in zip(grads, k_vars)])
        g_opt.apply(grads, g_vars)
        for k, g in zip(k_vars, g_vars):
            _assert_values(g.numpy(), k.numpy(), f"step {step}: {g.path}", exact)
        _assert_optimizer_state(k_opt, g_opt, exact, step)
    return k_opt, g_opt, k_vars, g_vars


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_steps_match_keras(case):
    _, class_name, kwargs, exact = case
    _run(class_name, kwargs, exact)


@pytest.mark.parametrize("class_name", ["Adam", "SGD", "RMSprop", "Nadam"])
def test_missing_gradient_is_skipped_as_keras_does(class_name):
    """A None gradient leaves its variable (and its slots) alone; the EMA still covers it."""
    kwargs = {"use_ema": True} if class_name != "SGD" else {"momentum": 0.9, "use_ema": True}
    _run(class_name, kwargs, exact=class_name == "SGD", none_at=2)


@pytest.mark.parametrize("class_name", ["SGD", "Adam"])
def test_constraint_applied_after_update(class_name):
    _, _, _, g_vars = _run(class_name, {"learning_rate": 0.5}, exact=class_name == "SGD", constraint=True)
    assert np.all(g_vars[0].numpy() >= 0)


@pytest.mark.parametrize("class_name", ["SGD", "Adam", "RMSprop"])
def test_learning_rate_set_between_steps(class_name):
    """What ReduceLROnPlateau does: ``optimizer.learning_rate = new`` takes effect at the next step."""
    _run(class_name, {}, exact=class_name == "SGD", lr_change_at=3)


def test_exclude_from_weight_decay_matches_keras():
    rng = np.random.default_rng(5)
    k_vars, g_vars = _variables(rng)
    k_opt = keras.optimizers.AdamW(name="opt", weight_decay=0.5, learning_rate=0.1)
    g_opt = goptimizers.AdamW(name="opt", weight_decay=0.5, learning_rate=0.1)
    k_opt.exclude_from_weight_decay(var_names=["bias"])
    g_opt.exclude_from_weight_decay(var_names=["bias"])
    for step in range(4):
        grads = [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES.values()]
        k_opt.apply_gradients(zip([torch.tensor(g) for g in grads], k_vars))
        g_opt.apply(grads, g_vars)
        for k, g in zip(k_vars, g_vars):
            _assert_values(g.numpy(), k.numpy(), f"step {step}: {g.path}", exact=False)


@pytest.mark.parametrize("class_name", ["Adam", "SGD"])
def test_finalize_variable_values_swaps_in_the_average(class_name):
    k_opt, g_opt, k_vars, g_vars = _run(class_name, {"use_ema": True}, exact=class_name == "SGD", steps=4)
    k_opt.finalize_variable_values(k_vars)
    g_opt.finalize_variable_values(g_vars)
    for k, g in zip(k_vars, g_vars):
        _assert_values(g.numpy(), k.numpy(), f"finalized {g.path}", exact=class_name == "SGD")


def test_scale_loss_matches_keras():
    k_opt = keras.optimizers.SGD(loss_scale_factor=4.0)
    g_opt = goptimizers.SGD(loss_scale_factor=4.0)
    loss = np.float32(0.37)
    assert float(g_opt.scale_loss(loss)) == float(_as_numpy(k_opt.scale_loss(torch.tensor(loss))))
    assert goptimizers.SGD().scale_loss(loss) is loss


# ------------------------------------------------------------------------------------------------
# Configs
# ------------------------------------------------------------------------------------------------
CONFIG_CASES = [(c[1], c[2]) for c in CASES] + [
    ("SGD", {"name": "custom"}), ("Adam", {"learning_rate": 0.25}),
    ("RMSprop", {"weight_decay": 0.01, "clipnorm": 2.0}),
]


@pytest.mark.parametrize("class_name, kwargs", CONFIG_CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CONFIG_CASES)])
def test_get_config_equals_keras(class_name, kwargs):
    k_kwargs, g_kwargs = _split_kwargs(kwargs)
    k_kwargs.setdefault("name", "opt")
    g_kwargs.setdefault("name", "opt")
    k_config = getattr(keras.optimizers, class_name)(**k_kwargs).get_config()
    g_config = getattr(goptimizers, class_name)(**g_kwargs).get_config()
    assert list(g_config) == list(k_config)
    assert g_config == k_config


@pytest.mark.parametrize("class_name, kwargs", CONFIG_CASES[:20], ids=[f"{c}-{i}" for i, (c, _) in enumerate(CONFIG_CASES[:20])])
def test_configs_cross_libraries(class_name, kwargs):
    k_kwargs, g_kwargs = _split_kwargs(kwargs)
    k_opt = getattr(keras.optimizers, class_name)(name="opt", **k_kwargs)
    g_opt = getattr(goptimizers, class_name)(name="opt", **g_kwargs)
    from_keras = getattr(goptimizers, class_name).from_config(k_opt.get_config())
    assert from_keras.get_config() == k_opt.get_config()
    from_gpuconv = getattr(keras.optimizers, class_name).from_config(g_opt.get_config())
    assert from_gpuconv.get_config() == g_opt.get_config()


@pytest.mark.parametrize("class_name", ["Adam", "SGD", "RMSprop", "Adadelta", "AdamW", "Adagrad", "Adamax",
                                        "Nadam", "Lion"])
def test_keras_serialized_dict_deserializes(class_name):
    """Keras' own dict (module 'keras.src.backend.torch.optimizers...', registered_name set) loads."""
    k_opt = getattr(keras.optimizers, class_name)(name="opt", learning_rate=0.02)
    g_opt = goptimizers.deserialize(keras.optimizers.serialize(k_opt))
    assert type(g_opt) is getattr(goptimizers, class_name)
    assert g_opt.get_config() == k_opt.get_config()
    assert keras.optimizers.deserialize(goptimizers.serialize(g_opt)).get_config() == k_opt.get_config()


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop", "adadelta", "adamw", "adagrad", "adamax", "nadam", "lion",
                                  "Adam", "SGD", "RMSprop", "ADAM"])
def test_get_by_name_equals_keras(name):
    k_opt, g_opt = keras.optimizers.get(name), goptimizers.get(name)
    assert type(g_opt).__name__ == type(k_opt).__name__.split(".")[-1]
    k_config, g_config = k_opt.get_config(), g_opt.get_config()
    k_config.pop("name")
    g_config.pop("name")
    assert g_config == k_config


def test_default_names_follow_keras():
    assert goptimizers.RMSprop().name.startswith("rm_sprop")
    assert keras.optimizers.RMSprop().name.startswith("rm_sprop")
    assert goptimizers.Adam().name.startswith("adam")


@pytest.mark.parametrize("class_name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam",
                                        "Lion"])
def test_constructor_signature_equals_keras(class_name):
    import inspect

    ours = inspect.signature(getattr(goptimizers, class_name))
    theirs = inspect.signature(getattr(keras.optimizers, class_name))
    assert [(p.name, p.default, p.kind) for p in ours.parameters.values()] == \
        [(p.name, p.default, p.kind) for p in theirs.parameters.values()]


@pytest.mark.parametrize("class_name", ["ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay",
                                        "InverseTimeDecay", "CosineDecay"])
def test_schedule_signature_equals_keras(class_name):
    import inspect

    ours = inspect.signature(getattr(goptimizers.schedules, class_name))
    theirs = inspect.signature(getattr(keras.optimizers.schedules, class_name))
    assert [(p.name, p.default) for p in ours.parameters.values()] == \
        [(p.name, p.default) for p in theirs.parameters.values()]


def test_variables_match_a_keras_optimizer_built_on_the_same_variables():
    """What ``.weights.h5`` stores as ``optimizer/vars/0..n``: same count, order, names, shapes."""
    for class_name, kwargs in [("Adam", {"amsgrad": True, "use_ema": True}), ("RMSprop", {"centered": True,
                               "momentum": 0.5, "gradient_accumulation_steps": 2}), ("Nadam", {}),
                               ("SGD", {}), ("SGD", {"momentum": 0.5}), ("Adagrad", {}), ("Adadelta", {}),
                               ("Adamax", {}), ("Lion", {}), ("AdamW", {})]:
        k_vars, g_vars = _variables(np.random.default_rng(0))
        k_opt = getattr(keras.optimizers, class_name)(name="opt", **kwargs)
        g_opt = getattr(goptimizers, class_name)(name="opt", **kwargs)
        k_opt.build(k_vars)
        g_opt.build(g_vars)
        assert [(_base_name(v.name), tuple(v.shape), str(v.dtype)) for v in g_opt.variables] == \
            [(_base_name(v.name), tuple(v.shape), str(v.dtype).replace("torch.", "")) for v in k_opt.variables], class_name
        for k, g in zip(k_opt.variables, g_opt.variables):
            np.testing.assert_array_equal(g.numpy(), _as_numpy(k.numpy()))


ERROR_CASES = [
    ("Adam", {"clipnorm": 1.0, "global_clipnorm": 2.0}),
    ("SGD", {"clipvalue": 1.0, "clipnorm": 2.0}),
    ("SGD", {"learning_rate": 1}),
    ("Adam", {"gradient_accumulation_steps": 1}),
    ("RMSprop", {"use_ema": True, "ema_momentum": -0.1}),
    ("Adam", {"use_ema": True, "ema_overwrite_frequency": 0.5}),
    ("Adam", {"bogus": 3}),
    ("SGD", {"momentum": 2.0}),
    ("SGD", {"momentum": 1}),
    ("Lion", {"beta_1": 1.5}),
    ("AdamW", {"weight_decay": None}),
]


@pytest.mark.parametrize("class_name, kwargs", ERROR_CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(ERROR_CASES)])
def test_argument_errors_equal_keras(class_name, kwargs):
    with pytest.raises(Exception) as theirs:
        getattr(keras.optimizers, class_name)(**kwargs)
    with pytest.raises(Exception) as ours:
        getattr(goptimizers, class_name)(**kwargs)
    assert type(ours.value) is type(theirs.value)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("identifier", ["adamx", "sgd2"])
def test_unknown_name_errors_like_keras(identifier):
    with pytest.raises(ValueError) as theirs:
        keras.optimizers.get(identifier)
    with pytest.raises(ValueError) as ours:
        goptimizers.get(identifier)
    assert "Could not interpret" in str(theirs.value) and "Could not interpret optimizer identifier" in str(ours.value)

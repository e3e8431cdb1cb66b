"""``gpuconv.optimizers`` on its own (no Keras needed): the engine contract of
``optimizer_update`` and its NumPy implementation, hand-computed steps, argument checks and their
messages, ``get``/``serialize``/``deserialize`` resolution, variables (order, saving, loading),
EMA, gradient accumulation, weight-decay exclusion, the fallback for engines without the fused
update, device arrays on the cuda-emulator, and determinism."""
import warnings

import numpy as np
import pytest

from conftest import EMULATOR_AVAILABLE, EMULATOR_REASON
from gpuconv import engines, optimizers
from gpuconv.cpu import engine as cpu
from gpuconv.cpu import optimizer_updates
from gpuconv.optimizers import RULES
from gpuconv.optimizers import optimizer as optimizer_module
from gpuconv.optimizers.rules import check_update
from gpuconv.variables import Variable

needs_emulator = pytest.mark.skipif(not EMULATOR_AVAILABLE, reason=f"cuda-emulator unavailable: {EMULATOR_REASON}")

ALL = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Lion"]


def _variables(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [Variable(rng.standard_normal((3, 2)).astype(dtype), name="kernel", path="dense/kernel"),
            Variable(rng.standard_normal((2,)).astype(dtype), name="bias", path="dense/bias")]


def _grads(rng, variables):
    return [rng.standard_normal(v.shape).astype(v.dtype) for v in variables]


def _train(optimizer, steps=5, seed=1, dtype=np.float32):
    variables = _variables(dtype=dtype)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        optimizer.apply(_grads(rng, variables), variables)
    return variables


# ------------------------------------------------------------------------------------------------
# The engine contract
# ------------------------------------------------------------------------------------------------
def test_optimizer_update_is_part_of_the_engine_protocol():
    assert "optimizer_update" in engines.OPERATIONS
    assert cpu.optimizer_update is not None and "optimizer_update" in cpu.__all__


def test_every_rule_has_array_code_slots_and_scalars():
    assert set(optimizer_updates._UPDATES) == set(RULES)
    for name, rule in RULES.items():
        assert isinstance(rule.slots, tuple) and isinstance(rule.scalars, tuple) and rule.formula, name
        for scalar in rule.scalars:
            assert scalar in rule.formula or scalar == "momentum", (name, scalar)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_numpy_engine_updates_in_place_and_leaves_grads_alone(rule):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(7).astype(np.float32)
    g = rng.standard_normal(7).astype(np.float32)
    slots = [np.abs(rng.standard_normal(7)).astype(np.float32) for _ in RULES[rule].slots]
    scalars = {name: 0.25 for name in RULES[rule].scalars}
    before_p, before_g, before_slots = p.copy(), g.copy(), [s.copy() for s in slots]
    result = cpu.optimizer_update(rule, scalars, [p], [g], [slots], [0.0])
    assert result is None
    assert np.array_equal(g, before_g)
    assert not np.array_equal(p, before_p)
    if slots:
        assert any(not np.array_equal(a, b) for a, b in zip(slots, before_slots))


@pytest.mark.parametrize("rule", sorted(RULES))
def test_pieced_update_is_bitwise_the_whole_array_update(rule):
    """The NumPy engine updates large params in cache-sized pieces on its threads; every rule is
    elementwise, so the result must be bitwise that of one pass over each whole array (a
    non-contiguous param, updated whole, and a small one ride along; decay included)."""
    from optimizer_cases import initial_slots, scalars_for

    rng = np.random.default_rng(3)
    shapes = [(3 * optimizer_updates._PIECE_ELEMENTS + 5,), (41, 7), (2,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    params[1] = np.asfortranarray(params[1])
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    slots = [initial_slots(rule, s, np.float32, rng) for s in shapes]
    decays = [0.01, 0.0, 0.02]
    scalars = scalars_for(rule, np.float32)
    expected_p, expected_slots = [p.copy() for p in params], [[a.copy() for a in s] for s in slots]
    optimizer_updates.apply_rule(np, rule, scalars, expected_p, grads, expected_slots, decays)
    cpu.optimizer_update(rule, scalars, params, grads, slots, decays)
    for got, want in zip(params + [a for s in slots for a in s], expected_p + [a for s in expected_slots for a in s]):
        assert got.tobytes() == want.tobytes()
    assert len(optimizer_updates._pieces(params[0], grads[0], slots[0])) == 4  # the large one was pieced


def test_decay_multiplies_by_one_minus_decay_before_the_rule():
    p = np.array([1.0, -2.0, 3.0], np.float32)
    g = np.zeros(3, np.float32)
    cpu.optimizer_update("sgd", {"learning_rate": 0.1}, [p], [g], [[]], [0.25])
    assert np.array_equal(p, np.array([0.75, -1.5, 2.25], np.float32))


def test_sgd_rule_is_one_fused_multiply_add():
    """``p = fma(g, -lr, p)``: one rounding (float64 evaluation), not two."""
    rng = np.random.default_rng(4)
    p = rng.standard_normal(4096).astype(np.float32)
    g = rng.standard_normal(4096).astype(np.float32)
    lr = float(np.float32(0.01))
    expected = (p.astype(np.float64) - g.astype(np.float64) * lr).astype(np.float32)
    two_roundings = p - g * np.float32(lr)
    assert not np.array_equal(expected, two_roundings)  # the distinction is visible at this size
    cpu.optimizer_update("sgd", {"learning_rate": lr}, [p], [g], [[]], [0.0])
    assert np.array_equal(p, expected)


@pytest.mark.parametrize("call, message", [
    (dict(rule="adamx"), "Argument `rule` must be one of"),
    (dict(scalars={"learning_rate": 0.1, "extra": 1.0}), "takes the scalars"),
    (dict(grads=[np.zeros(2, np.float32)]), "Gradient 0 has shape"),
    (dict(grads=[np.zeros(3, np.float64)]), "Gradient 0 has shape"),
    (dict(slots=[[]]), "keeps the slots"),
    (dict(slots=[[np.zeros(2, np.float32)]]), "Slot 'momentum' of param 0"),
    (dict(decays=[]), "one of each is needed per param"),
])
def test_malformed_update_calls_are_refused_before_anything_changes(call, message):
    p = np.ones(3, np.float32)
    arguments = dict(rule="sgd_momentum", scalars={"learning_rate": 0.1, "momentum": 0.9}, params=[p],
                     grads=[np.ones(3, np.float32)], slots=[[np.zeros(3, np.float32)]], decays=[0.0])
    arguments.update(call)
    with pytest.raises(ValueError, match=message):
        cpu.optimizer_update(**arguments)
    assert np.array_equal(p, np.ones(3, np.float32))
    with pytest.raises(ValueError, match=message):
        check_update(*arguments.values())


# ------------------------------------------------------------------------------------------------
# Hand-computed steps
# ------------------------------------------------------------------------------------------------
def test_one_sgd_step_is_w_minus_lr_g():
    variables = _variables()
    before = [v.numpy() for v in variables]
    grads = _grads(np.random.default_rng(2), variables)
    optimizers.SGD(learning_rate=0.1).apply(grads, variables)
    for v, w, g in zip(variables, before, grads):
        np.testing.assert_allclose(v.numpy(), w - np.float32(0.1) * g, rtol=1e-7, atol=1e-7)


def test_first_adam_step_moves_each_weight_by_about_lr():
    """Bias correction: after one step m_hat / sqrt(v_hat) = sign(g), so |dw| = lr (up to epsilon)."""
    variables = _variables()
    before = [v.numpy() for v in variables]
    optimizers.Adam(learning_rate=0.01).apply(_grads(np.random.default_rng(2), variables), variables)
    for v, w in zip(variables, before):
        np.testing.assert_allclose(np.abs(v.numpy() - w), 0.01, rtol=1e-4)


@pytest.mark.parametrize("kwargs, rule", [
    ({}, "rmsprop"), ({"momentum": 0.5}, "rmsprop_momentum"), ({"centered": True}, "rmsprop_centered"),
    ({"centered": True, "momentum": 0.1}, "rmsprop_centered_momentum"),
])
def test_rmsprop_options_pick_their_rule(kwargs, rule):
    assert optimizers.RMSprop(**kwargs)._rule() == rule


@pytest.mark.parametrize("kwargs, rule", [({}, "sgd"), ({"nesterov": True}, "sgd"),
                                          ({"momentum": 0.5}, "sgd_momentum"),
                                          ({"momentum": 0.5, "nesterov": True}, "sgd_nesterov")])
def test_sgd_options_pick_their_rule(kwargs, rule):
    assert optimizers.SGD(**kwargs)._rule() == rule


# ------------------------------------------------------------------------------------------------
# Arguments
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("class_name", ALL)
def test_only_one_clipping_argument(class_name):
    with pytest.raises(ValueError, match="Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                                         "Received: clipnorm=1.0, clipvalue=0.5, global_clipnorm=None"):
        getattr(optimizers, class_name)(clipnorm=1.0, clipvalue=0.5)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"learning_rate": 1}, ValueError, "Argument `learning_rate` should be float.*Received instead: learning_rate=1"),
    ({"learning_rate": "fast"}, ValueError, "learning_rate=fast"),
    ({"gradient_accumulation_steps": 1}, ValueError, "must be an integer >= 2. Received: gradient_accumulation_steps=1"),
    ({"use_ema": True, "ema_momentum": 1.5}, ValueError, r"must be in the range \[0, 1\]. Received: ema_momentum=1.5"),
    ({"use_ema": True, "ema_overwrite_frequency": 2.5}, ValueError, "Received: ema_overwrite_frequency=2.5"),
    ({"use_ema": True, "ema_overwrite_frequency": -1}, ValueError, "Received: ema_overwrite_frequency=-1"),
    ({"loss_scale_factor": "big"}, TypeError, "Argument `loss_scale_factor` must be a float or None"),
    ({"bogus": 1}, ValueError, r"Argument\(s\) not recognized: \{'bogus': 1\}"),
])
def test_bad_base_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        optimizers.Adam(**kwargs)


def test_decay_argument_warns_and_is_ignored():
    with pytest.warns(UserWarning, match="Argument `decay` is no longer supported"):
        optimizers.SGD(decay=0.1)


@pytest.mark.parametrize("factory, message", [
    (lambda: optimizers.SGD(momentum=1), r"`momentum` must be a float between \[0, 1\]"),
    (lambda: optimizers.SGD(momentum=-0.5), r"`momentum` must be a float between \[0, 1\]"),
    (lambda: optimizers.Lion(beta_1=0.0), r"Argument `beta_1` must be in the \[0, 1\] range.*Received: beta_1=0.0"),
    (lambda: optimizers.AdamW(weight_decay=None), "Argument `weight_decay` must be a float. Received: weight_decay=None"),
])
def test_bad_optimizer_arguments(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


# ------------------------------------------------------------------------------------------------
# get / serialize / deserialize
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [("adam", "Adam"), ("Adam", "Adam"), ("SGD", "SGD"), ("sgd", "SGD"),
                                       ("rmsprop", "RMSprop"), ("RMSPROP", "RMSprop"), ("adamw", "AdamW"),
                                       ("nadam", "Nadam"), ("lion", "Lion"), ("adagrad", "Adagrad"),
                                       ("adadelta", "Adadelta"), ("adamax", "Adamax")])
def test_get_by_name(name, cls):
    assert type(optimizers.get(name)) is getattr(optimizers, cls)


def test_get_instance_dict_and_none():
    adam = optimizers.Adam(learning_rate=0.5)
    assert optimizers.get(adam) is adam
    assert optimizers.get(None) is None
    again = optimizers.get(optimizers.serialize(adam))
    assert type(again) is optimizers.Adam and again.get_config() == adam.get_config()


@pytest.mark.parametrize("identifier", ["adamx", "Optimizer2", 3, {"class_name": "os.system", "config": {}}])
def test_unknown_optimizers_are_refused(identifier):
    with pytest.raises(ValueError, match="Could not interpret optimizer identifier"):
        optimizers.get(identifier)


def test_config_naming_another_module_is_never_imported():
    config = {"module": "collections", "class_name": "OrderedDict", "config": {}, "registered_name": None}
    with pytest.raises(ValueError, match="Could not interpret optimizer identifier"):
        optimizers.deserialize(config)


def test_custom_optimizer_resolves_only_through_custom_objects():
    class Custom(optimizers.SGD):
        pass

    config = optimizers.serialize(Custom(learning_rate=0.5))
    with pytest.raises(ValueError, match="Could not interpret optimizer identifier"):
        optimizers.deserialize(config)
    assert type(optimizers.deserialize(config, custom_objects={"Custom": Custom})) is Custom


def test_non_optimizer_custom_object_is_refused():
    config = {"module": None, "class_name": "Thing", "config": {}, "registered_name": "Thing"}

    class Thing:
        @classmethod
        def from_config(cls, config):
            return cls()

    with pytest.raises(ValueError, match="Could not interpret optimizer identifier"):
        optimizers.deserialize(config, custom_objects={"Thing": Thing})


def test_schedule_in_config_round_trips():
    schedule = optimizers.schedules.CosineDecay(0.1, 100, warmup_target=0.2, warmup_steps=10)
    adam = optimizers.Adam(learning_rate=schedule)
    config = adam.get_config()
    assert config["learning_rate"]["class_name"] == "CosineDecay"
    assert config["learning_rate"]["module"] == "keras.optimizers.schedules"
    again = optimizers.Adam.from_config(config)
    assert isinstance(again._learning_rate, optimizers.schedules.CosineDecay)
    assert again.get_config() == config


# ------------------------------------------------------------------------------------------------
# Variables, iterations, learning rate
# ------------------------------------------------------------------------------------------------
def test_variables_in_keras_order_with_keras_names():
    opt = optimizers.Adam(name="opt", amsgrad=True, use_ema=True, gradient_accumulation_steps=2)
    opt.build(_variables())
    assert [v.path for v in opt.variables] == [
        "opt/iteration", "opt/learning_rate", "opt/dense_kernel_average", "opt/dense_bias_average",
        "opt/dense_kernel_gradient_accumulator", "opt/dense_bias_gradient_accumulator",
        "opt/dense_kernel_momentum", "opt/dense_kernel_velocity", "opt/dense_bias_momentum", "opt/dense_bias_velocity",
        "opt/dense_kernel_velocity_hat", "opt/dense_bias_velocity_hat",
    ]
    assert all(not v.trainable for v in opt.variables)
    assert opt.variables[0].dtype == "int32" and opt.variables[1].dtype == "float32"


def test_adagrad_accumulators_start_at_initial_value():
    opt = optimizers.Adagrad(initial_accumulator_value=0.3)
    opt.build(_variables())
    assert np.all(opt.variables[2].numpy() == np.float32(0.3))


def test_iterations_is_int_able_and_numpy_able():
    opt = optimizers.SGD()
    _train(opt, steps=3)
    assert int(opt.iterations) == 3 and opt.iterations.numpy() == 3 and np.asarray(opt.iterations) == 3
    accumulating = optimizers.SGD(gradient_accumulation_steps=2)
    _train(accumulating, steps=5)
    assert int(accumulating.iterations) == 2 and int(accumulating._iterations) == 5


def test_learning_rate_reads_and_sets():
    opt = optimizers.Adam(learning_rate=0.01)
    assert opt.learning_rate == np.float32(0.01)
    opt.learning_rate = 0.5
    assert opt.learning_rate == np.float32(0.5)
    assert opt.get_config()["learning_rate"] == float(np.float32(0.5))
    opt.learning_rate = np.float64(0.25)
    assert opt.learning_rate == np.float32(0.25)
    with pytest.raises(ValueError, match="Argument `learning_rate` must be a real number"):
        opt.learning_rate = "slow"


def test_schedule_learning_rate_follows_iterations_and_is_not_settable():
    schedule = optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)
    opt = optimizers.SGD(learning_rate=schedule)
    assert [v.path.split("/")[-1] for v in opt.variables] == ["iteration"]
    _train(opt, steps=4)
    assert opt.learning_rate == schedule(4)
    with pytest.raises(TypeError, match="its learning rate is not settable"):
        opt.learning_rate = 0.1


def test_setting_a_schedule_untracks_the_learning_rate_variable():
    opt = optimizers.SGD()
    opt.learning_rate = optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)
    assert [v.path.split("/")[-1] for v in opt.variables] == ["iteration"]
    assert opt.learning_rate == np.float32(0.1)


def test_callable_learning_rate():
    opt = optimizers.SGD(learning_rate=lambda: 0.5)
    variables = _variables()
    before = variables[1].numpy()
    opt.apply([np.zeros((3, 2), np.float32), np.ones(2, np.float32)], variables)
    np.testing.assert_array_equal(variables[1].numpy(), before - np.float32(0.5))


def test_save_and_load_own_variables_round_trip():
    opt = optimizers.Nadam(name="opt")
    _train(opt)
    store = {}
    opt.save_own_variables(store)
    assert sorted(store, key=int) == [str(i) for i in range(len(opt.variables))]
    fresh = optimizers.Nadam(name="opt")
    fresh.build(_variables())
    fresh.load_own_variables(store)
    for a, b in zip(opt.variables, fresh.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    unbuilt = optimizers.Nadam()
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):
        unbuilt.load_own_variables(store)


def test_set_weights_checks_shapes():
    opt = optimizers.SGD(momentum=0.5)
    with pytest.raises(ValueError, match="has not yet been built"):
        opt.set_weights([])
    opt.build(_variables())
    with pytest.raises(ValueError, match="not compatible with provided weight shape"):
        opt.set_weights([np.array(0), np.array(0.1), np.zeros((2, 2))])


# ------------------------------------------------------------------------------------------------
# apply: edge cases
# ------------------------------------------------------------------------------------------------
def test_apply_without_variables_needs_a_built_optimizer():
    opt = optimizers.SGD()
    with pytest.raises(ValueError, match="must already be built on a list of variables"):
        opt.apply([np.zeros(2, np.float32)])
    variables = _variables()
    opt.build(variables)
    with pytest.raises(ValueError, match="Received a list of 1 gradients, but the optimizer is tracking 2"):
        opt.apply([np.zeros((3, 2), np.float32)])
    opt.apply(_grads(np.random.default_rng(0), variables))
    assert int(opt.iterations) == 1


def test_unknown_variable_is_refused():
    opt = optimizers.SGD()
    opt.build(_variables())
    stranger = Variable(np.zeros(2, np.float32), name="x", path="other/x")
    with pytest.raises(ValueError, match="Unknown variable"):
        opt.apply([np.zeros(2, np.float32)], [stranger])


def test_empty_gradient_list_is_a_no_op():
    opt = optimizers.SGD()
    opt.apply([], [])
    assert int(opt.iterations) == 0


def test_none_gradients():
    opt = optimizers.SGD()
    variables = _variables()
    before = variables[0].numpy()
    with pytest.warns(UserWarning, match=r"Gradients do not exist for variables \['dense/kernel'\]"):
        opt.apply([None, np.ones(2, np.float32)], variables)
    np.testing.assert_array_equal(variables[0].numpy(), before)
    with pytest.raises(ValueError, match="No gradients provided for any variable."):
        opt.apply([None, None], variables)


def test_apply_gradients_returns_iterations():
    opt = optimizers.SGD()
    variables = _variables()
    result = opt.apply_gradients(zip(_grads(np.random.default_rng(0), variables), variables))
    assert int(result) == 1


def test_gradient_accumulation_updates_every_n_steps_with_the_mean():
    variables = _variables()
    before = [v.numpy() for v in variables]
    opt = optimizers.SGD(learning_rate=1.0, gradient_accumulation_steps=2)
    g1 = [np.full(v.shape, 1.0, np.float32) for v in variables]
    g2 = [np.full(v.shape, 3.0, np.float32) for v in variables]
    opt.apply(g1, variables)
    for v, w in zip(variables, before):
        np.testing.assert_array_equal(v.numpy(), w)
    opt.apply(g2, variables)
    for v, w in zip(variables, before):
        np.testing.assert_allclose(v.numpy(), w - 2.0, rtol=1e-6)
    assert all(np.all(a.numpy() == 0) for a in opt._accumulators)


def test_exclude_from_weight_decay_by_list_and_name():
    variables = _variables()
    before = [v.numpy() for v in variables]
    zero = [np.zeros(v.shape, np.float32) for v in variables]
    opt = optimizers.SGD(learning_rate=0.5, weight_decay=0.2)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.apply(zero, variables)
    np.testing.assert_array_equal(variables[1].numpy(), before[1])
    np.testing.assert_array_equal(variables[0].numpy(), before[0] * (np.float32(1) - np.float32(0.2) * np.float32(0.5)))
    by_list = optimizers.SGD(learning_rate=0.5, weight_decay=0.2)
    others = _variables(seed=3)
    by_list.exclude_from_weight_decay(var_list=[others[0]])
    kept = others[0].numpy()
    by_list.apply(zero, others)
    np.testing.assert_array_equal(others[0].numpy(), kept)


def test_ema_and_finalize():
    opt = optimizers.SGD(learning_rate=0.1, use_ema=True, ema_momentum=0.5)
    variables = _variables()
    first = [v.numpy() for v in variables]
    grads = [np.ones(v.shape, np.float32) for v in variables]
    opt.apply(grads, variables)  # the first step copies the variables (momentum 0)
    for average, v in zip(opt._averages, variables):
        np.testing.assert_array_equal(average.numpy(), v.numpy())
    opt.apply(grads, variables)
    expected = [np.float32(0.5) * (w - np.float32(0.1)) + np.float32(0.5) * (w - np.float32(0.2)) for w in first]
    for average, e in zip(opt._averages, expected):
        np.testing.assert_allclose(average.numpy(), e, rtol=1e-6)
    opt.finalize_variable_values(variables)
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-6)
    with pytest.raises(ValueError, match="to override does not match the length"):
        opt.finalize_variable_values(variables[:1])


def test_constraint_is_applied_after_the_update():
    from gpuconv import constraints

    variables = _variables()
    variables[0].constraint = constraints.NonNeg()
    optimizers.SGD(learning_rate=10.0).apply([np.ones((3, 2), np.float32), np.ones(2, np.float32)], variables)
    assert np.all(variables[0].numpy() == 0)  # every kernel entry went negative, then was clipped to 0
    assert np.all(variables[1].numpy() < 0)


def test_loss_scale_factor_divides_gradients_and_scales_loss():
    grads = [np.full((3, 2), 2.0, np.float32), np.full(2, -4.0, np.float32)]
    scaled_vars, plain_vars = _variables(), _variables()
    optimizers.SGD(learning_rate=0.1, loss_scale_factor=4.0).apply(grads, scaled_vars)
    optimizers.SGD(learning_rate=0.1).apply([g / np.float32(4.0) for g in grads], plain_vars)
    for a, b in zip(scaled_vars, plain_vars):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(scaled_vars[0].numpy(), _variables()[0].numpy())
    assert float(optimizers.SGD(loss_scale_factor=4.0).scale_loss(np.float32(2.0))) == 8.0


@pytest.mark.parametrize("class_name", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_every_optimizer_keeps_dtypes(class_name, dtype):
    opt = getattr(optimizers, class_name)()
    variables = _train(opt, steps=3, dtype=dtype)
    assert all(v.numpy().dtype == dtype for v in variables)
    assert all(np.all(np.isfinite(v.numpy())) for v in variables)
    assert all(v.numpy().dtype == dtype for v in opt.variables[2:] if v.shape != ())


# ------------------------------------------------------------------------------------------------
# Engines and devices
# ------------------------------------------------------------------------------------------------
class _EngineWithoutUpdate:
    NAME = "stand-in"


@pytest.mark.parametrize("class_name", ALL)
def test_engine_without_fused_update_falls_back_to_the_same_rule(class_name, monkeypatch):
    reference = _train(getattr(optimizers, class_name)(weight_decay=0.01))
    monkeypatch.setattr(optimizer_module, "_engine_for", lambda grads: _EngineWithoutUpdate())
    fallback = _train(getattr(optimizers, class_name)(weight_decay=0.01))
    for a, b in zip(reference, fallback):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_one_engine_call_per_step(monkeypatch):
    calls = []
    real = cpu.optimizer_update

    class Recording:
        def optimizer_update(self, *args):
            calls.append(args[0])
            real(*args)

    monkeypatch.setattr(optimizer_module, "_engine_for", lambda grads: Recording())
    _train(optimizers.Adam(), steps=3)
    assert calls == ["adam", "adam", "adam"]


@needs_emulator
@pytest.mark.parametrize("class_name", ["SGD", "Adam", "RMSprop", "Nadam"])
def test_emulator_arrays_update_where_they_are(class_name):
    from gpuconv.emulator import xp

    kwargs = {"use_ema": True, "clipnorm": 1.0, "gradient_accumulation_steps": 2}
    host = _train(getattr(optimizers, class_name)(**kwargs))
    variables = _variables()
    opt = getattr(optimizers, class_name)(**kwargs)
    rng = np.random.default_rng(1)
    for _ in range(5):
        grads = [xp.asarray(g) for g in _grads(rng, variables)]
        opt.apply(grads, variables)
    for a, b in zip(host, variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("class_name", ALL)
def test_two_runs_are_bitwise_identical(class_name):
    kwargs = {"use_ema": True, "global_clipnorm": 1.0, "weight_decay": 0.01}
    a = _train(getattr(optimizers, class_name)(**kwargs), steps=6)
    b = _train(getattr(optimizers, class_name)(**kwargs), steps=6)
    for x, y in zip(a, b):
        assert np.array_equal(x.numpy(), y.numpy())


def test_no_warnings_on_ordinary_steps():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _train(optimizers.Adam(clipnorm=1.0), steps=2)


@needs_emulator
@pytest.mark.parametrize("class_name", ["Adam", "SGD", "Nadam", "RMSprop"])
def test_cuda_emulator_backend_steps_equal_numpy(class_name, restore_backend):
    """On the cuda-emulator backend the step runs on the CUDA engine's ``optimizer_update`` (or the
    array-module fallback while that is absent); either way it is the NumPy engine's result."""
    import gpuconv
    from gpuconv.emulator import xp

    kwargs = {"weight_decay": 0.1, "use_ema": True, "clipnorm": 1.0}
    if class_name == "SGD":
        kwargs["momentum"] = 0.9
    host = _train(getattr(optimizers, class_name)(**kwargs), steps=4)
    gpuconv.set_backend("cuda-emulator")
    variables = _variables()
    opt = getattr(optimizers, class_name)(**kwargs)
    rng = np.random.default_rng(1)
    for _ in range(4):
        opt.apply([xp.asarray(g) for g in _grads(rng, variables)], variables)
    for a, b in zip(host, variables):
        np.testing.assert_array_equal(b.numpy(), a.numpy())


@pytest.mark.parametrize("learning_rate", [
    {"module": "builtins", "class_name": "function", "config": "eval", "registered_name": "function"},
    {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"},
    {"module": "keras.optimizers.schedules", "class_name": "Sequential", "config": {}, "registered_name": None},
])
def test_learning_rate_in_a_config_resolves_only_schedules(learning_rate):
    config = optimizers.Adam().get_config()
    config["learning_rate"] = learning_rate
    with pytest.raises(ValueError, match="Could not interpret learning rate schedule identifier"):
        optimizers.Adam.from_config(config)

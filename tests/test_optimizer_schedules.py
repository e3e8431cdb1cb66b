"""``gpuconv.optimizers.schedules`` against Keras 3.15's learning-rate schedules (torch backend):
values at a range of steps (float32, Keras' order of operations: equal to float32 rounding, the
only freedom being libm's ``pow``/``cos`` against torch's, so 2 ulps are allowed), configs,
serialization both ways, and argument errors."""
import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras", reason="schedule parity needs keras>=3.15 with the torch backend",
                            exc_type=ImportError)

from gpuconv.optimizers import schedules  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

CASES = [
    ("ExponentialDecay", (0.1, 10, 0.96), {}),
    ("ExponentialDecay", (0.5, 3, 0.5), {"staircase": True}),
    ("ExponentialDecay", (1.0, 7, 1.5), {"name": "grow"}),
    ("InverseTimeDecay", (0.1, 5, 0.5), {}),
    ("InverseTimeDecay", (0.2, 4, 2.0), {"staircase": True}),
    ("PiecewiseConstantDecay", ([5, 10, 20], [1.0, 0.5, 0.1, 0.05]), {}),
    ("PiecewiseConstantDecay", ([3], [0.3, 0.01]), {"name": "two"}),
    ("PolynomialDecay", (0.1, 10), {}),
    ("PolynomialDecay", (0.1, 10), {"end_learning_rate": 0.01, "power": 0.5}),
    ("PolynomialDecay", (0.1, 7), {"cycle": True, "power": 2.0}),
    ("PolynomialDecay", (1.0, 3), {"cycle": True, "end_learning_rate": 0.5}),
    ("CosineDecay", (0.1, 20), {}),
    ("CosineDecay", (0.1, 15), {"alpha": 0.2}),
    ("CosineDecay", (0.0, 10), {"warmup_target": 0.3, "warmup_steps": 5}),
    ("CosineDecay", (0.05, 8), {"alpha": 0.1, "warmup_target": 0.2, "warmup_steps": 4}),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)]
STEPS = list(range(0, 45)) + [100, 1000, 123456]


def _pair(name, args, kwargs):
    return getattr(keras.optimizers.schedules, name)(*args, **kwargs), getattr(schedules, name)(*args, **kwargs)


def _keras_value(schedule, step):
    import torch

    value = schedule(torch.tensor(step, dtype=torch.int32))
    return np.asarray(value.detach().numpy() if hasattr(value, "detach") else value)


@pytest.mark.parametrize("name, args, kwargs", CASES, ids=IDS)
def test_values_equal_keras(name, args, kwargs):
    k, g = _pair(name, args, kwargs)
    expected = np.array([_keras_value(k, s) for s in STEPS], dtype=np.float32)
    actual = np.array([g(s) for s in STEPS])
    assert actual.dtype == np.float32
    np.testing.assert_array_max_ulp(actual, expected, maxulp=2)


@pytest.mark.parametrize("name, args, kwargs", CASES, ids=IDS)
def test_configs_equal_keras_and_round_trip(name, args, kwargs):
    k, g = _pair(name, args, kwargs)
    assert g.get_config() == k.get_config()
    assert list(g.get_config()) == list(k.get_config())
    again = type(g).from_config(g.get_config())
    assert again.get_config() == g.get_config()
    assert schedules.serialize(g) == keras.optimizers.schedules.serialize(k)
    from_keras = schedules.deserialize(keras.optimizers.schedules.serialize(k))
    assert type(from_keras) is type(g) and from_keras.get_config() == k.get_config()
    to_keras = keras.optimizers.schedules.deserialize(schedules.serialize(g))
    assert to_keras.get_config() == g.get_config()


def test_step_accepts_ints_numpy_and_arrays():
    g = schedules.ExponentialDecay(0.1, 10, 0.5)
    assert g(10) == g(np.int64(10)) == g(np.array(10, dtype=np.int32)) == np.float32(0.05)


@pytest.mark.parametrize("name", ["ExponentialDecay", "InverseTimeDecay", "PolynomialDecay", "CosineDecay"])
@pytest.mark.parametrize("decay_steps", [0, -3])
def test_decay_steps_must_be_positive(name, decay_steps):
    args = (0.1, decay_steps, 0.5) if name in ("ExponentialDecay", "InverseTimeDecay") else (0.1, decay_steps)
    with pytest.raises(ValueError, match=f"Argument `decay_steps` must be > 0. Received: decay_steps={decay_steps}"):
        getattr(schedules, name)(*args)


def test_piecewise_lengths_must_agree():
    with pytest.raises(ValueError, match="The length of boundaries should be 1 less than the length of values"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])


def test_base_class_must_be_overridden():
    class Incomplete(schedules.LearningRateSchedule):
        pass

    with pytest.raises(NotImplementedError, match="must override `__call__"):
        Incomplete()(1)
    with pytest.raises(NotImplementedError, match="must override `get_config"):
        Incomplete().get_config()


def test_custom_schedule_resolves_only_through_custom_objects():
    class Halving(schedules.LearningRateSchedule):
        def __call__(self, step):
            return np.float32(0.5) ** np.float32(step)

        def get_config(self):
            return {}

    config = {"module": None, "class_name": "Halving", "config": {}, "registered_name": "Halving"}
    with pytest.raises(ValueError, match="Could not interpret learning rate schedule identifier"):
        schedules.deserialize(config)
    assert isinstance(schedules.deserialize(config, custom_objects={"Halving": Halving}), Halving)


def test_config_naming_another_module_is_refused():
    config = {"module": "os", "class_name": "system", "config": {}, "registered_name": None}
    with pytest.raises(ValueError, match="Could not interpret"):
        schedules.deserialize(config)

"""Keras 3.15's learning-rate schedules (``keras.optimizers.schedules``).

Why host NumPy in float32: an optimizer evaluates its schedule once per step on the host (the
value becomes a scalar of the update rule), and Keras computes each schedule in the dtype of
``initial_learning_rate`` converted to a tensor, float32; doing the same arithmetic in the same
order in ``np.float32`` gives Keras' values to rounding. A schedule returns a 0-d ``np.float32``.
"""
import math

import numpy as np

from ..serialization import deserialize_object, registry, serialize_object

_F = np.float32
_MODULE = "keras.optimizers.schedules"
_KIND = "learning rate schedule"


def _step(step):
    """The optimizer's step as float32 (an int, a NumPy scalar or a 0-d array/Variable)."""
    return _F(np.asarray(step).item())


def _check_decay_steps(value, argument="decay_steps"):
    if value <= 0:
        raise ValueError(f"Argument `{argument}` must be > 0. Received: {argument}={value}")


class LearningRateSchedule:
    """The base class: subclasses implement ``__call__(step)`` and ``get_config()``."""

    def __call__(self, step):
        raise NotImplementedError(
            f"Learning rate schedule '{self.__class__.__name__}' must override `__call__(self, step)`."
        )

    def get_config(self):
        raise NotImplementedError(
            f"Learning rate schedule '{self.__class__.__name__}' must override `get_config()` in order to "
            "be serializable."
        )

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class _Configured(LearningRateSchedule):
    """A schedule whose config is its constructor arguments, ``_CONFIG``, in Keras' key order."""

    _CONFIG = ()

    def _keep(self, arguments):
        for name in self._CONFIG:
            setattr(self, name, arguments[name])
        if "decay_steps" in self._CONFIG:
            _check_decay_steps(self.decay_steps)

    def get_config(self):
        return {name: getattr(self, name) for name in self._CONFIG}


class _StepDecay(_Configured):
    """The shared shape of ExponentialDecay and InverseTimeDecay: ``p = step / decay_steps``,
    floored when ``staircase``, then the schedule's own ``_decay(initial, rate, p)``."""

    _CONFIG = ("initial_learning_rate", "decay_steps", "decay_rate", "staircase", "name")

    def __call__(self, step):
        p = _step(step) / _F(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        with np.errstate(over="ignore"):  # a growing rate overflows to inf, as in Keras, silently
            return self._decay(_F(self.initial_learning_rate), _F(self.decay_rate), p)


class ExponentialDecay(_StepDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        self._keep(locals())

    @staticmethod
    def _decay(initial, rate, p):
        return initial * rate ** p


class InverseTimeDecay(_StepDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        self._keep(locals())

    @staticmethod
    def _decay(initial, rate, p):
        return initial / (_F(1) + rate * p)


class PiecewiseConstantDecay(_Configured):
    """``values[i]`` for ``boundaries[i-1] < step <= boundaries[i]`` (Keras' inclusive upper
    bounds; the first value up to and including the first boundary)."""

    _CONFIG = ("boundaries", "values", "name")

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of values. Received: "
                f"boundaries={boundaries} of length {len(boundaries)}, and values={values} of length {len(values)}."
            )
        self._keep(locals())

    def __call__(self, step):
        step = np.asarray(step).item()
        dtype = np.asarray(self.values[0]).dtype
        dtype = _F if dtype == np.float64 else dtype.type  # Python floats become float32 tensors
        edges = [-math.inf, *self.boundaries, math.inf]
        for low, high, value in zip(edges[:-1], edges[1:], self.values):
            if low < step <= high:
                return dtype(value)
        return dtype(0)  # a NaN step falls in no interval, as Keras' sum of masks gives 0


class PolynomialDecay(_Configured):
    """``(initial - end) * (1 - step / decay_steps) ** power + end``; with ``cycle`` the decay
    steps grow to the next multiple of ``decay_steps`` instead of the step being capped."""

    _CONFIG = ("initial_learning_rate", "decay_steps", "end_learning_rate", "power", "cycle", "name")

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                 name="PolynomialDecay"):
        self._keep(locals())

    def __call__(self, step):
        initial = _F(self.initial_learning_rate)
        end = _F(self.end_learning_rate)
        step = _step(step)
        decay_steps = _F(self.decay_steps)
        if self.cycle:
            multiplier = _F(1.0) if step == 0 else np.ceil(step / _F(self.decay_steps))
            decay_steps = decay_steps * multiplier
        else:
            step = min(step, decay_steps)
        p = step / decay_steps
        return (initial - end) * (_F(1) - p) ** _F(self.power) + end


class CosineDecay(_Configured):
    """Cosine decay from ``initial_learning_rate`` (or, with ``warmup_target``, a linear warmup
    over ``warmup_steps`` to it and the decay from there) down to ``alpha`` times that rate."""

    _CONFIG = ("initial_learning_rate", "decay_steps", "alpha", "name", "warmup_target", "warmup_steps")

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        self._keep(locals())

    def _decay(self, step, decay_steps, decay_from):
        completed = step / decay_steps
        cosine = _F(0.5) * (_F(1.0) + np.cos(_F(math.pi) * completed))
        decayed = _F(1 - self.alpha) * cosine + _F(self.alpha)
        return decay_from * decayed

    def __call__(self, step):
        initial = _F(self.initial_learning_rate)
        decay_steps = _F(self.decay_steps)
        step = _step(step)
        if self.warmup_target is None:
            return self._decay(min(step, decay_steps), decay_steps, initial)
        target = _F(self.warmup_target)
        warmup_steps = _F(self.warmup_steps)
        step = min(step, decay_steps + warmup_steps)
        if step < warmup_steps:
            return (target - initial) * (step / warmup_steps) + initial
        return self._decay(step - warmup_steps, decay_steps, target)


ALL_OBJECTS_DICT = registry(
    [LearningRateSchedule, ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay, InverseTimeDecay, CosineDecay]
)


def serialize(learning_rate_schedule):
    return serialize_object(learning_rate_schedule, _MODULE)


def deserialize(config, custom_objects=None):
    """The schedule a Keras dict describes, among gpuconv's schedules and the caller's objects."""
    return deserialize_object(config, ALL_OBJECTS_DICT, _KIND, custom_objects)

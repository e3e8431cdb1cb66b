"""The optimizer base class: Keras 3.15's ``BaseOptimizer`` contract (arguments and their checks,
``build``/``apply``/``apply_gradients``, ``iterations``, ``learning_rate``, ``variables`` in
Keras' order, clipping, weight decay, EMA, gradient accumulation, loss scaling, configs).

Why the arithmetic is not here: a subclass only names its update rule
(``gpuconv.optimizers.rules``), creates its slots and computes the rule's host scalars; the step
itself is one ``engine.optimizer_update`` call for all variables, on the engine of the
gradients' device, so the CUDA backend can fuse it into one kernel launch. Clipping, EMA and
accumulation are array-module-generic code that runs where the arrays are.
"""
import warnings
import re

import numpy as np

from .. import arrays as _arrays
from .. import backend as _backend
from ..cpu import optimizer_updates as _updates
from ..layers.base_layer import unique_name
from ..serialization import serialize_object, to_snake_case
from ..variables import Variable
from . import schedules as _schedules
from .gradient_clipping import clip_gradients


class _Counter(Variable):
    """An integer Variable that is also int()-able, as Keras' ``iterations`` is."""

    def __int__(self):
        return int(self.numpy().item())

    __index__ = __int__

    def assign_add(self, n):
        self.assign(self.numpy() + n)


BASE_ARGUMENTS = ("learning_rate", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "use_ema",
                  "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps",
                  "name")


def base_arguments(arguments):
    """The base class's arguments out of a subclass constructor's ``locals()`` (each subclass
    spells out Keras' full signature; this passes the shared part on without repeating it)."""
    return {name: arguments[name] for name in BASE_ARGUMENTS}


def _is_host(x):
    return not (_arrays.is_cupy_array(x) or _arrays.is_emulator_array(x))


def _engine_for(grads):
    """NumPy gradients step on the NumPy engine, device arrays on the active CUDA engine; None
    when device arrays meet the NumPy backend (the step then runs on the arrays' own module)."""
    if all(_is_host(g) for g in grads):
        return _backend.engine_named("numpy")
    engine = _backend.engine()
    return None if engine.NAME == "numpy" else engine


class Optimizer:
    """Subclasses set ``_build_slots(var_list)`` (create the slots, Keras' order), ``_rule()``
    (a key of ``RULES``), ``_slots_of(index)`` (that variable's slots in the rule's order) and
    ``_scalars(t, lr)`` (the rule's scalars in NumPy scalar type ``t``), and list their own
    constructor arguments in ``_HYPERPARAMETERS`` (Keras' get_config order; ``_keep`` stores them)."""

    _HYPERPARAMETERS = ()

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.")
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        self.name = unique_name(to_snake_case(type(self).__name__)) if name is None else name
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.global_clipnorm = global_clipnorm
        self.clipvalue = clipvalue
        self.use_ema = use_ema
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        if gradient_accumulation_steps and not gradient_accumulation_steps >= 2:
            raise ValueError(
                "`gradient_accumulation_steps` must be an integer >= 2. Received: "
                f"gradient_accumulation_steps={gradient_accumulation_steps}"
            )
        if use_ema:
            if ema_momentum > 1 or ema_momentum < 0:
                raise ValueError(f"`ema_momentum` must be in the range [0, 1]. Received: ema_momentum={ema_momentum}")
            frequency = ema_overwrite_frequency
            if frequency and (not isinstance(frequency, int) or frequency < 1):
                raise ValueError("`ema_overwrite_frequency` must be an integer >= 1 or None. Received: "
                                 f"ema_overwrite_frequency={ema_overwrite_frequency}")
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
                f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        if loss_scale_factor is not None and (isinstance(loss_scale_factor, bool)
                                              or not isinstance(loss_scale_factor, (int, float))):
            raise TypeError(f"Argument `loss_scale_factor` must be a float or None. "
                            f"Received: loss_scale_factor={loss_scale_factor!r}")
        self.built = False
        self._variables = []
        self._trainable_variables = []
        self._indices = {}
        self._exclude_ids = set()
        self._exclude_pattern = None
        self._iterations = self._add_variable(np.array(0, dtype=np.int32), "iteration", counter=True)
        if isinstance(learning_rate, _schedules.LearningRateSchedule) or callable(learning_rate):
            self._learning_rate = learning_rate
        else:
            if not isinstance(learning_rate, float):
                raise ValueError(
                    "Argument `learning_rate` should be float, or an instance of LearningRateSchedule, or a "
                    "callable (that takes in the current iteration value and returns the corresponding "
                    f"learning rate value). Received instead: learning_rate={learning_rate}"
                )
            self._learning_rate = self._add_variable(np.array(learning_rate, dtype=np.float32), "learning_rate")

    def _keep(self, arguments):
        """Store the subclass's own constructor arguments (from its ``locals()``)."""
        for name in self._HYPERPARAMETERS:
            setattr(self, name, arguments[name])

    # ----------------------------------------------------------------------------------------
    # Variables
    # ----------------------------------------------------------------------------------------
    def _add_variable(self, value, name, counter=False, path=None):
        kind = _Counter if counter else Variable
        variable = kind(value, name=name, path=f"{self.name}/{name}" if path is None else path, trainable=False)
        self._variables.append(variable)
        return variable

    def add_optimizer_variables(self, var_list, names, initial_value=0.0):
        """One slot per variable and name, interleaved per variable as Keras creates them (so
        ``variables`` has Keras' order), named ``{variable path with '_'}_{name}``."""
        single = isinstance(names, str)
        names = [names] if single else list(names)
        created = tuple([] for _ in names)
        for variable in var_list:
            for slots, slot_name in zip(created, names):
                value = np.full(variable.shape, initial_value, dtype=variable.dtype)
                slots.append(self._add_variable(value, f"{variable.path.replace('/', '_')}_{slot_name}"))
        return created[0] if single else created

    @property
    def variables(self):
        return self._variables[:]

    @property
    def iterations(self):
        if self.gradient_accumulation_steps:
            count = np.array(int(self._iterations) // self.gradient_accumulation_steps, dtype=np.int32)
            return _Counter(count, name="iteration", path=self._iterations.path, trainable=False)
        return self._iterations

    def _step_count(self):
        """``iterations`` as a Python int (the accumulated count under gradient accumulation)."""
        return int(self.iterations)

    def build(self, var_list):
        if self.built:
            return
        var_list = list(var_list)
        if self.use_ema:
            self._averages = self.add_optimizer_variables(var_list, "average")
        if self.gradient_accumulation_steps:
            self._accumulators = self.add_optimizer_variables(var_list, "gradient_accumulator")
        self._indices = {id(v): i for i, v in enumerate(var_list)}
        self._trainable_variables = var_list[:]
        self._build_slots(var_list)
        self.built = True

    def _build_slots(self, var_list):
        raise NotImplementedError(f"{type(self).__name__} must implement `_build_slots(var_list)`.")

    def set_weights(self, weights):
        if not self.built:
            raise ValueError(
                "You are calling `set_weights()` on an optimizer that has not yet been built. Please call "
                "`optimizer.build(trainable_variables)` to create the optimizer weights before calling "
                "`set_weights()`."
            )
        for variable, weight in zip(self._variables, weights):
            if tuple(variable.shape) != tuple(np.shape(weight)):
                raise ValueError(
                    f"Optimizer variable {variable.path} has shape {variable.shape} not compatible with provided "
                    f"weight shape {tuple(np.shape(weight))}."
                )
            variable.assign(weight)

    def get_weights(self):
        return [v.numpy() for v in self._variables]

    def save_own_variables(self, store):
        for i, variable in enumerate(self._variables):
            store[str(i)] = variable.numpy()

    def load_own_variables(self, store):
        if len(store.keys()) != len(self._variables):
            message = (f"Skipping variable loading for optimizer '{self.name}', because it has "
                       f"{len(self._variables)} variables whereas the saved optimizer has {len(store.keys())} "
                       "variables. ")
            if not self._variables:
                message += "This is likely because the optimizer has not been called/built yet."
            warnings.warn(message, stacklevel=2)
            return
        for i, variable in enumerate(self._variables):
            variable.assign(np.asarray(store[str(i)]))

    # ----------------------------------------------------------------------------------------
    # Learning rate
    # ----------------------------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The current learning rate as a float32 scalar (a schedule evaluated at the step)."""
        return self._current_learning_rate()

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        previous = self._learning_rate if isinstance(self._learning_rate, Variable) else None
        if isinstance(learning_rate, _schedules.LearningRateSchedule) or callable(learning_rate):
            self._learning_rate = learning_rate
        elif previous is None:
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object (or a callable) as its "
                "`learning_rate` constructor argument, hence its learning rate is not settable. If you need the "
                "learning rate to be settable, you should instantiate the optimizer with a float "
                "`learning_rate` argument."
            )
        else:
            value = np.asarray(_arrays.to_numpy(learning_rate))
            if value.shape != () or value.dtype.kind not in "fiu":
                raise ValueError(f"Argument `learning_rate` must be a real number. Received: "
                                 f"learning_rate={learning_rate!r}")
            previous.assign(value.astype(np.float32))
        if previous is not None and self._learning_rate is not previous:
            self._variables.remove(previous)

    def _current_learning_rate(self):
        lr = self._learning_rate
        if isinstance(lr, _schedules.LearningRateSchedule):
            return np.float32(lr(self._iterations))
        if isinstance(lr, Variable):
            return np.float32(lr.numpy())
        return np.float32(np.asarray(_arrays.to_numpy(lr())))

    # ----------------------------------------------------------------------------------------
    # Weight decay
    # ----------------------------------------------------------------------------------------
    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Variables (by identity) and names (a regex alternation of ``var_names`` searched in
        each variable's name) that weight decay skips."""
        self._exclude_ids = {id(v) for v in var_list} if var_list else set()
        self._exclude_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def _use_weight_decay(self, variable):
        if id(variable) in self._exclude_ids:
            return False
        return self._exclude_pattern is None or re.search(self._exclude_pattern, variable.name) is None

    def _decays(self, variables, lr):
        if self.weight_decay is None:
            return [0.0] * len(variables)
        decay = float(np.float32(self.weight_decay) * lr)
        return [decay if self._use_weight_decay(v) else 0.0 for v in variables]

    # ----------------------------------------------------------------------------------------
    # Applying gradients
    # ----------------------------------------------------------------------------------------
    def scale_loss(self, loss):
        """The loss times ``loss_scale_factor`` (recorded on an active tape), else unchanged."""
        if self.loss_scale_factor is None:
            return loss
        from ..autodiff import functions

        return functions.multiply(loss, self.loss_scale_factor)

    def apply_gradients(self, grads_and_vars):
        grads, trainable_variables = zip(*grads_and_vars)
        self.apply(grads, trainable_variables)
        return self._iterations

    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        if not grads:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `variables`, the optimizer must already be built on a list of "
                    "variables. Call `optimizer.build(trainable_variables)` first. "
                )
            if len(grads) != len(self._indices):
                raise ValueError(
                    "When passing `grads` as a list of gradient tensors, the gradients must match "
                    f"`optimizer.variables` one-to-on. Received a list of {len(grads)} gradients, but the optimizer "
                    f"is tracking {len(self._trainable_variables)} trainable variables."
                )
            trainable_variables = self._trainable_variables
        else:
            trainable_variables = list(trainable_variables)
            self.build(trainable_variables)
            for v in trainable_variables:
                if id(v) not in self._indices:
                    raise ValueError(
                        f"Unknown variable: {v}. This optimizer can only be called for the variables it was "
                        "originally built with. When working with a new set of variables, you should recreate a "
                        "new optimizer instance."
                    )
        grads, variables = self._filter_empty_gradients(grads, trainable_variables)
        grads = [self._as_gradient(g, v) for g, v in zip(grads, variables)]
        if self.loss_scale_factor is not None:
            grads = [g / _arrays.array_module(g).asarray(self.loss_scale_factor, dtype=g.dtype) for g in grads]
        self._apply_filtered(grads, variables)
        for g, variable in zip(grads, variables):
            if variable.constraint is not None:
                target = variable.array_for_update(g)
                target[...] = _arrays.array_module(target).asarray(variable.constraint(target), dtype=target.dtype)
        self._iterations.assign_add(1)

    @staticmethod
    def _as_gradient(g, variable):
        xp = _arrays.array_module(g)
        return xp.ascontiguousarray(xp.asarray(g, dtype=variable.dtype))

    @staticmethod
    def _filter_empty_gradients(grads, variables):
        kept = [(g, v) for g, v in zip(grads, variables) if g is not None]
        if not kept:
            raise ValueError("No gradients provided for any variable.")
        missing = [v.path for g, v in zip(grads, variables) if g is None]
        if missing:
            warnings.warn(
                f"Gradients do not exist for variables {missing} when minimizing the loss. If using "
                "`model.compile()`, did you forget to provide a `loss` argument?"
            )
        return [g for g, _ in kept], [v for _, v in kept]

    def _apply_filtered(self, grads, variables):
        """Keras' ``_backend_apply_gradients``: accumulate or step, then the EMA."""
        steps = self.gradient_accumulation_steps
        if steps:
            accumulators = [self._accumulators[self._indices[id(v)]].array_for_update(g)
                            for g, v in zip(grads, variables)]
            if (int(self._iterations) + 1) % steps == 0:
                grads = [(g + acc) / g.dtype.type(steps) for g, acc in zip(grads, accumulators)]
                self._step(grads, variables)
                for accumulator in self._accumulators:
                    accumulator.array_for_update(grads[0])[...] *= 0  # Keras multiplies by 0 (NaN stays NaN)
            else:
                for acc, g in zip(accumulators, grads):
                    acc += g
        else:
            self._step(grads, variables)
        if self.use_ema:
            self._update_averages(like=grads[0])
            frequency = self.ema_overwrite_frequency
            if frequency and (self._step_count() + 1) % frequency == 0:
                self._overwrite_with_averages(self._trainable_variables, like=grads[0])

    def _step(self, grads, variables):
        """One update of every variable: clipping, then the rule on the gradients' engine."""
        grads = clip_gradients(grads, self.clipnorm, self.global_clipnorm, self.clipvalue)
        lr = self._current_learning_rate()
        t = np.dtype(variables[0].dtype).type
        scalars = {name: float(value) for name, value in self._scalars(t, t(lr)).items()}
        params = [v.array_for_update(g) for v, g in zip(variables, grads)]
        slots = [[s.array_for_update(g) for s in self._slots_of(self._indices[id(v)])]
                 for v, g in zip(variables, grads)]
        decays = self._decays(variables, lr)
        update = getattr(_engine_for(grads), "optimizer_update", None)
        if update is None:  # no engine for these arrays' device has the fused update: the same rule, xp-generic
            _updates.apply_rule(_arrays.array_module(grads[0]), self._rule(), scalars, params, grads, slots, decays)
        else:
            update(self._rule(), scalars, params, grads, slots, decays)

    # ----------------------------------------------------------------------------------------
    # EMA
    # ----------------------------------------------------------------------------------------
    def _update_averages(self, like):
        momentum_of = {}
        for variable, average in zip(self._trainable_variables, self._averages):
            t = np.dtype(variable.dtype).type
            if t not in momentum_of:
                momentum = t(self._step_count() != 0) * t(self.ema_momentum)
                momentum_of[t] = (momentum, t(1) - momentum)
            momentum, rest = momentum_of[t]
            target = average.array_for_update(like)
            target[...] = momentum * target + rest * variable.array_for_update(like)

    def _overwrite_with_averages(self, var_list, like=None):
        if len(var_list) != len(self._averages):
            raise ValueError(
                f"The length of model variables ({len(var_list)}) to override does not match the length of model "
                f"variables stored in the optimizer ({len(self._averages)}). Please check if the optimizer was "
                "called on your model."
            )
        for variable, average in zip(var_list, self._averages):
            if like is None:
                variable.assign(average.numpy())
            else:
                variable.array_for_update(like)[...] = average.array_for_update(like)

    def finalize_variable_values(self, var_list):
        """At the end of ``fit``: with EMA, the variables take their moving averages."""
        if self.use_ema:
            self._overwrite_with_averages(list(var_list))

    # ----------------------------------------------------------------------------------------
    # Config
    # ----------------------------------------------------------------------------------------
    def get_config(self):
        lr = self._learning_rate
        if isinstance(lr, _schedules.LearningRateSchedule):
            lr = _schedules.serialize(lr)
        elif isinstance(lr, Variable):
            lr = float(lr.numpy())
        else:
            lr = serialize_object(lr, "keras.optimizers.schedules")
        return {
            "name": self.name,
            "learning_rate": lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            **{name: getattr(self, name) for name in self._HYPERPARAMETERS},
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = _schedules.deserialize(config["learning_rate"], custom_objects)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"

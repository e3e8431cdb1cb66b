"""The ``Metric`` base class: Keras 3's contract (``update_state``, ``result``, ``reset_state``,
``variables``, ``__call__``, ``get_config`` / ``from_config``) over :class:`MetricVariable` state.

A metric named by default gets Keras' automatic name (snake_case class name, then '_1', '_2', ...),
drawn from the same per-process counter as layer names, as in Keras (``clear_session`` resets both).
"""
from .. import initializers as _initializers
from ..layers.base_layer import unique_name
from ..serialization import to_snake_case
from .state import MetricVariable, metric_dtype, module_of


class Metric:
    """Encapsulates a metric's state and the logic that updates it.

    Subclasses create their state in ``__init__`` with ``add_variable`` and implement
    ``update_state`` and ``result``; ``reset_state`` zeroes every variable.
    """

    def __init__(self, dtype=None, name=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Argument `name` must be a string. Received: name={name!r}")
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self._dtype = metric_dtype(dtype)
        self._variables = []
        self._metrics = []

    def __setattr__(self, key, value):
        if isinstance(value, Metric) and "_metrics" in self.__dict__ and value is not self:
            self._metrics.append(value)  # a metric held by a metric: its state is part of ours
        super().__setattr__(key, value)

    def _check_super_called(self):
        if "_variables" not in self.__dict__:
            raise RuntimeError("You forgot to call `super().__init__()` in the `__init__()` method. Go add it!")

    @property
    def dtype(self):
        return self._dtype

    @property
    def variables(self):
        found = list(self._variables)
        for metric in self._metrics:
            found.extend(metric.variables)
        return found

    def add_variable(self, shape, initializer="zeros", dtype=None, aggregation="sum", name=None):
        """A new state variable of ``shape`` (host NumPy until the first device update)."""
        self._check_super_called()
        dtype = metric_dtype(dtype) if dtype is not None else "float32"
        shape = tuple(int(s) for s in ([] if shape is None else shape))
        initial = _initializers.get(initializer)(shape, dtype=dtype)
        name = name or f"variable_{len(self._variables)}"
        variable = MetricVariable(initial.astype(dtype), name=name,
                                  path=f"{self.name.replace('/', '>')}/{name}", aggregation=aggregation)
        self._variables.append(variable)
        return variable

    def add_weight(self, shape=(), initializer=None, dtype=None, name=None):
        return self.add_variable(shape=shape, initializer=initializer or "zeros", dtype=dtype, name=name)

    def reset_state(self):
        """Zero every state variable (it stays in its array module)."""
        for variable in self.variables:
            xp = module_of(variable.value)
            variable.assign(xp.zeros(variable.shape, dtype=variable.dtype))

    def update_state(self, *args, **kwargs):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        """Keras' ``metric(y_true, y_pred)``: update the state, then return the result."""
        self._check_super_called()
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"

    __str__ = __repr__


def scalar(value, xp):
    """A result as Keras returns it: a 0-d (or 1-d) array of ``xp`` (NumPy's operators on 0-d
    arrays give NumPy scalars)."""
    return xp.asarray(value)

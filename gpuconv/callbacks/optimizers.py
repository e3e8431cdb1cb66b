"""Reading and writing the learning rate of a model's optimizer(s), for the callbacks that steer
it (``ReduceLROnPlateau``, ``LearningRateScheduler``).

Keras treats an optimizer with an ``optimizers`` attribute (a multi-optimizer wrapper) as several
optimizers, each logged as ``learning_rate_<name>``; a plain optimizer is logged as
``learning_rate``. The value may be a float, an array or a gpuconv ``Variable``.
"""
from .logs import as_float

__all__ = ["each_optimizer", "learning_rate_of", "log_learning_rates"]


def each_optimizer(model):
    """``[(name or "", optimizer)]``: the sub-optimizers of a wrapper, else the one optimizer."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError("This callback needs a compiled model: `model.optimizer` is None. "
                         "Call `model.compile(optimizer=...)` before `fit`.")
    if hasattr(optimizer, "optimizers"):
        return [(opt.name, opt) for opt in optimizer.optimizers]
    return [("", optimizer)]


def learning_rate_of(optimizer):
    return as_float(optimizer.learning_rate)


def log_learning_rates(model, logs):
    """Write the current learning rate(s) into ``logs`` under Keras' keys."""
    for name, optimizer in each_optimizer(model):
        logs[f"learning_rate_{name}" if name else "learning_rate"] = learning_rate_of(optimizer)

"""``MonitorCallback``: the "is this value better than the best so far" logic that
``EarlyStopping``, ``ModelCheckpoint`` and ``ReduceLROnPlateau`` share (Keras 3.15).

``mode="auto"`` infers the direction: ``loss`` / ``val_loss`` go down, and any other name is
looked up among the model's metrics, whose ``_direction`` (``"up"`` / ``"down"``) decides, as in
Keras; a name neither rule covers is an error asking for an explicit mode. Comparisons run in
float32 because Keras' ``ops.less`` / ``ops.greater`` convert Python floats to float32 tensors:
two values equal in float32 are no improvement there, and must not be one here.
"""
import warnings

import numpy as np

from .arguments import check_real
from .callback import Callback

__all__ = ["MonitorCallback"]


def _less(a, b):
    return bool(np.float32(a) < np.float32(b))


def _greater(a, b):
    return bool(np.float32(a) > np.float32(b))


def _flat_metrics(model):
    """The model's metric objects, with containers (objects holding ``.metrics``) opened up."""
    found = []
    pending = list(getattr(model, "metrics", None) or [])
    while pending:
        metric = pending.pop(0)
        inner = getattr(metric, "metrics", None)
        if isinstance(inner, (list, tuple)):
            pending.extend(inner)
        else:
            found.append(metric)
    return found


class MonitorCallback(Callback):
    """Base class of callbacks that watch ``monitor`` and act on improvements.

    Args:
        monitor: the logs key to watch.
        mode: ``"auto"``, ``"min"`` or ``"max"`` (an unknown mode warns and falls back to auto).
        baseline: initial best value (checked by the subclass that takes it); ``None`` takes the
            first value seen.
        min_delta: smallest absolute change that counts as an improvement.
    """

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"Expected `monitor` to be a string (a logs key). Received: monitor={monitor!r}")
        check_real(min_delta, "min_delta")
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=2)
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self.monitor_op = None

    def _set_monitor_op(self):
        if self.mode == "min":
            self.monitor_op = _less
        elif self.mode == "max":
            self.monitor_op = _greater
        else:
            name = self.monitor.removeprefix("val_")
            if name == "loss":
                self.monitor_op = _less
            for metric in _flat_metrics(self.model):
                direction = getattr(metric, "_direction", None)
                if getattr(metric, "name", None) == name and direction is not None:
                    self.monitor_op = _greater if direction == "up" else _less
            if self.monitor_op is None:
                raise ValueError(
                    f"{type(self).__name__} callback received monitor={self.monitor}, but Keras isn't "
                    "able to automatically determine whether that metric should be maximized or "
                    "minimized. Pass `mode='max'` in order to monitor based on the highest metric "
                    "value, or pass `mode='min'` in order to use the lowest value.")
        if self.monitor_op is _less:
            self.min_delta *= -1

    def _is_improvement(self, monitor_value, reference_value):
        if reference_value is None:
            return True
        return self.monitor_op(monitor_value - self.min_delta, reference_value)

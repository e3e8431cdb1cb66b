"""``LearningRateScheduler``: set the optimizer's learning rate from ``schedule(epoch, lr)`` at
the start of every epoch, and log the rate in use at its end (Keras 3.15).

A one-argument ``schedule(epoch)`` (the Keras 2 form) still works: Keras retries with one
argument when the two-argument call raises ``TypeError``, and so does this.
"""
import numpy as np

from ..utils.progbar import print_msg
from .callback import Callback
from .optimizers import each_optimizer, learning_rate_of, log_learning_rates

__all__ = ["LearningRateScheduler"]


class LearningRateScheduler(Callback):
    """Learning-rate scheduler.

    Args:
        schedule: function ``(epoch, lr) -> new lr`` (epoch from 0, rates as floats).
        verbose: 0 quiet, 1 prints each update.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"Expected `schedule` to be a function (epoch, lr) -> lr. Received: schedule={schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def _update_optimizer_lr(self, optimizer, epoch):
        if not hasattr(optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        try:
            learning_rate = self.schedule(epoch, learning_rate_of(optimizer))
        except TypeError:  # the one-argument form
            learning_rate = self.schedule(epoch)
        if not isinstance(learning_rate, (float, np.float32, np.float64)):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {learning_rate}")
        optimizer.learning_rate = learning_rate
        return learning_rate

    def on_epoch_begin(self, epoch, logs=None):
        for name, optimizer in each_optimizer(self.model):
            learning_rate = self._update_optimizer_lr(optimizer, epoch)
            if self.verbose > 0:
                which = f"{name} learning rate" if name else "learning rate"
                print_msg(f"\nEpoch {epoch + 1}: LearningRateScheduler setting {which} to {learning_rate}.")

    def on_epoch_end(self, epoch, logs=None):
        log_learning_rates(self.model, logs or {})

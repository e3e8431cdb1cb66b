"""``ReduceLROnPlateau``: multiply the optimizer's learning rate by ``factor`` when the monitored
value stops improving (Keras 3.15's rule: ``wait`` counts epochs without improvement outside the
cooldown, a reduction happens at ``patience`` and only while the rate is above ``min_lr``).

Like Keras it also writes the current rate into the epoch logs (``learning_rate``), before the
callbacks after it (``History``, ``CSVLogger``) read them.
"""
import warnings

import numpy as np

from ..utils.progbar import print_msg
from .arguments import check_count, check_real
from .monitor_callback import MonitorCallback
from .optimizers import each_optimizer, learning_rate_of, log_learning_rates

__all__ = ["ReduceLROnPlateau"]


class ReduceLROnPlateau(MonitorCallback):
    """Reduce the learning rate when ``monitor`` has stopped improving.

    Args:
        monitor: the logs key to watch.
        factor: the new rate is ``rate * factor`` (must be < 1).
        patience: epochs without improvement before a reduction.
        verbose: 0 silent, 1 prints each reduction.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        min_delta: smallest change that counts as an improvement.
        cooldown: epochs after a reduction during which no new reduction is considered.
        min_lr: the rate never goes below this.
        **kwargs: accepted and ignored, as in Keras (a warning names them).
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        super().__init__(monitor, mode, min_delta=min_delta)
        check_real(factor, "factor")
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        if kwargs:
            warnings.warn(f"ReduceLROnPlateau ignores the arguments {sorted(kwargs)}.", stacklevel=2)
        self.factor = factor
        self.min_lr = check_real(min_lr, "min_lr")
        self.patience = check_count(patience, "patience")
        self.verbose = verbose
        self.cooldown = check_count(cooldown, "cooldown")
        self.cooldown_counter = 0
        self.wait = 0

    def _reset(self):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def _reduce(self, optimizer, epoch, name):
        old_lr = learning_rate_of(optimizer)
        if not old_lr > np.float32(self.min_lr):
            return False
        new_lr = max(old_lr * self.factor, self.min_lr)
        optimizer.learning_rate = new_lr
        if self.verbose > 0:
            which = f" {name}" if name else ""
            print_msg(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing{which} learning rate to {new_lr}.")
        return True

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs or {}  # as Keras: an empty dict is replaced, not written into
        log_learning_rates(self.model, logs)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs)}.", stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                # Every optimizer is offered the reduction (no short-circuit).
                reduced = [self._reduce(opt, epoch, name) for name, opt in each_optimizer(self.model)]
                if any(reduced):
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def in_cooldown(self):
        return self.cooldown_counter > 0

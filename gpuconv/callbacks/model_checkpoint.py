"""``ModelCheckpoint``: save the model or its weights every epoch or every N batches, optionally
only when the monitored value improves (Keras 3.15).

The file name is ``filepath.format(epoch=epoch + 1, **logs)`` (plus ``batch=batch + 1`` for
batch-level saves), so ``{epoch:02d}-{val_loss:.2f}.weights.h5`` names the files Keras names. The
suffix must match what is saved: ``.weights.h5`` for ``save_weights_only``, ``.keras`` or ``.h5``
for the whole model. Saving goes through ``model.save_weights(path, overwrite=True)`` /
``model.save(path, overwrite=True)``; the pattern comes from the caller's own code, never from a
config.
"""
import os
import warnings

import numpy as np

from ..arrays import is_cupy_array
from ..utils.progbar import print_msg
from .arguments import check_real, check_save_freq
from .batch_counter import BatchCounter
from .monitor_callback import MonitorCallback

__all__ = ["ModelCheckpoint"]


def _path_text(filepath):
    if isinstance(filepath, (str, os.PathLike)):
        return os.fspath(filepath)
    raise TypeError(f"Expected `filepath` to be a string or path-like. Received: filepath={filepath!r}")


def _is_array_with_dims(value):
    return (isinstance(value, np.ndarray) or is_cupy_array(value)) and len(value.shape) > 0


class ModelCheckpoint(MonitorCallback):
    """Save the model, or its weights, during training.

    Args:
        filepath: path, possibly with ``{epoch}``, ``{batch}`` and logs-key placeholders.
        monitor: the logs key ``save_best_only`` compares.
        verbose: 0 silent, 1 prints every decision.
        save_best_only: save only when ``monitor`` improves.
        save_weights_only: ``model.save_weights`` instead of ``model.save``.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        save_freq: ``"epoch"`` or a number of batches.
        initial_value_threshold: the best value to beat before the first save.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__(monitor, mode, check_real(initial_value_threshold, "initial_value_threshold", optional=True))
        self.verbose = verbose
        self.filepath = _path_text(filepath)
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = check_save_freq(save_freq, f"Unrecognized save_freq: {save_freq}. "
                                                    "Expected save_freq are 'epoch' or integer values")
        self._batches = BatchCounter(save_freq)
        self._current_epoch = 0
        if save_weights_only:
            if not self.filepath.endswith(".weights.h5"):
                raise ValueError("When using `save_weights_only=True` in `ModelCheckpoint`, the filepath "
                                 "provided must end in `.weights.h5` (Keras weights format). Received: "
                                 f"filepath={self.filepath}")
        elif not self.filepath.endswith((".keras", ".h5")):
            raise ValueError("The filepath provided must end in `.keras` (Keras model format). Received: "
                             f"filepath={self.filepath}")

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq != "epoch" and self._batches.step(batch):
            self._save_model(epoch=self._current_epoch, batch=batch, logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        if self.save_freq == "epoch":
            self._save_model(epoch=epoch, batch=None, logs=logs)

    def _should_save_model(self, epoch, batch, logs, filepath):
        """Whether to save now: always without ``save_best_only``, else on an improvement."""
        logs = logs or {}
        if not self.save_best_only:
            if self.verbose > 0:
                print_msg(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=2)
            return True
        if _is_array_with_dims(current):
            warnings.warn("Can save best model only when `monitor` is a scalar value. "
                          f"Received: {current}. Falling back to `save_best_only=False`.")
            return True
        if self.monitor_op is None:
            self._set_monitor_op()  # a batch-level save can come before the first epoch end
        best = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print_msg(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to {current:.5f}, "
                          f"saving model to {filepath}")
            self.best = current
            return True
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, batch, logs, filepath):
            return
        dirname = os.path.dirname(filepath)
        if dirname and not os.path.exists(dirname):
            os.makedirs(dirname)
        if os.path.isdir(filepath):
            raise IOError("Please specify a non-directory filepath for ModelCheckpoint. "
                          f"Filepath used is an existing directory: {filepath}")
        if self.save_weights_only:
            self.model.save_weights(filepath, overwrite=True)
        else:
            self.model.save(filepath, overwrite=True)
        if self.verbose > 0:
            print_msg(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")

    def _get_file_path(self, epoch, batch, logs):
        logs = logs or {}
        fields = dict(logs)
        if batch is not None and "batch" not in logs:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(epoch=epoch + 1, **fields)
        except KeyError as error:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". Reason: {error}')

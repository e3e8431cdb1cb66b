"""``BackupAndRestore``: resume an interrupted ``fit`` where it stopped (Keras 3.15).

The backup directory holds Keras' layout: ``latest.weights.h5`` (the model's weights, with the
optimizer state ``save_weights`` includes) and ``training_metadata.json`` (``{"epoch": E,
"batch": B}``, E the number of finished epochs); ``double_checkpoint`` keeps the previous pair
as ``*.bkp`` and falls back to it when the latest weights cannot be read. On restore the model's
``_initial_epoch`` is set to E, which ``fit`` uses in place of its ``initial_epoch``. The metadata
file is data: only its ``epoch`` integer is used, and anything else there is an error.
"""
import json
import os
import shutil

from .arguments import check_save_freq
from .batch_counter import BatchCounter
from .callback import Callback

__all__ = ["BackupAndRestore"]


def _read_epoch(path):
    with open(path, "r") as f:
        metadata = json.loads(f.read())
    epoch = metadata.get("epoch") if isinstance(metadata, dict) else None
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"Invalid training metadata in {path}: expected a JSON object with a non-negative "
                         f"integer 'epoch'. Received: {metadata!r}")
    return epoch


class BackupAndRestore(Callback):
    """Back up the training state every epoch (or every ``save_freq`` batches) and restore it
    when ``fit`` starts again.

    Args:
        backup_dir: directory for the backup files; no other callback or run may use it.
        save_freq: ``"epoch"``, a number of batches, or ``False`` for no periodic backup.
        double_checkpoint: also keep the previous backup, to fall back on if the latest is
            unreadable.
        delete_checkpoint: delete ``backup_dir`` when ``fit`` finishes.
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True):
        super().__init__()
        if save_freq is not False:
            check_save_freq(save_freq, f"Invalid value for argument `save_freq`. Received: save_freq={save_freq}. "
                                       "Expected either 'epoch' or an integer value.")
        self.save_freq = save_freq
        self.double_checkpoint = double_checkpoint
        self.delete_checkpoint = delete_checkpoint
        self._batches = BatchCounter(save_freq, last_batch=0)
        self._current_epoch = 0
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if not isinstance(backup_dir, (str, os.PathLike)):
            raise TypeError(f"Expected `backup_dir` to be a string or path-like. Received: backup_dir={backup_dir!r}")
        self.backup_dir = os.fspath(backup_dir)
        self._weights_path = os.path.join(self.backup_dir, "latest.weights.h5")
        self._training_metadata_path = os.path.join(self.backup_dir, "training_metadata.json")
        self._prev_weights_path = f"{self._weights_path}.bkp"
        self._prev_training_metadata_path = f"{self._training_metadata_path}.bkp"

    @property
    def _last_batch_seen(self):
        return self._batches.last_batch

    def on_train_begin(self, logs=None):
        try:
            self._load_model()
        except OSError:
            # The latest weights may be corrupted: fall back to the previous backup, if kept.
            if not os.path.exists(self._prev_weights_path):
                raise
            shutil.copyfile(self._prev_weights_path, self._weights_path)
            if os.path.exists(self._prev_training_metadata_path):
                shutil.copyfile(self._prev_training_metadata_path, self._training_metadata_path)
            elif os.path.exists(self._training_metadata_path):
                os.remove(self._training_metadata_path)
            self._load_model()

    def _load_model(self):
        model = self.model
        if not getattr(model, "built", True):
            raise ValueError("To use the BackupAndRestore callback, you model must be built before you call "
                             f"`fit()`. Model {model} is unbuilt. You can build it beforehand by calling it on "
                             "a batch of data.")
        if os.path.exists(self._weights_path):
            optimizer = getattr(model, "optimizer", None)
            if optimizer is not None and not getattr(optimizer, "built", True):
                # The optimizer's variables must exist for the file's optimizer state to land.
                variables = getattr(model, "trainable_variables", None)
                optimizer.build(variables if variables is not None else model.trainable_weights)
            model.load_weights(self._weights_path)
        if os.path.exists(self._training_metadata_path):
            model._initial_epoch = _read_epoch(self._training_metadata_path)

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._batches.last_batch = 0
        if self.save_freq == "epoch":
            self._save_model()

    def on_train_batch_end(self, batch, logs=None):
        if isinstance(self.save_freq, int) and self.save_freq is not False and self._batches.step(batch):
            self._save_model()

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint:
            for latest, previous in ((self._weights_path, self._prev_weights_path),
                                     (self._training_metadata_path, self._prev_training_metadata_path)):
                if os.path.exists(latest):
                    shutil.copyfile(latest, previous)
        self.model.save_weights(self._weights_path, overwrite=True)
        with open(self._training_metadata_path, "w") as f:
            f.write(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and os.path.exists(self.backup_dir):
            shutil.rmtree(self.backup_dir)

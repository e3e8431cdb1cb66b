"""``History``: records each epoch's logs; ``fit`` returns it (Keras 3.15 semantics).

Keras keeps ``history`` across ``fit`` calls on the same object (so a second ``fit`` extends the
lists) while ``epoch`` restarts, and points ``model.history`` at the callback after every epoch.
"""
from .callback import Callback

__all__ = ["History"]


class History(Callback):
    """Callback recording every epoch's logs in ``history`` (a dict of lists) and the epoch
    indices in ``epoch``."""

    def __init__(self):
        super().__init__()
        self.history = {}

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        self.model.history = self

"""``ProgbarLogger``: what ``fit`` / ``evaluate`` / ``predict`` print, as Keras 3.15 prints it.

``fit`` prints ``Epoch i/N`` (only when N > 1) and one bar per epoch; its validation pass stays
silent; ``evaluate`` and ``predict`` on their own draw one bar. Logs arrive already averaged by the
model's metrics, so every value is shown as given (``stateless_metrics=set()``).
"""
from ..utils.progbar import Progbar, print_msg
from .callback import Callback

__all__ = ["ProgbarLogger"]


class ProgbarLogger(Callback):
    """Callback that prints progress and metrics to stdout."""

    def __init__(self):
        super().__init__()
        self.seen = 0
        self.progbar = None
        self.target = None
        self.verbose = 1
        self.epochs = 1
        self._called_in_fit = False

    def set_params(self, params):
        verbose = params["verbose"]
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs = params["epochs"]
        self.target = params["steps"]

    def on_train_begin(self, logs=None):
        self._called_in_fit = True  # validation inside fit prints nothing

    def on_test_begin(self, logs=None):
        if not self._called_in_fit:
            self._restart()

    def on_predict_begin(self, logs=None):
        self._restart()

    def on_epoch_begin(self, epoch, logs=None):
        self._restart()
        if self.verbose and self.epochs > 1:
            print_msg(f"Epoch {epoch + 1}/{self.epochs}")

    def on_train_batch_end(self, batch, logs=None):
        self._advance(batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        if not self._called_in_fit:
            self._advance(batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._advance(batch, None)  # predictions are not metrics

    def on_epoch_end(self, epoch, logs=None):
        self._finish(logs)

    def on_test_end(self, logs=None):
        if not self._called_in_fit:
            self._finish(logs)

    def on_predict_end(self, logs=None):
        self._finish(logs)

    def _restart(self):
        self.seen = 0
        self.progbar = None
        self._progbar()

    def _progbar(self):
        if self.progbar is None:
            self.progbar = Progbar(target=self.target, verbose=self.verbose, unit_name="step",
                                   stateless_metrics=set())
        return self.progbar

    def _advance(self, batch, logs):
        progbar = self._progbar()
        self.seen = batch + 1
        if self.verbose == 1:
            progbar.update(self.seen, list((logs or {}).items()), finalize=False)

    def _finish(self, logs):
        if self.target is None:
            # The first epoch of an unsized dataset: its length is now known.
            self.target = self.seen
            self.progbar.target = self.target
        self.progbar.update(self.target, list((logs or {}).items()), finalize=True)

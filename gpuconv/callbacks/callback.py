"""The ``Callback`` base class: every hook Keras 3.15's training, evaluation and prediction loops
call, as no-ops a subclass overrides.

Keras user code subclasses ``keras.callbacks.Callback`` and overrides a few hooks; the same
subclass must work unchanged on ``gpuconv.callbacks.Callback``, so the hook names, their
arguments and the ``on_batch_*`` aliases (the train-batch hooks forward to them) are Keras'.
Hooks left as they are carry a marker (``is_default_hook``) so a training loop can tell which
callbacks want per-batch logs and avoid converting device results nobody reads.
"""

__all__ = ["Callback", "is_default_hook"]


def _default_hook(method):
    method._is_default_hook = True
    return method


def is_default_hook(method):
    """Whether ``method`` (a bound hook) is the base class' no-op, i.e. not overridden."""
    return getattr(method, "_is_default_hook", False)


class Callback:
    """Base class of the objects ``fit``, ``evaluate`` and ``predict`` call back into.

    Attributes:
        params: dict of loop parameters (``verbose``, ``epochs``, ``steps``), set by the loop.
        model: the model being trained, set by the loop.
    """

    def __init__(self):
        self.params = None
        self._model = None

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self._model = model

    @property
    def model(self):
        return self._model

    @_default_hook
    def on_batch_begin(self, batch, logs=None):
        """Backwards-compatible alias of ``on_train_batch_begin``."""

    @_default_hook
    def on_batch_end(self, batch, logs=None):
        """Backwards-compatible alias of ``on_train_batch_end``."""

    @_default_hook
    def on_epoch_begin(self, epoch, logs=None):
        """Called at the start of training epoch ``epoch`` (0-based)."""

    @_default_hook
    def on_epoch_end(self, epoch, logs=None):
        """Called at the end of a training epoch with its results (``val_``-prefixed keys for
        the validation pass)."""

    @_default_hook
    def on_train_batch_begin(self, batch, logs=None):
        """Called before training batch ``batch``; forwards to ``on_batch_begin``."""
        self.on_batch_begin(batch, logs=logs)

    @_default_hook
    def on_train_batch_end(self, batch, logs=None):
        """Called after training batch ``batch`` with the metrics so far; forwards to
        ``on_batch_end``."""
        self.on_batch_end(batch, logs=logs)

    @_default_hook
    def on_test_batch_begin(self, batch, logs=None):
        """Called before a batch of ``evaluate`` (or of ``fit``'s validation pass)."""

    @_default_hook
    def on_test_batch_end(self, batch, logs=None):
        """Called after a batch of ``evaluate`` with the metrics so far."""

    @_default_hook
    def on_predict_batch_begin(self, batch, logs=None):
        """Called before a batch of ``predict``."""

    @_default_hook
    def on_predict_batch_end(self, batch, logs=None):
        """Called after a batch of ``predict``."""

    @_default_hook
    def on_train_begin(self, logs=None):
        """Called once when ``fit`` starts."""

    @_default_hook
    def on_train_end(self, logs=None):
        """Called once when ``fit`` ends, with the last epoch's logs."""

    @_default_hook
    def on_test_begin(self, logs=None):
        """Called when ``evaluate`` (or a validation pass) starts."""

    @_default_hook
    def on_test_end(self, logs=None):
        """Called when ``evaluate`` (or a validation pass) ends, with its results."""

    @_default_hook
    def on_predict_begin(self, logs=None):
        """Called when ``predict`` starts."""

    @_default_hook
    def on_predict_end(self, logs=None):
        """Called when ``predict`` ends."""

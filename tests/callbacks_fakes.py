"""A stand-in model and a stand-in ``fit`` loop for the callback tests.

Callbacks only talk to a model through a few attributes (``stop_training``, ``optimizer`` with a
settable ``learning_rate``, ``get_weights`` / ``set_weights``, ``save_weights`` / ``load_weights``
/ ``save``, ``built``, ``_initial_epoch``), so one fake serves Keras' callbacks and gpuconv's alike:
the parity tests drive both libraries' callbacks through the same calls on two such models and
compare what the models went through. ``drive_fit`` makes the calls Keras 3.15's ``fit`` makes,
in its order.
"""
import json

import numpy as np


class FakeOptimizer:
    """Keeps its learning rate in float32, as a Keras optimizer's variable does."""

    def __init__(self, learning_rate=0.01, name="sgd"):
        self.name = name
        self.learning_rate = learning_rate
        self.iterations = 0
        self.built = True

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = np.float32(value)


class FakeModel:
    """Weights are a list of arrays; files written by ``save_weights`` / ``save`` hold them (and
    the optimizer's iteration count) as JSON, so a test can read back what was saved when."""

    def __init__(self, optimizer=None, weights=None):
        self.stop_training = False
        self.optimizer = optimizer if optimizer is not None else FakeOptimizer()
        self.built = True
        self.history = None
        self._weights = [np.asarray(w, dtype="float32") for w in (weights or [[0.0, 0.0], [0.0]])]
        self.saves = []  # (method, path) in call order
        self.loads = []
        self.set_weights_calls = 0

    def get_weights(self):
        return [w.copy() for w in self._weights]

    def set_weights(self, weights):
        self.set_weights_calls += 1
        self._weights = [np.array(w, dtype="float32") for w in weights]

    def _write(self, method, filepath, overwrite):
        assert overwrite is True
        self.saves.append((method, str(filepath)))
        with open(filepath, "w") as f:
            json.dump({"weights": [w.tolist() for w in self._weights], "iterations": self.optimizer.iterations}, f)

    def save_weights(self, filepath, overwrite=True):
        self._write("save_weights", filepath, overwrite)

    def save(self, filepath, overwrite=True):
        self._write("save", filepath, overwrite)

    def load_weights(self, filepath):
        with open(filepath) as f:
            state = json.load(f)  # a corrupted file raises ValueError, not OSError
        self.loads.append(str(filepath))
        self._weights = [np.asarray(w, dtype="float32") for w in state["weights"]]
        self.optimizer.iterations = state["iterations"]


def epoch_weights(epoch):
    """The weights the fake model "reaches" at the end of ``epoch``."""
    return [np.full(2, epoch + 0.5, dtype="float32"), np.full(1, -epoch, dtype="float32")]


def drive_fit(callback_list_class, callbacks, model, epoch_logs, batch_logs=None, epochs=None,
              initial_epoch=0, interrupt_at=None, **params):
    """Call the hooks Keras' ``fit`` calls, epoch ``e`` ending with ``epoch_logs[e]`` and with the
    model's weights set to ``epoch_weights(e)``; ``batch_logs[e]`` lists that epoch's per-batch
    logs (one batch with the epoch's logs when None). Stops where ``model.stop_training`` is set;
    raises RuntimeError at the start of epoch ``interrupt_at``. Returns the epochs that ran."""
    epochs = len(epoch_logs) if epochs is None else epochs
    steps = None if batch_logs is None else len(batch_logs[0])
    params.setdefault("verbose", 0)
    cbs = callback_list_class(callbacks, add_history=True, add_progbar=params["verbose"] != 0, model=model,
                              epochs=epochs, steps=params.pop("steps", steps), **params)
    model.stop_training = False
    cbs.on_train_begin()
    ran = []
    training_logs = {}
    for epoch in range(getattr(model, "_initial_epoch", None) or initial_epoch, epochs):
        if epoch == interrupt_at:
            raise RuntimeError(f"interrupted at epoch {epoch}")
        cbs.on_epoch_begin(epoch)
        for step, logs in enumerate(batch_logs[epoch] if batch_logs is not None else [epoch_logs[epoch]]):
            cbs.on_train_batch_begin(step)
            if isinstance(model.optimizer, FakeOptimizer):  # a real optimizer counts its own steps
                model.optimizer.iterations += 1
            cbs.on_train_batch_end(step, dict(logs))
            if model.stop_training:
                break
        model.set_weights(epoch_weights(epoch))
        logs = dict(epoch_logs[epoch])
        cbs.on_epoch_end(epoch, logs)
        training_logs = logs
        ran.append(epoch)
        if model.stop_training:
            break
    cbs.on_train_end(logs=training_logs)
    return ran


def drive_evaluate(callback_list_class, callbacks, model, batch_logs, final_logs, **params):
    """The hooks of a stand-alone ``evaluate``."""
    cbs = callback_list_class(callbacks, add_progbar=params.get("verbose", 0) != 0, model=model, epochs=1,
                              **params)
    cbs.on_test_begin()
    for step, logs in enumerate(batch_logs):
        cbs.on_test_batch_begin(step)
        cbs.on_test_batch_end(step, dict(logs))
    cbs.on_test_end(dict(final_logs))


def drive_predict(callback_list_class, callbacks, model, steps, **params):
    """The hooks of a stand-alone ``predict``."""
    cbs = callback_list_class(callbacks, add_progbar=params.get("verbose", 0) != 0, model=model, epochs=1,
                              steps=steps, **params)
    cbs.on_predict_begin()
    for step in range(steps):
        cbs.on_predict_batch_begin(step)
        cbs.on_predict_batch_end(step, {"outputs": np.zeros((2, 1))})
    cbs.on_predict_end()

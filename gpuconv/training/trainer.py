"""Keras 3's training loop for gpuconv models: ``compile``, ``fit``, ``evaluate``, ``predict``
and the ``*_on_batch`` methods, with Keras' signatures, defaults, logs and callback order.

Why a mixin: a Sequential model and (later) a functional or subclassed one train the same way;
each only has to be callable as ``model(x, training=...)`` and list ``trainable_weights`` and
``losses``. One step is: the forward pass under a ``GradientTape``, the compiled loss plus the
layers' own losses (regularizers, activity penalties), the gradients of the trainable weights,
one ``optimizer.apply`` (which updates every weight where it lives, on the host or on the
device), then the metrics. Batches are moved to the engine's device once, at the start of their
step; the logs stay arrays until a callback or the progress bar reads them, so a step on a GPU
needs no host synchronisation unless something is printed.
"""
import numbers
import warnings

import numpy as np

from .. import arrays as _arrays
from .. import dtypes as _dtypes
from .. import backend as _backend
from ..autodiff import functions as F
from ..autodiff.tape import GradientTape
from . import compile_utils
from .data_adapters import check_positive_int as _check_positive_int

__all__ = ["Trainer"]


def _pythonify(logs):
    """Logs as Keras returns them: flat, keys sorted, 0-d arrays turned into Python floats."""
    from ..callbacks.logs import plain_logs

    return plain_logs(logs)


def _on_device(value, name):
    """A batch part (``name``: x, y or sample_weight) on the active engine's device (arrays only;
    None and nested parts kept)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return type(value)(_on_device(v, name) for v in value)
    if isinstance(value, dict):
        return {k: _on_device(v, name) for k, v in value.items()}
    return _backend.engine().asarray(_arrays.as_array(value, name))


def _batch_size_of(x):
    first = x
    while isinstance(first, (list, tuple, dict)):
        first = next(iter(first.values())) if isinstance(first, dict) else first[0]
    return int(first.shape[0])


class Trainer:
    """compile / fit / evaluate / predict for a model callable as ``self(x, training=...)``."""

    compiled = False
    optimizer = None
    loss = None
    stop_training = False
    stop_evaluating = False
    stop_predicting = False
    history = None
    _compile_loss = None
    _compile_metrics = None
    _loss_tracker = None
    _compile_config = None
    _eval_iterator = None
    steps_per_execution = 1

    # ---- compile -------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True):
        """Configure training (Keras 3.15's arguments). gpuconv runs eagerly: ``run_eagerly`` and
        ``jit_compile`` are accepted; ``jit_compile=True`` warns and proceeds without it, as Keras
        does for a model that does not support it."""
        from .. import metrics as metrics_module
        from .. import optimizers

        _check_positive_int("steps_per_execution", steps_per_execution, allow_none=False)
        if steps_per_execution != 1:
            # Keras' PyTorch backend has the same limit: one step per call of the train function.
            raise ValueError(f"`steps_per_execution` must be 1. Received: steps_per_execution={steps_per_execution}")
        if jit_compile not in ("auto", True, False, None):
            raise ValueError(f"Argument `jit_compile` must be 'auto' or a boolean. Received: jit_compile={jit_compile!r}")
        if jit_compile is True:
            warnings.warn("Model doesn't support `jit_compile=True`. Proceeding with `jit_compile=False`.",
                          stacklevel=2)
        self.optimizer = optimizers.get(optimizer)
        self.loss = loss
        # A functional model's output names key dict losses / metrics and name the logs.
        output_names = getattr(self, "output_names", None)
        self._compile_loss = (compile_utils.CompileLoss(loss, loss_weights, output_names=output_names)
                              if loss is not None else None)
        self._compile_metrics = (compile_utils.CompileMetrics(metrics, weighted_metrics, output_names=output_names)
                                 if metrics is not None or weighted_metrics is not None else None)
        self._loss_tracker = metrics_module.Mean(name="loss")
        self.run_eagerly = bool(run_eagerly)
        self.jit_compile = False
        self.steps_per_execution = steps_per_execution
        self.stop_training = False
        self.compiled = True
        self._compile_config = {"optimizer": optimizer, "loss": loss, "loss_weights": loss_weights,
                                "metrics": metrics, "weighted_metrics": weighted_metrics,
                                "run_eagerly": run_eagerly, "steps_per_execution": steps_per_execution,
                                "jit_compile": False}

    def get_compile_config(self):
        """The compile arguments, serialized as Keras stores them in a model file ({} when the
        model was not compiled)."""
        if not self.compiled or self._compile_config is None:
            return {}
        config = dict(self._compile_config)
        config["optimizer"] = _serialize_optimizer(self.optimizer)
        for key in ("loss", "metrics", "weighted_metrics"):
            config[key] = _serialize_plain(config[key])
        return config

    def compile_from_config(self, config):
        """``compile(**config)`` from what ``get_compile_config`` returned (resolved only among
        gpuconv's optimizers, losses and metrics and the registered custom objects)."""
        from .. import optimizers

        config = dict(config)
        if isinstance(config.get("optimizer"), dict):
            config["optimizer"] = optimizers.deserialize(config["optimizer"])
        self.compile(**config)
        self._build_for(None)

    def _assert_compile_called(self, method_name):
        if not self.compiled:
            raise ValueError(f"You must call `compile()` before calling `{method_name}()`.")

    # ---- metrics -------------------------------------------------------------------------------
    @property
    def metrics(self):
        """The loss tracker, the compiled metrics, then one loss tracker per output when there
        are several losses (Keras' order)."""
        metrics = []
        if self.compiled:
            metrics.append(self._loss_tracker)
            if self._compile_metrics is not None:
                metrics.append(self._compile_metrics)
            if self._compile_loss is not None:
                metrics.extend(self._compile_loss.metrics)
        return metrics

    @property
    def metrics_names(self):
        return [m.name for m in self.metrics]

    def reset_metrics(self):
        for m in self.metrics:
            m.reset_state()

    def get_metrics_result(self):
        """{name: value} of every metric (the compiled metrics' entries at the top level)."""
        results = {}
        for m in self.metrics:
            value = m.result()
            if isinstance(value, dict):
                results.update(value)
            else:
                results[m.name] = value
        return results

    def _flatten_metrics_in_order(self, logs):
        """``logs`` as a list in ``metrics`` order (a single value alone), Keras' evaluate result.
        As in Keras, the compiled metrics count by their own names (without an output prefix), so
        prefixed or renamed entries come after the named ones, in sorted order."""
        names = []
        for m in self.metrics:
            names += ([sub.name for sub in m.metrics] if isinstance(m, compile_utils.CompileMetrics)
                      else [m.name])
        results = [logs[name] for name in names if name in logs]
        results += [logs[key] for key in sorted(logs) if key not in names]
        return results[0] if len(results) == 1 else results

    # ---- one step ------------------------------------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss plus every loss the layers added (regularizers, activity penalties),
        computed with recorded functions so the tape differentiates the total."""
        losses = []
        if self._compile_loss is not None:
            value = self._compile_loss(y, y_pred, sample_weight)
            if value is not None:
                losses.append(value)
        for extra in self.losses:
            losses.append(_loss_term(extra))
        if not losses:
            raise ValueError("No loss to compute. Provide a `loss` argument in `compile()`.")
        total = losses[0]
        for value in losses[1:]:
            total = F.add(total, value)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(y, y_pred, sample_weight)
        return self.get_metrics_result()

    def train_step(self, data):
        x, y, sample_weight = _unpack(data)
        x, y, sample_weight = _on_device(x, "x"), _on_device(y, "y"), _on_device(sample_weight, "sample_weight")
        with GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            scaled = self.optimizer.scale_loss(loss) if self.optimizer is not None else loss
        self._loss_tracker.update_state(loss, sample_weight=_batch_size_of(x))
        weights = self.trainable_weights
        if weights:
            gradients = tape.gradient(scaled, weights)
            self.optimizer.apply(gradients, weights)
        else:
            warnings.warn("The model does not have any trainable weights.", stacklevel=2)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def test_step(self, data):
        x, y, sample_weight = _unpack(data)
        x, y, sample_weight = _on_device(x, "x"), _on_device(y, "y"), _on_device(sample_weight, "sample_weight")
        y_pred = self(x, training=False)
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False)
        self._loss_tracker.update_state(loss, sample_weight=_batch_size_of(x))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def predict_step(self, data):
        x, _, _ = _unpack(data)
        return self(x, training=False)

    # ---- loops ---------------------------------------------------------------------------------
    def _build_for(self, input_shape):
        """Build the model for ``input_shape`` (batch first; None: only if it is already built)
        and the optimizer on its trainable weights, before any step or callback runs (a callback
        may load or read weights in on_train_begin)."""
        if not self.built and input_shape is not None:
            self.build((None,) + tuple(input_shape[1:]))
        if self.built and self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_weights)

    def _prepare(self, iterator):
        self._build_for(None if self.built else iterator.peek_input_shape())

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1):
        from .. import callbacks as callbacks_module
        from . import data_adapters

        self._assert_compile_called("fit")
        _check_positive_int("batch_size", batch_size)
        _check_epochs(epochs, initial_epoch)
        if validation_split and validation_data is None:
            (x, y, sample_weight), validation_data = data_adapters.train_validation_split(
                (x, y, sample_weight), validation_split=validation_split)
        if validation_data is not None:
            val_x, val_y, val_sample_weight = data_adapters.unpack_x_y_sample_weight(validation_data)
        iterator = data_adapters.EpochIterator(x=x, y=y, sample_weight=sample_weight, batch_size=batch_size,
                                               steps_per_epoch=steps_per_epoch, shuffle=shuffle,
                                               class_weight=class_weight)
        self._prepare(iterator)
        if not isinstance(callbacks, callbacks_module.CallbackList):
            callbacks = callbacks_module.CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                                                      verbose=verbose, epochs=epochs, steps=iterator.num_batches,
                                                      model=self)
        self.stop_training = False
        self._eval_iterator = None
        training_logs = {}
        callbacks.on_train_begin()
        for epoch in range(getattr(self, "_initial_epoch", None) or initial_epoch, epochs):
            self.reset_metrics()
            callbacks.on_epoch_begin(epoch)
            logs = {}
            for step, data in iterator.enumerate_epoch():
                callbacks.on_train_batch_begin(step)
                logs = self.train_step(data)
                callbacks.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            epoch_logs = _pythonify(self._metrics_or_logs(logs))
            if validation_data is not None and _should_eval(epoch, validation_freq):
                if self._eval_iterator is None:
                    self._eval_iterator = data_adapters.EpochIterator(
                        x=val_x, y=val_y, sample_weight=val_sample_weight,
                        batch_size=validation_batch_size or batch_size, steps_per_epoch=validation_steps,
                        shuffle=False)
                val_logs = self.evaluate(callbacks=callbacks, return_dict=True, _iterator=self._eval_iterator)
                epoch_logs.update({f"val_{name}": value for name, value in val_logs.items()})
            callbacks.on_epoch_end(epoch, epoch_logs)
            training_logs = epoch_logs
            if self.stop_training:
                break
        if epochs > 0 and self.optimizer is not None:
            self.optimizer.finalize_variable_values(self.trainable_weights)
        self._eval_iterator = None
        callbacks.on_train_end(logs=training_logs)
        return self.history

    def _metrics_or_logs(self, logs):
        """The metrics' current results when the step returned the standard logs (a custom
        ``train_step`` may return other keys: then its own logs)."""
        results = self.get_metrics_result()
        return results if isinstance(logs, dict) and set(logs) == set(results) else logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        from .. import callbacks as callbacks_module
        from . import data_adapters

        iterator = kwargs.pop("_iterator", None)
        if kwargs:
            raise ValueError(f"Arguments not recognized: {kwargs}")
        self._assert_compile_called("evaluate")
        _check_positive_int("batch_size", batch_size)
        if iterator is None:
            iterator = data_adapters.EpochIterator(x=x, y=y, sample_weight=sample_weight, batch_size=batch_size,
                                                   steps_per_epoch=steps, shuffle=False)
        self._prepare(iterator)
        if not isinstance(callbacks, callbacks_module.CallbackList):
            callbacks = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, verbose=verbose,
                                                      epochs=1, steps=iterator.num_batches, model=self)
        self.stop_evaluating = False
        callbacks.on_test_begin()
        logs = {}
        self.reset_metrics()
        for step, data in iterator.enumerate_epoch():
            callbacks.on_test_batch_begin(step)
            logs = self.test_step(data)
            callbacks.on_test_batch_end(step, logs)
            if self.stop_evaluating:
                break
        logs = _pythonify(self._metrics_or_logs(logs))
        callbacks.on_test_end(logs)
        return logs if return_dict else self._flatten_metrics_in_order(logs)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Outputs of every batch, concatenated into NumPy arrays (Keras 3.15)."""
        from .. import callbacks as callbacks_module
        from . import data_adapters

        _check_positive_int("batch_size", batch_size)
        x = _plain_input(x, self.name)
        if _is_array(x) and x.shape[0] == 0:  # no batch to iterate: the empty output's shape
            return _concat_outputs([self(x, training=False)])
        iterator = data_adapters.EpochIterator(x=x, batch_size=batch_size, steps_per_epoch=steps, shuffle=False)
        if not isinstance(callbacks, callbacks_module.CallbackList):
            callbacks = callbacks_module.CallbackList(callbacks, add_progbar=verbose != 0, verbose=verbose,
                                                      epochs=1, steps=iterator.num_batches, model=self)
        self.stop_predicting = False
        callbacks.on_predict_begin()
        outputs = []
        for step, data in iterator.enumerate_epoch():
            callbacks.on_predict_batch_begin(step)
            batch_outputs = self.predict_step(data)
            outputs.append(batch_outputs)
            callbacks.on_predict_batch_end(step, {"outputs": batch_outputs})
            if self.stop_predicting:
                break
        callbacks.on_predict_end()
        if not outputs:
            raise ValueError("Unexpected result of `predict_function` (Empty batch_outputs). "
                             "Please use `Model.compile(..., run_eagerly=True)`, or `tf.config.run_functions_eagerly(True)` "
                             "for more information of where went wrong, or file a issue/bug to `keras`.")
        return _concat_outputs(outputs)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        from . import data_adapters

        self._assert_compile_called("train_on_batch")
        if class_weight is not None:
            if sample_weight is not None:
                raise ValueError(
                    "Arguments `sample_weight` and `class_weight` cannot be specified at the same time. "
                    f"Received: sample_weight={sample_weight}, class_weight={class_weight}")
            if isinstance(y, (list, tuple, dict)):
                raise ValueError("`class_weight` is only supported for Models with a single output.")
            sample_weight = data_adapters.class_weight_to_sample_weights(y, class_weight)
        self._build_from_batch(x)
        self.reset_metrics()
        logs = _pythonify(self.train_step((x, y, sample_weight)))
        return logs if return_dict else self._flatten_metrics_in_order(logs)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._assert_compile_called("test_on_batch")
        self._build_from_batch(x)
        self.reset_metrics()
        logs = _pythonify(self.test_step((x, y, sample_weight)))
        return logs if return_dict else self._flatten_metrics_in_order(logs)

    def predict_on_batch(self, x):
        return _concat_outputs([self.predict_step((x,))])

    def _build_from_batch(self, x):
        single = not isinstance(x, (list, tuple, dict)) and hasattr(x, "shape")
        self._build_for(x.shape if single else None)


def _is_array(x):
    return isinstance(x, np.ndarray) or _arrays.is_cupy_array(x) or _arrays.is_emulator_array(x)


def _plain_input(x, model_name):
    """``x`` checked for ``predict``: nested Python lists become one array (a list of arrays
    stays a list of inputs), and an array needs a batch axis."""
    if x is None:
        raise TypeError(f'Model "{model_name}" received inputs=None; expected an array.')
    if isinstance(x, (list, tuple)) and not any(_is_array(v) for v in x):
        x = np.asarray(x)
    elif _arrays.is_array_like(x):  # torch, JAX, DLPack: checked as the NumPy array they are
        x = _arrays.as_array(x, "x")
    if _is_array(x) and x.ndim == 0:
        raise ValueError(f"`predict` expects an array with a batch axis. Received: x of shape {x.shape}")
    return x


def _loss_term(loss):
    """A layer's loss as a float 0-d term of the total (Keras casts non-float losses to float32)."""
    if not hasattr(loss, "dtype"):
        loss = np.asarray(loss, dtype="float32")
    if not _dtypes.is_float(np.dtype(loss.dtype)):
        loss = F.cast(loss, "float32")
    return F.sum(loss)


def _unpack(data):
    from . import data_adapters

    return data_adapters.unpack_x_y_sample_weight(data)


def _concat_outputs(outputs):
    """Per-batch outputs (arrays, or flat lists / dicts of arrays) joined along the batch axis;
    a dict comes back with sorted keys, as Keras rebuilds it from its flattened outputs."""
    first = outputs[0]
    if isinstance(first, dict):
        return {k: np.concatenate([_arrays.to_numpy(o[k]) for o in outputs]) for k in sorted(first)}
    if isinstance(first, (list, tuple)):
        return [np.concatenate([_arrays.to_numpy(o[i]) for o in outputs]) for i in range(len(first))]
    return np.concatenate([_arrays.to_numpy(o) for o in outputs])


def _check_epochs(epochs, initial_epoch):
    for name, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"Argument `{name}` must be a non-negative integer. Received: {name}={value!r}")


def _should_eval(epoch, validation_freq):
    epoch = epoch + 1  # one-indexed, as the user counts epochs
    if isinstance(validation_freq, numbers.Integral) and not isinstance(validation_freq, bool):
        return epoch % validation_freq == 0
    if isinstance(validation_freq, list):
        return epoch in validation_freq
    raise ValueError(
        "Expected `validation_freq` to be a list or int. "
        f"Received: validation_freq={validation_freq} of the type {type(validation_freq)}."
    )


def _serialize_optimizer(optimizer):
    from .. import optimizers

    return optimizers.serialize(optimizer)


def _serialize_plain(value):
    """A loss / metric spec as Keras writes it: names stay strings, objects become their dicts."""
    from .. import losses

    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [_serialize_plain(v) for v in value]
    if isinstance(value, dict):
        return {key: _serialize_plain(v) for key, v in value.items()}
    if hasattr(value, "get_config"):
        module = "keras.losses" if isinstance(value, losses.Loss) else "keras.metrics"
        return {"module": module, "class_name": type(value).__name__, "config": value.get_config(),
                "registered_name": None}
    return getattr(value, "__name__", repr(value))

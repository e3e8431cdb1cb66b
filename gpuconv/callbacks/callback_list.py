"""``CallbackList``: the one object a training loop calls, forwarding every hook to each
callback in order, as Keras 3.15's ``keras.callbacks.CallbackList`` does.

Order matters: callbacks that write into the epoch logs (``LearningRateScheduler`` adds
``learning_rate``) must run before ``History`` and ``ProgbarLogger`` read them, so those two are
appended after the user's callbacks, and every callback receives the same logs dict. The argument
conventions (epoch hooks get ``logs`` positionally, batch hooks as a keyword) are Keras', since
``LambdaCallback`` functions are written against them. Keras may run batch-end hooks on a thread
pool; here they run in order on the caller's thread, and a batch hook no callback overrides is
not called at all, so its logs are never brought to the host.
"""
from .callback import Callback, is_default_hook
from .history import History
from .logs import plain_logs
from .progbar_logger import ProgbarLogger

__all__ = ["CallbackList"]


def _flatten(callbacks):
    if isinstance(callbacks, (list, tuple)):
        return [leaf for item in callbacks for leaf in _flatten(item)]
    return [callbacks]


def _checked(callbacks):
    flat = _flatten(callbacks) if callbacks else []
    for index, callback in enumerate(flat):
        if not isinstance(callback, Callback):
            raise TypeError("Expected `callbacks` to be a list of `gpuconv.callbacks.Callback` instances. "
                            f"Received: callbacks[{index}]={callback!r} of type {type(callback).__name__}")
    return flat


def _batch_hook(name):
    """A CallbackList method forwarding ``(batch, logs=logs)`` to every callback's ``name``."""
    def hook(self, batch, logs=None):
        self._each(name, batch, logs=logs, logs_as_keyword=True)

    hook.__name__, hook.__qualname__ = name, f"CallbackList.{name}"
    return hook


def _begin_hook(name):
    """``on_train/test/predict_begin``: opens a begin/end block, then forwards ``(logs)``."""
    def hook(self, logs=None):
        self._in_begin_end_block_count += 1
        self._each(name, logs=logs)

    hook.__name__, hook.__qualname__ = name, f"CallbackList.{name}"
    return hook


def _end_hook(name):
    """``on_train/test/predict_end``: forwards ``(logs)``, then closes the block (an end without
    its begin is an error, as in Keras)."""
    def hook(self, logs=None):
        self._each(name, logs=logs)
        self._in_begin_end_block_count -= 1
        if self._in_begin_end_block_count < 0:
            raise ValueError("`on_xxx_end` called without corresponding `on_xxx_begin`")

    hook.__name__, hook.__qualname__ = name, f"CallbackList.{name}"
    return hook


class CallbackList(Callback):
    """Container calling a list of callbacks together.

    Args:
        callbacks: list of ``Callback`` instances (nested lists are flattened).
        add_history: add a ``History`` unless the list has one.
        add_progbar: add a ``ProgbarLogger`` unless the list has one.
        model: the model the callbacks are used with.
        **params: loop parameters handed to each callback's ``set_params``.
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        super().__init__()
        self.callbacks = _checked(callbacks)
        self._in_begin_end_block_count = 0
        self._history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        self._progbar = next((cb for cb in self.callbacks if isinstance(cb, ProgbarLogger)), None)
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)
        self.set_model(model)
        self.set_params(params)

    def set_params(self, params):
        self.params = params
        if params:
            for callback in self.callbacks:
                callback.set_params(params)

    def set_model(self, model):
        if model is None:
            return
        super().set_model(model)
        if self._history is not None:
            model.history = self._history
        for callback in self.callbacks:
            callback.set_model(model)

    def wants_batch_logs(self, hook_name):
        """Whether any callback overrides ``hook_name`` (e.g. ``"on_train_batch_end"``); a loop
        may skip building per-batch logs nobody reads. The train hooks also count overrides of
        their ``on_batch_*`` aliases."""
        names = [hook_name]
        if hook_name.startswith("on_train_batch_"):
            names.append(hook_name.replace("on_train_batch_", "on_batch_"))
        return any(not is_default_hook(getattr(cb, name)) for cb in self.callbacks for name in names)

    def _each(self, hook_name, *args, logs=None, logs_as_keyword=False):
        if logs_as_keyword and not self.wants_batch_logs(hook_name):
            return  # batch hooks nobody overrides: skip converting (and synchronising) the logs
        logs = plain_logs(logs)
        for callback in self.callbacks:
            hook = getattr(callback, hook_name)
            if logs_as_keyword:
                hook(*args, logs=logs)
            else:
                hook(*args, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._each("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        self._each("on_epoch_end", epoch, logs=logs)


# The batch hooks (``on_batch_*`` and ``on_{train,test,predict}_batch_*``) and the
# ``on_{train,test,predict}_{begin,end}`` hooks, made from the three patterns above.
for _stage in ("", "train_", "test_", "predict_"):
    for _edge in ("begin", "end"):
        setattr(CallbackList, f"on_{_stage}batch_{_edge}", _batch_hook(f"on_{_stage}batch_{_edge}"))
for _stage in ("train", "test", "predict"):
    setattr(CallbackList, f"on_{_stage}_begin", _begin_hook(f"on_{_stage}_begin"))
    setattr(CallbackList, f"on_{_stage}_end", _end_hook(f"on_{_stage}_end"))
del _stage, _edge

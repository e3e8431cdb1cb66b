"""``LambdaCallback``: a callback assembled from plain functions, one per hook (Keras 3.15).

The functions are called with the arguments ``CallbackList`` passes: ``(epoch, logs)`` for epoch
hooks, ``(logs)`` for begin/end hooks, ``(batch, logs=logs)`` for batch hooks. Unlike Keras,
a keyword that names no hook is an error rather than a silently unused attribute.
"""
from .callback import Callback

__all__ = ["LambdaCallback"]

_HOOKS = frozenset(name for name in vars(Callback) if name.startswith("on_"))


class LambdaCallback(Callback):
    """Callback built from functions.

    Args:
        on_epoch_begin, on_epoch_end, on_train_begin, on_train_end, on_train_batch_begin,
        on_train_batch_end: functions for those hooks.
        **kwargs: functions for any other hook, by its name (e.g. ``on_test_end=...``).
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        unknown = sorted(set(kwargs) - _HOOKS)
        if unknown:
            raise ValueError(f"LambdaCallback got keywords that name no callback hook: {unknown}. "
                             f"Hooks are: {sorted(_HOOKS)}")
        hooks = dict(kwargs, on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin, on_train_batch_end=on_train_batch_end)
        for name, function in hooks.items():
            if function is None:
                continue
            if not callable(function):
                raise TypeError(f"Expected `{name}` to be a function. Received: {name}={function!r}")
            setattr(self, name, function)

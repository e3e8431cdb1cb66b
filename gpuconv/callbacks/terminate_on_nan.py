"""``TerminateOnNaN``: stop training at the first batch whose loss is NaN or infinite (Keras
3.15): gracefully through ``model.stop_training``, or at once with ``raise_error=True``."""
import numpy as np

from ..utils.progbar import print_msg
from .callback import Callback

__all__ = ["TerminateOnNaN"]


class TerminateOnNaN(Callback):
    """Stop training when the batch loss is NaN or Inf.

    Args:
        raise_error: raise ``RuntimeError`` at once instead of setting ``model.stop_training``
            (the other callbacks' ``on_train_end`` then does not run).
    """

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. "
                               "Terminating training immediately.")
        print_msg(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True

"""Keras 3's training loop for gpuconv models (``Trainer``: compile, fit, evaluate, predict and
the ``*_on_batch`` methods), the resolution of compiled losses and metrics, and the data
adapters that turn what ``fit`` accepts into batches."""
from .trainer import Trainer  # noqa: F401

__all__ = ["Trainer"]

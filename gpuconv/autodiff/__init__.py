"""Reverse-mode automatic differentiation for gpuconv's eager arrays: ``GradientTape`` and the
recording API (``recording``, ``record``, ``record_identity``) that the ops, layers and
activations call. ``functions`` holds the recorded array functions exported as ``gpuconv.ops.*``;
it is not imported here (it imports the activations, which import this package).
"""
from .tape import GradientTape, record, record_identity, recording, stop_recording  # noqa: F401

__all__ = ["GradientTape", "recording", "record", "record_identity", "stop_recording"]

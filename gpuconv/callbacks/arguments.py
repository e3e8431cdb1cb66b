"""Argument checks the callbacks share, so a bad constructor argument fails at construction with
its name and value, not epochs later inside ``fit``.

Keras 3.15 accepts some of these values and misbehaves later (a negative ``patience`` acts as 0,
``save_freq=0`` saves after every batch); gpuconv rejects them up front.
"""
import numbers

__all__ = ["check_count", "check_real", "check_save_freq"]


def check_count(value, name, minimum=0):
    """``value`` must be an integer >= ``minimum`` (bools are not counts)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"Expected `{name}` to be an integer >= {minimum}. Received: {name}={value!r}")
    return value


def check_real(value, name, optional=False):
    """``value`` must be a real number (or ``None`` where ``optional``)."""
    if value is None and optional:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "None or a number" if optional else "a number"
        raise TypeError(f"Expected `{name}` to be {kind}. Received: {name}={value!r}")
    return value


def check_save_freq(save_freq, message):
    """``"epoch"`` or a positive number of batches; ``message`` is Keras' error for any other
    type, a count below 1 gets gpuconv's own."""
    if save_freq == "epoch":
        return save_freq
    if isinstance(save_freq, bool) or not isinstance(save_freq, numbers.Integral):
        raise ValueError(message)
    if save_freq < 1:
        raise ValueError(f"Expected `save_freq` to be 'epoch' or an integer >= 1. Received: save_freq={save_freq!r}")
    return save_freq

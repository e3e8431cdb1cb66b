"""Turning the logs a training loop produces into the plain dict callbacks receive.

A gpuconv step returns its loss and metrics as NumPy or device (CuPy / emulator) scalars; Keras
hands callbacks Python floats, with nested dicts flattened and keys sorted (which is also why
Keras prints metrics in alphabetical order). Converting once here, in ``CallbackList``, keeps every
callback free of device types and of repeated host synchronisations.
"""
import numpy as np

from ..arrays import to_numpy, is_cupy_array

__all__ = ["plain_logs", "plain_value", "as_float"]


def plain_value(value):
    """``float(value)`` where that is meaningful (numbers, 0-d and one-element arrays on any
    device), else ``value`` unchanged (strings, longer arrays, objects)."""
    if is_cupy_array(value):
        value = to_numpy(value)
    if isinstance(value, np.ndarray):
        if value.size != 1 or value.dtype.kind not in "biuf":
            return value
        value = value.reshape(())
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _flat_items(logs):
    for key, value in sorted((logs or {}).items()):
        if isinstance(value, dict):
            yield from _flat_items(value)
        else:
            yield key, value


def _cupy_scalars_to_host(values):
    """{index: float} for the one-element numeric CuPy arrays among ``values``, copied to the host
    in one transfer per GPU (one synchronisation for all of a step's metrics, not one each)."""
    by_device = {}
    for index, value in enumerate(values):
        if is_cupy_array(value) and value.size == 1 and value.dtype.kind in "biuf":
            by_device.setdefault(value.device.id, []).append(index)
    if not by_device:
        return {}
    import cupy

    host = {}
    for device_id, indices in by_device.items():
        with cupy.cuda.Device(device_id):
            packed = cupy.concatenate([values[i].reshape(1).astype(cupy.float64) for i in indices]).get()
        host.update(zip(indices, (float(v) for v in packed)))
    return host


def plain_logs(logs):
    """A new flat dict, keys sorted (a nested dict's keys sort under its own key, as Keras
    flattens them), values through ``plain_value``."""
    items = list(_flat_items(logs))
    host = _cupy_scalars_to_host([value for _, value in items])
    return {key: host[i] if i in host else plain_value(value) for i, (key, value) in enumerate(items)}


def as_float(value):
    """A learning rate or metric (Python number, array, gpuconv ``Variable``) as a Python float."""
    return float(to_numpy(value).reshape(()))

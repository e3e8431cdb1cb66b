"""Layer weights.

A :class:`Variable` keeps its value on the host (NumPy, the layout Keras uses) and a per-device
CuPy copy made on first use by a GPU call. The copy is reused until ``assign`` changes the value,
so weights are uploaded once, not on every call.
"""
import threading

import numpy as np

from . import arrays as _arrays
from .autodiff import tape as _tape


def check_numeric(value, path):
    """Refuse what a float weight cannot hold without silently losing information: complex values
    (NumPy would drop the imaginary part with only a warning), and object, string, bytes or
    datetime arrays. Real floats, integers and bools are cast, as Keras does."""
    dtype = np.asarray(value).dtype  # callers pass host NumPy arrays: no copy
    if dtype.kind not in "fiub":
        why = "complex values would lose their imaginary part" if dtype.kind == "c" else "it is not a real number array"
        raise TypeError(f"Cannot assign a value of dtype {dtype} to weight '{path}': {why}.")


class Variable:
    def __init__(self, value, *, name, path, trainable=True, regularizer=None, constraint=None):
        self._value = np.array(value)  # owned copy: callers' arrays are never aliased
        self.name = name
        self.path = path
        self.trainable = trainable
        self.regularizer = regularizer
        self.constraint = constraint
        self._device_copies = {}
        self._lock = threading.Lock()

    @property
    def shape(self):
        return self._value.shape

    @property
    def dtype(self):
        return str(self._value.dtype)

    @property
    def value(self):
        value = self._value
        if _tape._active():  # a tape watching this variable links the array read to it
            _tape.variable_read(self, value)
        return value

    def numpy(self):
        return self._value.copy()

    def assign(self, value):
        value = _arrays.to_numpy(value)
        check_numeric(value, self.path)
        if tuple(value.shape) != self.shape:
            raise ValueError(
                f"Cannot assign a value of shape {tuple(value.shape)} to variable '{self.path}' of shape {self.shape}."
            )
        # Stored as given: Keras applies constraints only after an optimizer update, never in
        # set_weights/assign, so loading weights must not change them.
        new = np.array(value, dtype=self._value.dtype)
        with self._lock:
            self._value = new
            self._device_copies = {}

    def array_like(self, x):
        """The value on the same device as ``x``: NumPy for host inputs, a cached CuPy copy otherwise
        (a cached emulator device array, device 0, for a cuda-emulator array). Under a tape that
        watches this variable, the array returned is linked to it (``tape.gradient`` finds it)."""
        value = self._array_like(x)
        if _tape._active():
            _tape.variable_read(self, value)
        return value

    def _array_like(self, x):
        if _arrays.is_emulator_array(x):
            from .emulator import xp

            with self._lock:
                copy = self._device_copies.get(0)
                if copy is None:
                    copy = self._device_copies[0] = xp.asarray(self._value)
                return copy
        if not _arrays.is_cupy_array(x):
            return self._value
        import cupy

        dev = x.device.id
        with self._lock:
            copy = self._device_copies.get(dev)
            if copy is None:
                with cupy.cuda.Device(dev):
                    copy = cupy.asarray(self._value)
                self._device_copies[dev] = copy
            return copy

    # Locks cannot be pickled or deep-copied; the device copies are a cache. A copy gets fresh ones.
    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_lock"]
        state["_device_copies"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __array__(self, dtype=None, copy=None):
        return self._value if dtype is None else self._value.astype(dtype)

    def __repr__(self):
        return f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}>"

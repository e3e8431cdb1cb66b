"""Layer weights.

A :class:`Variable` keeps its value on the host (NumPy, the layout Keras uses) and a per-device
CuPy copy made on first use by a GPU call. The copy is reused until ``assign`` changes the value,
so weights are uploaded once, not on every call.

Training on a GPU updates weights where they live: ``array_for_update(like)`` hands an optimizer
the array to update in place on ``like``'s device, and that copy becomes the value's authority
(the host copy is refreshed from it only when something on the host reads the value), so a step
never moves weights between host and device.
"""
import threading

import numpy as np

from . import arrays as _arrays
from . import dtypes as _dtypes
from .autodiff import tape as _tape


def check_numeric(value, path):
    """Refuse what a float weight cannot hold without silently losing information: complex values
    (NumPy would drop the imaginary part with only a warning), and object, string, bytes or
    datetime arrays. Real floats, integers and bools are cast, as Keras does."""
    dtype = np.asarray(value).dtype  # callers pass host NumPy arrays: no copy
    if _dtypes.kind(dtype) not in "fiub":
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
        self._authority = None  # the device key whose copy is newer than the host's, else None
        self._lock = threading.Lock()

    @property
    def shape(self):
        return self._value.shape

    @property
    def dtype(self):
        return str(self._value.dtype)

    def _host(self):
        """The host value, first brought up to date from a device copy an optimizer updated."""
        if self._authority is not None:
            with self._lock:
                if self._authority is not None:
                    self._value[...] = _arrays.to_numpy(self._device_copies[self._authority])
                    self._authority = None
        return self._value

    @property
    def value(self):
        value = self._host()
        if _tape._active():  # a tape watching this variable links the array read to it
            _tape.variable_read(self, value)
        return value

    def numpy(self):
        return self._host().copy()

    def array_for_update(self, like):
        """The array an optimizer updates in place, on ``like``'s device (NumPy: the host value).
        Every other copy is dropped, so no stale value can be read after the update; a device
        copy stays the authority until the host reads the value."""
        # ``_version`` counts the changes (an update handed out here, an assign): caches of values
        # derived from the weight (gpuconv.fusion's folded kernels) compare it.
        self._version = getattr(self, "_version", 0) + 1
        key = self._device_key(like)
        if key is None:
            value = self._host()
            with self._lock:
                self._device_copies = {}
            return value
        copy = self._array_like(like)
        with self._lock:
            self._device_copies = {key: copy}
            self._authority = key
        return copy

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
            self._authority = None
        self._version = getattr(self, "_version", 0) + 1  # after the new value: a reader never pairs it with the old

    def array_like(self, x):
        """The value on the same device as ``x``: NumPy for host inputs, a cached CuPy copy otherwise
        (a cached emulator device array, device 0, for a cuda-emulator array). Under a tape that
        watches this variable, the array returned is linked to it (``tape.gradient`` finds it)."""
        value = self._array_like(x)
        if _tape._active():
            _tape.variable_read(self, value)
        return value

    @staticmethod
    def _device_key(x):
        """Where ``x`` lives: None (host), "emulator", or a CUDA device id."""
        if _arrays.is_emulator_array(x):
            return "emulator"
        return x.device.id if _arrays.is_cupy_array(x) else None

    def _array_like(self, x):
        key = self._device_key(x)
        if self._authority is not None and key != self._authority:
            self._host()  # another device's copy is newer: bring the host up to date first
        if key is None:
            return self._value
        with self._lock:
            copy = self._device_copies.get(key)
            if copy is None:
                copy = self._device_copies[key] = self._upload(key)
            return copy

    def _upload(self, key):
        if key == "emulator":
            from .emulator import xp

            return xp.asarray(self._value)
        import cupy

        with cupy.cuda.Device(key):
            return cupy.asarray(self._value)

    # Locks cannot be pickled or deep-copied; the device copies are a cache. A copy gets fresh ones.
    def __getstate__(self):
        self._host()
        state = dict(self.__dict__)
        del state["_lock"]
        state["_device_copies"] = {}
        state["_authority"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __array__(self, dtype=None, copy=None):
        value = self._host()
        return value if dtype is None else value.astype(dtype)

    def __repr__(self):
        return f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}>"

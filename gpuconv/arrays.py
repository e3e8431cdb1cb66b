"""Array utilities: which library owns an array, and how to bring it to the host.

They sit on the lowest floor (no gpuconv module is imported at load time) so that the backend,
the engines and the layers can all use them without an import circle: ``backend`` imports the
NumPy engine, and the NumPy engine needs ``to_numpy``. None of them imports CuPy or the emulator
to answer a question about an array that is not theirs (``array_module`` loads CuPy or the
emulator's ``xp`` only for an array that already belongs to it).
"""
import sys

import numpy as np


def is_cupy_array(x):
    mod = type(x).__module__
    return mod.startswith("cupy") and hasattr(x, "__cuda_array_interface__")


def is_emulator_array(x):
    """Whether ``x`` is a cuda-emulator device array (never imports the emulator to answer)."""
    runtime = sys.modules.get("gpuconv.emulator.runtime")
    return runtime is not None and isinstance(x, runtime.DeviceArray)


def array_module(x):
    """numpy or cupy, whichever owns ``x`` (``gpuconv.emulator.xp``, CuPy's stand-in, for an
    emulator device array, so results stay on the emulated device as CuPy's stay on the GPU)."""
    if is_cupy_array(x):
        import cupy

        return cupy
    if is_emulator_array(x):
        from .emulator import xp

        return xp
    return np


def to_numpy(x):
    """Bring any array (NumPy, CuPy, the emulator's device arrays, or array-like) to a NumPy array."""
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)  # an emulator DeviceArray (an ndarray subclass) becomes a plain ndarray view

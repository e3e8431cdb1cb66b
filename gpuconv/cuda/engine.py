"""The CUDA engine: the engine contract of ``gpuconv/cpu/__init__.py`` on CuPy arrays.

Same names and signatures as ``gpuconv.cpu``. Arrays are CuPy arrays on the current device;
``asarray`` moves NumPy inputs there and refuses CuPy arrays of another device
(:class:`gpuconv.errors.DeviceMismatchError`). Every kernel runs on CuPy's current stream.
conv and conv_transpose live in this package's conv.py / conv_transpose.py; depthwise, separable,
pooling, upsampling and locally connected in their own modules. A missing module makes this
import fail, which ``gpuconv.backend.probe_cuda`` reports as the reason CUDA is unavailable.
"""
import numpy as np

import cupy

from ..errors import DeviceMismatchError
from .conv import conv
from .conv_transpose import conv_transpose
from .depthwise import depthwise_conv
from .epilogue import FUSED_ACTIVATIONS
from .locally_connected import locally_connected
from .pooling import pool
from .separable import separable_conv
from .upsample import upsample

NAME = "cuda"

__all__ = [
    "NAME", "FUSED_ACTIVATIONS", "asarray", "conv", "conv_transpose", "depthwise_conv", "separable_conv",
    "pool", "locally_connected", "upsample",
]


def asarray(x):
    """``x`` as a C-contiguous CuPy array on the current device (copies only when needed)."""
    if isinstance(x, cupy.ndarray):
        current = cupy.cuda.Device().id
        if x.device.id != current:
            raise DeviceMismatchError(
                f"Array is on GPU {x.device.id} but the current device is GPU {current}; "
                f"move it with cupy.asarray under `with cupy.cuda.Device({current}):` first."
            )
        return x if x.flags.c_contiguous else cupy.ascontiguousarray(x)
    return cupy.asarray(np.ascontiguousarray(np.asarray(x)))

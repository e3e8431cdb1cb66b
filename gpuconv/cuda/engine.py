"""The CUDA engine: the engine contract of ``gpuconv/cpu/__init__.py`` on CuPy arrays.

Same names and signatures as ``gpuconv.cpu``. Arrays live on the active device of the seam
(``device.py``): CuPy arrays on CuPy's current device, or the cuda-emulator's host-memory device
arrays. ``asarray`` moves NumPy inputs there and refuses CuPy arrays of another device
(:class:`gpuconv.errors.DeviceMismatchError`). Every kernel runs on the device's current stream.
conv and conv_transpose live in this package's conv.py / conv_transpose.py; depthwise, separable,
pooling, upsampling and locally connected in their own modules. A missing module makes this
import fail, which ``gpuconv.backend.probe_cuda`` reports as the reason CUDA is unavailable.
"""
from . import device as _device
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
    """``x`` as a C-contiguous array on the active device (copies only when needed)."""
    return _device.active().contiguous(x)

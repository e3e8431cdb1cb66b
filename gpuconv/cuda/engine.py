"""The CUDA engine: the contract of ``gpuconv.engines.Engine`` on device arrays.

One set of host functions serves both devices of the seam (``device.py``): CuPy's GPU and the
cuda-emulator. The module itself runs on the active device (the global backend's); ``on_device``
binds the same functions to one device for explicit engines (``ops.conv(..., engine="cuda")``)
without touching the global choice. ``asarray`` moves NumPy inputs to the device and refuses
CuPy arrays of another GPU (:class:`gpuconv.errors.DeviceMismatchError`). Each op lives in the
module of the same name as the CPU engine's (``conv``, ``conv_transpose``, ``depthwise``,
``separable``, ``pooling``, ``upsampling``, ``locally_connected``); a missing one makes this import
fail, which ``gpuconv.backend.probe_cuda`` reports as the reason CUDA is unavailable.
bfloat16 runs natively on the tensor-core convolution and transposed convolution and on the
optimizer update (its own bfloat16 kernel), and as float32 on every other kernel
(``bfloat16_round_trip.py``; the wrapping below is the one place that decides).
"""
import functools

from . import bfloat16_round_trip as _bf16
from . import conv as _conv
from . import conv_transpose as _conv_transpose
from . import device as _device
from .conv import conv
from .conv_backward import conv_backward_fused, conv_backward_weights, conv_transpose_backward_fused
from .conv_transpose import conv_transpose
from .depthwise import depthwise_conv
from . import depthwise_backward  # noqa: F401  (registers its kernels; conv_backward_weights dispatches to it)
from .epilogue import FUSED_ACTIVATIONS
from .locally_connected import locally_connected
from .locally_connected_backward import locally_connected_backward_input, locally_connected_backward_weights
from .optimizer_updates import optimizer_update
from .pooling import pool
from .pooling_backward import pool_backward
from .separable import separable_conv
from .upsampling import upsample
from .upsampling_backward import upsample_backward

NAME = "cuda"


def _conv_on_tensor_cores(problem, x, kernel, bias):
    """Whether ``conv`` runs this call on the tensor-core kernels, which have bfloat16 builds."""
    return _conv.on_tensor_cores(problem, x, kernel)


def _conv_transpose_on_tensor_cores(problem, x, kernel, bias):
    return _conv_transpose.on_tensor_cores(problem, x, kernel)


conv = _bf16.through_float32(conv, native=_conv_on_tensor_cores)
conv_transpose = _bf16.through_float32(conv_transpose, native=_conv_transpose_on_tensor_cores)
(depthwise_conv, separable_conv, pool, locally_connected, upsample, conv_backward_weights,
 conv_backward_fused, conv_transpose_backward_fused, pool_backward, upsample_backward,
 locally_connected_backward_input, locally_connected_backward_weights) = (
    _bf16.through_float32(fn) for fn in (
        depthwise_conv, separable_conv, pool, locally_connected, upsample, conv_backward_weights,
        conv_backward_fused, conv_transpose_backward_fused, pool_backward, upsample_backward,
        locally_connected_backward_input, locally_connected_backward_weights))

__all__ = [
    "NAME", "FUSED_ACTIVATIONS", "asarray", "conv", "conv_transpose", "depthwise_conv", "separable_conv",
    "pool", "locally_connected", "upsample", "on_device",
    "conv_backward_weights", "conv_backward_fused", "conv_transpose_backward_fused",
    "pool_backward", "upsample_backward", "locally_connected_backward_input", "locally_connected_backward_weights",
    "optimizer_update",
]


def asarray(x):
    """``x`` as a C-contiguous array on the active device (copies only when needed)."""
    return _device.active().contiguous(x)


class _DeviceEngine:
    """This module's functions, each run with ``device`` as the thread's device."""

    FUSED_ACTIVATIONS = FUSED_ACTIVATIONS

    def __init__(self, device_name):
        self.NAME = device_name
        for name, fn in (("asarray", asarray), ("conv", conv), ("conv_transpose", conv_transpose),
                         ("depthwise_conv", depthwise_conv), ("separable_conv", separable_conv), ("pool", pool),
                         ("locally_connected", locally_connected), ("upsample", upsample),
                         ("conv_backward_weights", conv_backward_weights),
                         ("conv_backward_fused", conv_backward_fused),
                         ("conv_transpose_backward_fused", conv_transpose_backward_fused),
                         ("pool_backward", pool_backward), ("upsample_backward", upsample_backward),
                         ("locally_connected_backward_input", locally_connected_backward_input),
                         ("locally_connected_backward_weights", locally_connected_backward_weights),
                         ("optimizer_update", optimizer_update)):
            setattr(self, name, self._bound(fn))

    def _bound(self, fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            with _device.using(self.NAME):
                return fn(*args, **kwargs)

        return run

    def __repr__(self):
        return f"<gpuconv CUDA engine on {self.NAME!r}>"


_bound_engines = {}


def on_device(device_name):
    """The engine bound to ``device_name`` ('cuda' or 'cuda-emulator'), one per name."""
    engine = _bound_engines.get(device_name)
    if engine is None:
        _device.get(device_name)  # refuses an unknown name
        engine = _bound_engines.setdefault(device_name, _DeviceEngine(device_name))
    return engine

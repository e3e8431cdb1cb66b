"""The NumPy engine's entry point: the contract of ``gpuconv.engines.Engine`` on host arrays.

Every function runs under ``_quiet`` (IEEE results, no NumPy warnings for inf/NaN arithmetic).
``asarray`` brings any array to the host (a CuPy array is copied down, a NumPy one passes).
"""
from ..arrays import to_numpy as asarray
from . import conv as _conv
from . import conv_backward as _conv_backward
from . import conv_transpose as _conv_transpose
from . import depthwise as _depthwise
from . import locally_connected as _locally_connected
from . import locally_connected_backward as _locally_connected_backward
from . import optimizer_updates as _optimizer_updates
from . import output_gradient as _output_gradient
from . import pooling as _pooling
from . import pooling_backward as _pooling_backward
from . import separable as _separable
from . import upsampling as _upsampling
from . import upsampling_backward as _upsampling_backward
from ._epilogue import FUSED_ACTIVATIONS
from ._quiet import quiet as _quiet

conv = _quiet(_conv.conv)
conv_transpose = _quiet(_conv_transpose.conv_transpose)
depthwise_conv = _quiet(_depthwise.depthwise_conv)
separable_conv = _quiet(_separable.separable_conv)
pool = _quiet(_pooling.pool)
locally_connected = _quiet(_locally_connected.locally_connected)
upsample = _quiet(_upsampling.upsample)

# Gradients (issue 11): problem first, then the arrays, as the forward functions.
conv_backward_weights = _quiet(_conv_backward.conv_backward_weights)
pool_backward = _quiet(_pooling_backward.pool_backward)
upsample_backward = _quiet(_upsampling_backward.upsample_backward)
locally_connected_backward_input = _quiet(_locally_connected_backward.locally_connected_backward_input)
locally_connected_backward_weights = _quiet(_locally_connected_backward.locally_connected_backward_weights)
# Beside the contract (gradients uses it where an engine has it): a fused relu / relu6's
# derivative and the bias gradient in one pass over dy.
output_gradient = _quiet(_output_gradient.output_gradient)

# Training (issue 12): one optimizer step over all variables, in place.
optimizer_update = _quiet(_optimizer_updates.optimizer_update)

NAME = "numpy"

__all__ = [
    "NAME", "FUSED_ACTIVATIONS", "asarray", "conv", "conv_transpose", "depthwise_conv", "separable_conv",
    "pool", "locally_connected", "upsample", "conv_backward_weights", "pool_backward", "upsample_backward",
    "locally_connected_backward_input", "locally_connected_backward_weights", "output_gradient", "optimizer_update",
]

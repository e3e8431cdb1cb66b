"""gpuconv: Keras-compatible convolution layers on hand-written CUDA kernels, with a NumPy engine
as CPU fallback and test oracle.

Importing gpuconv never touches CUDA; the backend ('auto' | 'cuda' | 'numpy') resolves on first use.
"""
__version__ = "0.1.0"

import os as _os

# Set before NumPy loads OpenBLAS, which reads it once: OpenBLAS's idle threads spin for 2**28
# cycles (~0.1 s) after every GEMM, holding a core that the NumPy engine's elementwise passes
# (im2col, epilogues, pooling, each right after a GEMM) then share; 2**4 cycles lets them sleep
# at once. The seed CNN's training epoch on the 2-core bench machine: 46-53 -> 39-44 ms per step.
# A value the user set is kept; where NumPy was imported before gpuconv, OpenBLAS keeps its own.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from . import _host_malloc

_host_malloc.keep_freed_memory()  # freed host blocks reused, not page-faulted back in (see there)

from . import activations, backend, constraints, geometry, initializers, layers, ops, regularizers, saving
from . import callbacks, fusion, losses, metrics, optimizers, utils
from .arrays import to_numpy
from .autodiff import GradientTape
from .backend import backend_info, get_backend, set_backend
from .errors import DeviceMismatchError, DeviceUnavailableError, KernelCompileError, KernelSourceNotFoundError
from .geometry import image_data_format, set_image_data_format
from .layers.base_layer import clear_session
from .layers.core import Input
from .models import *  # noqa: F401,F403  (Model, Sequential)

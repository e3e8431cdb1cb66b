"""gpuconv: Keras-compatible convolution layers on hand-written CUDA kernels, with a NumPy engine
as CPU fallback and test oracle.

Importing gpuconv never touches CUDA; the backend ('auto' | 'cuda' | 'numpy') resolves on first use.
"""
__version__ = "0.1.0"

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

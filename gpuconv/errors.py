"""Exception classes.

Each subclasses the built-in a caller would already catch: argument problems are
ValueError/TypeError (raised directly, with Keras' texts where Keras has one), environment
problems are RuntimeError, a missing kernel file is FileNotFoundError.
"""


class DeviceUnavailableError(RuntimeError):
    """The CUDA backend was asked for but CuPy, the driver or a device is missing.

    The message carries the probe's reason (ImportError text, driver status, ...).
    """


class KernelCompileError(RuntimeError):
    """NVRTC rejected a kernel. The message names the file, the instantiation, the options
    and carries the compiler log; the original exception is chained as ``__cause__``."""

    def __init__(self, message, *, source_file=None, name_expression=None, options=(), log=""):
        super().__init__(message)
        self.source_file = source_file
        self.name_expression = name_expression
        self.options = tuple(options)
        self.log = log


class KernelSourceNotFoundError(FileNotFoundError):
    """A ``kernels/*.cu`` resource is missing from the installed ``gpuconv.kernels`` package."""


class DeviceMismatchError(TypeError):
    """Arrays of one call live on different devices (host vs GPU, or two GPUs)."""


class AllocationTooLargeError(MemoryError, ValueError):
    """An output or workspace the NumPy engine would need is larger than the memory it may use
    (``gpuconv.cpu.memory.allocation_limit``), found before anything is allocated.

    Both a ``MemoryError`` (what NumPy's allocator would have raised, late) and a ``ValueError``
    (what NumPy raises for an array too big to index, and what an impossible argument is): the
    message names the shape, the dtype, the bytes and the limit.
    """

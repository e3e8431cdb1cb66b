"""The device seam: the only door between the CUDA engine's host code and a device.

Everything in ``gpuconv/cuda`` above this line (planning, algorithm choice, index widths, grid
sizing, argument marshalling, the compile registry and its caches) is the same code whichever
device runs the kernels. Below it there are two implementations of :class:`Device`:

- ``'cuda'``: CuPy on an NVIDIA GPU (``gpuconv/cuda/cupy_device.py``), kernels compiled by NVRTC;
- ``'cuda-emulator'``: the same kernel sources compiled by the host C++ compiler and run on the
  CPU with CUDA's semantics (``gpuconv/emulator``), arrays in host memory.

``active()`` is the device the engine uses now; ``gpuconv.set_backend`` chooses it through
``use(name)``. Until something chooses, it is the CuPy device, so code that has always talked to
CuPy (and the tests that replace its compiler hooks) keeps doing so.
"""
import contextlib
import threading
from typing import Protocol, runtime_checkable

DEVICE_NAMES = ("cuda", "cuda-emulator")


@runtime_checkable
class Device(Protocol):
    """What the CUDA engine needs from a device; nothing else is allowed to reach one."""

    name: str

    def module_key(self, filename, names):
        """A hashable key of everything that makes a compiled module of ``filename`` differ."""

    def compile_unit(self, filename, name_expression):
        """The registered instantiations of ``filename`` compiled together with
        ``name_expression`` (a tuple that contains it, the same for each of its members)."""

    def load_kernels(self, filename, names):
        """``{name expression: kernel}`` for the instantiations ``names`` of one source file."""

    def limits(self):
        """:class:`gpuconv.cuda.launch.DeviceLimits` of this device."""

    def launch(self, kernel, grid, block, args, shared_mem):
        """Run ``kernel`` asynchronously on the current stream; raises KernelLaunchError."""

    def synchronize(self):
        """Wait for every launch so far; raises KernelLaunchError for a failed one."""

    def empty(self, shape, dtype):
        """An uninitialised C-contiguous device array."""

    def contiguous(self, array):
        """``array`` (device or host) as a C-contiguous array on this device; copies only when needed."""

    def is_device_array(self, array):
        """Whether ``array`` lives on this device."""

    def to_host(self, array):
        """A NumPy copy of a device array."""

    def pointer(self, array):
        """The device address of ``array``'s first element (alignment decisions)."""

    def transpose(self, array, axes):
        """A view of ``array`` with its axes permuted (the re-layouts of the host code)."""

    def view(self, array, index):
        """The view ``array[index]``, ``index`` a tuple of slices (basic indexing, steps of
        either sign: the stride phases' taps of a transposed convolution's kernel)."""

    def set_memory_limit(self, nbytes):
        """Cap the bytes this device may hold in arrays (None: no cap)."""


_lock = threading.Lock()
_active = None
_instances = {}


def _create(name):
    if name == "cuda":
        from .cupy_device import CupyDevice

        return CupyDevice()
    if name == "cuda-emulator":
        from ..emulator.device import EmulatorDevice

        return EmulatorDevice()
    raise ValueError(f"Invalid value for argument `device`. Expected one of {DEVICE_NAMES}. Received: device={name!r}")


def get(name):
    """The (single) device object called ``name``."""
    with _lock:
        dev = _instances.get(name)
        if dev is None:
            dev = _instances[name] = _create(name)
        return dev


def use(name):
    """Make ``name`` the device the CUDA engine runs on."""
    global _active
    dev = get(name)
    with _lock:
        _active = dev
    return dev


_override = threading.local()


@contextlib.contextmanager
def using(name):
    """Run the block on device ``name`` in this thread only (an explicit engine of one call:
    ``gpuconv.ops.conv(..., engine="cuda-emulator")``), whatever the global choice is. ``name``
    may also be a device object (``dry_run.DryRunDevice``)."""
    dev = get(name) if isinstance(name, str) else name
    previous = getattr(_override, "device", None)
    _override.device = dev
    try:
        yield dev
    finally:
        _override.device = previous


def active():
    """The device the CUDA engine runs on now: this thread's :func:`using` device, else the
    global one (the CuPy device until something else is chosen)."""
    dev = getattr(_override, "device", None) or _active
    return dev if dev is not None else use("cuda")

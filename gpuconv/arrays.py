"""Array utilities: which library owns an array, and how to bring it to the host.

They sit on the lowest floor (no gpuconv module is imported at load time) so that the backend,
the engines and the layers can all use them without an import circle: ``backend`` imports the
NumPy engine, and the NumPy engine needs ``to_numpy``. None of them imports CuPy or the emulator
to answer a question about an array that is not theirs (``array_module`` loads CuPy or the
emulator's ``xp`` only for an array that already belongs to it).

``as_array`` is the one door for arrays of other libraries (PyTorch, JAX, anything that speaks
``__dlpack__``, ``__cuda_array_interface__`` or ``__array__``): every place an input enters
gpuconv (layers, ``Sequential``, ``Input``, ops, the training data adapters) calls it, so all
of them accept the same objects and refuse the same ones with the same words.
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


# The protocols ``as_array`` reads, in the order it prefers them: DLPack first (a view, on the
# device where the memory is), then the CUDA and NumPy array interfaces.
_PROTOCOLS = ("__dlpack__", "__cuda_array_interface__", "__array__", "__array_interface__")
# dlpack.h's DLDeviceType of CUDA device memory (kDLCUDA): taken by CuPy. Every other device
# type goes to NumPy, which takes host memory (kDLCPU, pinned and managed memory) and refuses
# the rest with its own message.
_DLPACK_CUDA = 2


def is_array_like(x):
    """Whether ``x`` is a NumPy / CuPy / emulator array or exposes one through a protocol
    ``as_array`` reads. Only the type is inspected: a property (torch's
    ``__cuda_array_interface__`` on a CPU tensor raises) is never evaluated."""
    return isinstance(x, np.ndarray) or is_cupy_array(x) or any(hasattr(type(x), p) for p in _PROTOCOLS)


def _in_cuda_memory(x):
    """Whether ``x`` (not an ndarray) holds CUDA device memory, by what it says of itself."""
    dlpack_device = getattr(type(x), "__dlpack_device__", None)
    if dlpack_device is not None:
        return int(dlpack_device(x)[0]) == _DLPACK_CUDA
    return hasattr(type(x), "__cuda_array_interface__") and not hasattr(type(x), "__dlpack__")


def _requires_grad(x):
    try:
        return getattr(x, "requires_grad", False) is True
    except Exception:  # a property that raises says nothing about autograd
        return False


class _Refusal(TypeError):
    """A refusal ``as_array`` words itself (raised as it is, never re-wrapped)."""


def _subject(name, owner):
    return f"Argument `{name}`" + (f" of {owner}" if owner else "")


def _cuda_view(x, subject):
    """``x``, CUDA memory, as a CuPy array over the same memory (no copy): DLPack, synchronised
    with CuPy's current stream by the producer, or the CUDA array interface."""
    try:
        import cupy
    except ImportError as e:
        raise _Refusal(
            f"{subject} is a CUDA array ({type(x).__module__}.{type(x).__qualname__}); gpuconv takes "
            "device memory through CuPy, which is not installed. Install CuPy, or move the array to "
            "the host first (`.cpu()` for a torch tensor)."
        ) from e
    return cupy.from_dlpack(x) if hasattr(type(x), "__dlpack__") else cupy.asarray(x)


def _torch_bfloat16_view(x):
    """A host torch bfloat16 tensor as an ml_dtypes bfloat16 view of its memory, or None for
    anything else. NumPy's DLPack import and torch's ``numpy()`` both refuse bfloat16; the same
    bits exported as int16 are not refused, and viewed as bfloat16 they are the tensor. A tensor
    that requires grad is left to the protocols, which refuse it with the reason ``as_array`` words."""
    if not type(x).__module__.startswith("torch") or str(getattr(x, "dtype", "")) != "torch.bfloat16":
        return None
    if _requires_grad(x):
        return None
    import torch

    from .dtypes import bfloat16  # lowest floor: gpuconv.dtypes imports only NumPy

    return np.from_dlpack(x.view(torch.int16)).view(bfloat16())


def _host_view(x):
    """``x`` as a NumPy array: through DLPack (a view of the producer's memory), else through
    ``__array__`` / the buffer protocols (``np.asarray``: a view where the producer allows one;
    lists and scalars are copied as they always were). A torch bfloat16 tensor, which neither
    protocol exports, is read as its bits (:func:`_torch_bfloat16_view`)."""
    bf16 = _torch_bfloat16_view(x)
    if bf16 is not None:
        return bf16
    if hasattr(type(x), "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except Exception:
            if not hasattr(type(x), "__array__"):
                raise
            # A dtype DLPack cannot describe, or a producer whose DLPack export refuses what its
            # __array__ allows: the second protocol decides (and raises its own reason).
    return np.asarray(x)


def as_array(value, name, owner=None):
    """``value`` as a NumPy or CuPy array, whichever owns its memory, without a copy where the
    protocols allow one; the caller's object is never modified.

    NumPy, CuPy and emulator arrays pass unchanged. An object in CUDA memory (``__dlpack__`` with
    a CUDA ``__dlpack_device__``, or ``__cuda_array_interface__``) becomes a CuPy view of the same
    device pointer; any other object is read through ``np.from_dlpack`` or ``np.asarray``. Which
    engine the result then runs on is the engine's business (its ``asarray`` copies between host
    and device where needed). dtypes are not judged here: the callers refuse what they refuse for
    NumPy input. ``name`` and ``owner`` (e.g. ``'layer "conv2d"'``) name the argument in the
    TypeError raised for None, an object no protocol converts, or a torch tensor that requires
    grad (gpuconv is no part of torch's autograd: detaching is the caller's decision)."""
    if isinstance(value, np.ndarray) or is_cupy_array(value):
        return value
    subject = _subject(name, owner)
    if value is None:
        raise TypeError(f"{subject} must be an array. Received: {name}=None")
    received = f"{type(value).__module__}.{type(value).__qualname__}"
    try:
        return _cuda_view(value, subject) if _in_cuda_memory(value) else _host_view(value)
    except _Refusal:
        raise
    except Exception as e:  # BufferError, RuntimeError, ValueError: the producer's reason
        cause = e
    if _requires_grad(value):
        raise TypeError(
            f"{subject} is a {received} that requires grad, which cannot be exported as an array; "
            "call `.detach()` on it first (gpuconv does not take part in torch's autograd)."
        ) from cause
    raise TypeError(f"{subject} must be an array. Received: {name} of type {received} ({cause})") from cause

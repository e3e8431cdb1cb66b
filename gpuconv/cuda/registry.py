"""The instantiations the runtime may request, declared before anything asks for one.

Each kernel module registers the full list of its template instantiations at import. The runtime
refuses any other name (``module_cache.get_function``) and the CI audit compiles exactly this
list (``python -m gpuconv.cuda.check``), so what CI proves compiles is all the runtime can ask
for. The emulator and the audit look kernels up by these strings, so every module spells them
through the one formatter here, :func:`template_name`: the names cannot drift apart.
"""
import threading

import numpy as np

from .. import dtypes as _dtypes

_CTYPES = {np.dtype("float32"): "float", np.dtype("float16"): "gc::half", np.dtype("float64"): "double"}
# bfloat16 by name: its dtype object needs ml_dtypes, which only a bfloat16 call imports.
BFLOAT16_CTYPE = "gc::bfloat16"
_DTYPE_NAMES = {dtype.name for dtype in _CTYPES} | {_dtypes.BFLOAT16_NAME}
_INDEX_CTYPES = {"int32": "int", "int64": "long long"}


def cuda_type(dtype):
    """The C++ type a kernel template takes for a NumPy dtype (``'float'``, ``'gc::half'``,
    ``'gc::bfloat16'``, ``'double'``)."""
    dtype = _dtypes.resolve(dtype)
    if _dtypes.is_bfloat16(dtype):
        return BFLOAT16_CTYPE
    try:
        return _CTYPES[dtype]
    except KeyError:
        raise TypeError(f"No CUDA kernel type for dtype {dtype}; float16, bfloat16, float32 and float64 are supported.") from None


def index_ctype(width):
    """``'int'`` for ``'int32'``, ``'long long'`` for ``'int64'``."""
    try:
        return _INDEX_CTYPES[width]
    except KeyError:
        raise ValueError(f"Invalid index width {width!r}; expected 'int32' or 'int64'.") from None


def _cpp(arg):
    # A str is either what NumPy calls a type (an index width 'int32'/'int64', a dtype name
    # 'float32') or already C++; no C++ spelling is ever one of those NumPy names, so the two
    # cannot be confused. bool and IntEnum are ints: decimal, as a template's int parameter wants.
    if isinstance(arg, str):
        if arg in _INDEX_CTYPES:
            return index_ctype(arg)
        return cuda_type(arg) if arg in _DTYPE_NAMES else arg
    if isinstance(arg, (int, np.integer)):
        return str(int(arg))
    return cuda_type(arg)


def template_name(template, *args):
    """``'gc::pool<float, int, 4, 0>'`` from ``('gc::pool', np.float32, 'int32', 4, 0)``: each
    argument in its C++ spelling (a dtype -> :func:`cuda_type`, an index width ->
    :func:`index_ctype`, an int or bool -> decimal, any other str as it is)."""
    return f"{template}<{', '.join(_cpp(a) for a in args)}>"


_registry = {}
_registry_lock = threading.Lock()


def register(filename, name_expressions):
    """Declare instantiations of ``filename``. Idempotent; adding names to a file is allowed."""
    names = tuple(name_expressions)
    if not names:
        raise ValueError(f"register({filename!r}): expected at least one name expression.")
    with _registry_lock:
        known = list(_registry.get(filename, ()))
        known.extend(n for n in names if n not in known)
        _registry[filename] = tuple(known)


def registry():
    """``{filename: tuple(name_expressions)}`` of everything registered so far."""
    with _registry_lock:
        return dict(_registry)


def registered(filename):
    """The registered name expressions of ``filename``; KeyError when its module registered none."""
    with _registry_lock:
        names = _registry.get(filename)
    if not names:
        raise KeyError(f"No instantiations of {filename!r} are registered; its module must call registry.register().")
    return names

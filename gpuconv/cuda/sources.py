"""Where the kernel sources come from, the same way for every compiler that reads them.

NVRTC (``nvrtc.py``), the disk-cache key (``module_cache.py``) and the cuda-emulator's host build
(``gpuconv/emulator/build.py``) must all see the same text, whether gpuconv runs from an installed
wheel (even a zipped one: ``importlib.resources``), or from a source checkout that was never
installed (the ``kernels/`` folder next to the package). Every ``.cuh`` is handed to a compiler as
an in-memory header, so ``#include "common.cuh"`` resolves without any ``-I`` and the kernels
need no CUDA toolkit header (see common.cuh).
"""
import pathlib

from ..errors import KernelSourceNotFoundError

KERNEL_PACKAGE = "gpuconv.kernels"


def _checkout_kernels_dir():
    return pathlib.Path(__file__).resolve().parents[2] / "kernels"


def _package_root():
    """The Traversable of gpuconv.kernels, or None when not installed (a source checkout)."""
    import importlib.resources

    try:
        return importlib.resources.files(KERNEL_PACKAGE)
    except (ModuleNotFoundError, ImportError, TypeError):
        return None


def read_source(filename):
    """Text of ``kernels/<filename>`` from the installed package, else from the checkout. Raises
    :class:`gpuconv.errors.KernelSourceNotFoundError` naming the resource and the package."""
    root = _package_root()
    if root is not None:
        res = root.joinpath(filename)
        try:
            if res.is_file():
                return res.read_text(encoding="utf-8")
        except OSError:
            pass
    path = _checkout_kernels_dir() / filename
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise KernelSourceNotFoundError(
        f"CUDA kernel source {filename!r} was not found in the package {KERNEL_PACKAGE!r} "
        f"(nor in the checkout directory {str(path.parent)!r}); the installation is incomplete."
    )


def header_names():
    """Names of every ``.cuh`` the package ships (each may be included by any source)."""
    names = set()
    root = _package_root()
    if root is not None:
        try:
            names.update(r.name for r in root.iterdir() if r.name.endswith(".cuh"))
        except OSError:
            pass
    d = _checkout_kernels_dir()
    if d.is_dir():
        names.update(p.name for p in d.glob("*.cuh"))
    return tuple(sorted(names))


def read_headers():
    """``{name: text}`` of every header, handed to the compiler as in-memory include files."""
    return {name: read_source(name) for name in header_names()}

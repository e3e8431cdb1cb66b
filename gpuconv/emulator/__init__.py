"""The cuda-emulator: gpuconv's CUDA kernels, unmodified, run on the CPU with CUDA's semantics.

``gpuconv.set_backend("cuda-emulator")`` (or ``GPUCONV_BACKEND=cuda-emulator``) runs every op
through the CUDA engine's real host code and the real ``kernels/*.cu``, compiled by the host C++
compiler against a small CUDA shim (``shim/``): the way to develop and debug kernels without a
GPU. ``build`` compiles and caches, ``runtime`` loads and launches with the driver's checks,
``device`` implements the device seam. Check modes (``GPUCONV_EMULATOR_CHECK``): ``plain``,
``asan`` (AddressSanitizer + UBSan; the process must preload the sanitizer runtimes, see
``python -m gpuconv.emulator.sanitized``) and ``race`` (the shared-memory race checker).
"""
from .build import available

__all__ = ["available"]

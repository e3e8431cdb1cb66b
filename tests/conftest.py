"""Fixtures and helpers shared by the whole test suite.

Import the helpers in a test file with ``from conftest import assert_close, requires_cuda`` (pytest
puts ``tests/`` on ``sys.path``, since the directory has no ``__init__.py``).

- ``backend_name``: parametrised over 'numpy' and 'cuda'; selects the backend for the test and
  restores the previous selection afterwards. The 'cuda' case skips with the probe's reason where
  CUDA is absent, so one test body checks both engines.
- ``rng``: a seeded ``numpy.random.Generator`` (a fresh one per test: results do not depend on
  test order).
- ``assert_close(actual, expected, dtype)``: relative L2 error against the per-dtype tolerance of
  DESIGN.md, after ``gpuconv.to_numpy``; NaN/Inf must sit at the same places.
- ``gpu_xp()``: ``cupy`` on a real GPU, ``gpuconv.emulator.xp`` on the cuda-emulator (GPU tests
  use it where they would ``import cupy``).
- ``requires_cuda``: a skip marker for tests of the CUDA engine; they run on a real GPU or, without
  one, on the cuda-emulator (``GPU_BACKEND``). ``CUDA_MARKS`` adds the ``gpu`` marker to it (the
  'cuda' case of ``backend_name`` carries both). ``requires_real_gpu``: what only hardware shows.
"""
import os

import numpy as np
import pytest

import gpuconv
from gpuconv import backend as _backend

# The probe runs once per session (it imports CuPy and asks the driver), never at `import gpuconv`.
REAL_CUDA_AVAILABLE, REAL_CUDA_REASON = _backend.probe_cuda()

# Where the GPU tests run: a real GPU when there is one, else the cuda-emulator (the same test
# bodies, the same kernels, on the CPU). GPUCONV_GPU_TESTS=cuda insists on a real GPU (skips
# otherwise), =emulator on the emulator, =off skips them.
_GPU_CHOICE = os.environ.get("GPUCONV_GPU_TESTS", "auto").lower()
if _GPU_CHOICE not in ("auto", "cuda", "emulator", "off"):
    raise ValueError(f"Invalid value for GPUCONV_GPU_TESTS: expected auto, cuda, emulator or off. Received: {_GPU_CHOICE!r}")
EMULATOR_AVAILABLE, EMULATOR_REASON = _backend.probe_emulator()
if os.environ.get("GPUCONV_REQUIRE_EMULATOR", "") not in ("", "0") and not EMULATOR_AVAILABLE:
    raise RuntimeError(f"GPUCONV_REQUIRE_EMULATOR is set but the cuda-emulator is unavailable: {EMULATOR_REASON}")
if _GPU_CHOICE in ("auto", "cuda") and REAL_CUDA_AVAILABLE:
    GPU_BACKEND, CUDA_REASON = "cuda", REAL_CUDA_REASON
elif _GPU_CHOICE in ("auto", "emulator") and EMULATOR_AVAILABLE:
    GPU_BACKEND, CUDA_REASON = "cuda-emulator", f"on the cuda-emulator ({EMULATOR_REASON})"
else:
    GPU_BACKEND = None
    CUDA_REASON = (f"GPUCONV_GPU_TESTS={_GPU_CHOICE}" if _GPU_CHOICE == "off"
                   else f"{REAL_CUDA_REASON}; cuda-emulator: {EMULATOR_REASON}")
# Whether the CUDA engine's tests can run here (on a GPU or the emulator).
CUDA_AVAILABLE = GPU_BACKEND is not None
ON_EMULATOR = GPU_BACKEND == "cuda-emulator"

requires_cuda = pytest.mark.skipif(not CUDA_AVAILABLE, reason=f"CUDA backend unavailable: {CUDA_REASON}")
# For a whole GPU-only module: ``pytestmark = CUDA_MARKS`` (``-m "not gpu"`` then deselects it).
CUDA_MARKS = [pytest.mark.gpu, requires_cuda]
# What only a real GPU can show (timing, tensors past 2**31 elements, several devices).
requires_real_gpu = pytest.mark.skipif(not REAL_CUDA_AVAILABLE,
                                       reason=f"needs a real GPU (not emulated): {REAL_CUDA_REASON}")


def gpu_xp():
    """The array module of GPU_BACKEND: ``cupy`` on a real GPU, ``gpuconv.emulator.xp`` (a CuPy-like
    module over the emulator's device arrays) on the cuda-emulator. GPU tests write
    ``cupy = gpu_xp()`` where they would ``import cupy``, so one test body runs on both."""
    if GPU_BACKEND == "cuda":
        import cupy

        return cupy
    from gpuconv.emulator import xp

    return xp


def pytest_collection_modifyitems(config, items):
    """``large`` tests allocate past 2**31 elements: far too big and slow for the emulator."""
    if not ON_EMULATOR:
        return
    skip = pytest.mark.skip(reason="needs a real GPU: past 2**31 elements is too large for the cuda-emulator")
    for item in items:
        if item.get_closest_marker("large") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _gpu_backend_for_gpu_tests(request):
    """A test marked ``gpu`` runs with the CUDA engine's device seam on GPU_BACKEND."""
    if GPU_BACKEND is None or request.node.get_closest_marker("gpu") is None:
        yield
        return
    previous = _backend.requested_backend()
    gpuconv.set_backend(GPU_BACKEND)
    yield
    _backend.reset()
    gpuconv.set_backend(previous)

# Relative L2 error allowed per *input* dtype (DESIGN.md "Numbers we hold ourselves to"). The
# expected value is the float64 result on the same (already rounded) input values.
TOLERANCES = {
    np.dtype("float64"): 1e-12,
    np.dtype("float32"): 1e-5,
    np.dtype("float16"): 2e-3,
}

FLOAT_DTYPES = ("float64", "float32", "float16")


# bfloat16 (ml_dtypes' dtype, not a key above: that would load ml_dtypes in every session): one
# rounding of the output, at most its unit roundoff 2^-8 in relative L2, plus float32's allowance
# for the float32 accumulation (tests/test_bfloat16.py derives the bound element by element).
BFLOAT16_TOLERANCE = 2.0**-8 + 1e-5


def tolerance(dtype):
    if gpuconv.dtypes.is_bfloat16(dtype):
        return BFLOAT16_TOLERANCE
    return TOLERANCES[np.dtype(dtype)]


def relative_l2_error(actual, expected):
    """||actual - expected|| / ||expected|| in float64 (absolute error when expected is all zeros)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    norm = np.linalg.norm(e.ravel())
    diff = np.linalg.norm((a - e).ravel())
    return diff / norm if norm > 0 else diff


def assert_close(actual, expected, dtype):
    """Compare an op's output with a float64 reference at the tolerance of ``dtype``.

    The shapes must be equal; NaN, +Inf and -Inf must occupy exactly the same positions; the
    finite entries must agree to the relative L2 tolerance of ``dtype``.
    """
    actual = gpuconv.to_numpy(actual)
    expected = gpuconv.to_numpy(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    for name, where in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        wa, we = where(a), where(e)
        assert np.array_equal(wa, we), (
            f"{name} positions differ: actual has {int(wa.sum())}, expected {int(we.sum())}; "
            f"first mismatch at {tuple(int(i) for i in np.argwhere(wa != we)[0])}"
        )
    finite = np.isfinite(e)
    err = relative_l2_error(a[finite], e[finite])
    tol = tolerance(dtype)
    assert err <= tol, f"relative L2 error {err:.3e} > {tol:.0e} ({np.dtype(dtype).name})"


def random_array(rng, shape, dtype="float64", integers=False):
    """Random normals, or small integers in [-3, 3] (exact in every float dtype, so sums of a few
    hundred products compare exactly against the float64 reference)."""
    if integers:
        return rng.integers(-3, 4, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(20240531)


@pytest.fixture
def restore_backend():
    """Put the backend selection back after a test that changes it (``gpuconv.set_backend``)."""
    previous = _backend.requested_backend()
    yield
    _backend.reset()
    gpuconv.set_backend(previous)


@pytest.fixture(params=["numpy", pytest.param("cuda", marks=CUDA_MARKS)])
def backend_name(request, restore_backend):
    """Run the test under each backend ('cuda' is the CUDA engine on GPU_BACKEND: a real GPU or
    the cuda-emulator); the previous selection is restored afterwards."""
    gpuconv.set_backend(GPU_BACKEND if request.param == "cuda" else request.param)
    return request.param


@pytest.fixture(scope="module")
def keras():
    """The installed keras (torch backend), or a skip saying why it cannot be compared with."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported anywhere in this process
    return pytest.importorskip("keras", reason="comparing with Keras needs keras>=3.15 (torch backend)")


def keras_numpy(value):
    """A Keras result (a torch tensor under the torch backend) or any array-like, as a NumPy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class HostArrayDevice:
    """A device seam over plain NumPy arrays that compiles and launches nothing: the dispatch tests
    replace ``module_cache.get_function`` and ``launch.launch`` and read what the host code marshals."""

    name = "test-host"

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def contiguous(self, array):
        return np.ascontiguousarray(array)

    def transpose(self, array, axes):
        return np.transpose(array, axes)

    def view(self, array, index):
        return array[tuple(index)]

    def pointer(self, array):
        return int(array.ctypes.data)


@pytest.fixture
def requested(monkeypatch):
    """The kernel names the CUDA engine's host code fetched for launch, in order (GPU and
    emulator alike)."""
    from gpuconv.cuda import module_cache

    names = []
    real = module_cache.get_function

    def spy(filename, name_expression):
        names.append(name_expression)
        return real(filename, name_expression)

    monkeypatch.setattr(module_cache, "get_function", spy)
    return names

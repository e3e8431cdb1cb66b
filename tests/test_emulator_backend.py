"""The cuda-emulator as a backend and the device seam, without a GPU.

What the emulator is for is tested by the GPU suite itself (tests/test_cuda_gpu*.py run on it);
this file checks the plumbing: selection, backend_info, the Device protocol both devices
implement, the disk caches (private, verified), the NVRTC target rule, the driver probe.
"""
import inspect
import logging
import os
import stat

import numpy as np
import pytest

import gpuconv
from conftest import EMULATOR_AVAILABLE, EMULATOR_REASON
from gpuconv import backend
from gpuconv.cuda import device, disk_cache, nvrtc, options, registry
from gpuconv.errors import DeviceUnavailableError

needs_emulator = pytest.mark.skipif(not EMULATOR_AVAILABLE, reason=f"cuda-emulator unavailable: {EMULATOR_REASON}")


@needs_emulator
def test_emulator_backend_runs_the_cuda_engine(restore_backend, rng):
    from gpuconv.emulator.runtime import DeviceArray

    gpuconv.set_backend("cuda-emulator")
    info = gpuconv.backend_info()
    assert info["backend"] == "cuda-emulator" and info["emulated"] is True and info["check"] in ("plain", "asan", "race")
    assert backend.engine().__name__ == "gpuconv.cuda.engine"
    assert device.active().name == "cuda-emulator"
    x = rng.standard_normal((1, 6, 7, 3)).astype("float32")
    k = rng.standard_normal((3, 3, 3, 4)).astype("float32")
    y = gpuconv.ops.conv(x, k, padding="same")
    assert isinstance(y, DeviceArray)  # the emulator's device array, as CuPy would return a cupy.ndarray
    host = gpuconv.to_numpy(y)
    assert type(host) is np.ndarray
    gpuconv.set_backend("numpy")
    np.testing.assert_allclose(host, gpuconv.ops.conv(x, k, padding="same"), rtol=1e-5, atol=1e-5)


@needs_emulator
def test_env_var_selects_the_emulator(monkeypatch, restore_backend):
    monkeypatch.setenv(backend.ENV_VAR, "cuda-emulator")
    backend.reset()
    assert backend.get_backend() == "cuda-emulator"


def test_emulator_unavailable_raises_with_the_reason(monkeypatch, restore_backend):
    monkeypatch.setattr(backend, "probe_emulator", lambda: (False, "no C++ compiler (test)"))
    with pytest.raises(DeviceUnavailableError, match="cuda-emulator.*no C\\+\\+ compiler"):
        gpuconv.set_backend("cuda-emulator")


def test_auto_never_picks_the_emulator(monkeypatch, restore_backend):
    monkeypatch.setattr(backend, "probe_cuda", lambda: (False, "no NVIDIA driver found (test)"))
    monkeypatch.setattr(backend, "probe_emulator", lambda: pytest.fail("auto must not probe the emulator"))
    gpuconv.set_backend("auto")
    assert backend.get_backend() == "numpy"


def test_missing_driver_is_detected_cheaply_and_logged_plainly(monkeypatch, caplog):
    import ctypes

    def no_driver(name, *a, **k):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_driver)
    ok, reason = backend.probe_cuda()
    assert not ok and reason.startswith("no NVIDIA driver found") and "libcuda" in reason
    monkeypatch.setattr(backend, "probe_cuda", lambda: (ok, reason))
    backend.reset()
    monkeypatch.setenv(backend.ENV_VAR, "auto")
    with caplog.at_level(logging.WARNING, logger="gpuconv"):
        assert backend.get_backend() == "numpy"
    assert "no NVIDIA driver found; using the NumPy engine" in caplog.text
    assert "cudaError" not in caplog.text
    backend.reset()


def _public_methods(cls):
    return {n: inspect.signature(getattr(cls, n)) for n in dir(cls) if not n.startswith("_")
            and callable(getattr(cls, n))}


def test_both_devices_implement_the_whole_protocol_with_the_same_signatures():
    from gpuconv.cuda.cupy_device import CupyDevice
    from gpuconv.emulator.device import EmulatorDevice

    wanted = {n: s for n, s in _public_methods(device.Device).items()}
    assert wanted, "the protocol declares methods"
    for cls in (CupyDevice, EmulatorDevice):
        have = _public_methods(cls)
        for name, sig in wanted.items():
            assert name in have, f"{cls.__name__} lacks {name}"
            assert list(have[name].parameters) == list(sig.parameters), f"{cls.__name__}.{name}{have[name]} != {sig}"
        assert isinstance(cls.name, str)


def test_device_names_are_checked():
    with pytest.raises(ValueError, match="device"):
        device.get("tpu")


# ---------------------------------------------------------------------------------------------
# Disk caches (cubins and emulator shared objects): private, atomic, verified
# ---------------------------------------------------------------------------------------------
def test_cache_folder_is_private_and_entries_verify(tmp_path):
    root = tmp_path / "cache"
    path = disk_cache.store(root, "k", ".bin", b"payload", {"names": ["a"]})
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    hit = disk_cache.load(root, "k", ".bin")
    assert hit is not None and hit[0] == path and hit[1]["names"] == ["a"]
    path.write_bytes(b"payloaX")  # corrupted (or replaced by someone else): never loaded
    assert disk_cache.load(root, "k", ".bin") is None
    (root / "k.json").write_text("not json")
    assert disk_cache.load(root, "k", ".bin") is None
    assert disk_cache.load(root, "absent", ".bin") is None


def test_cache_store_leaves_no_partial_files(tmp_path):
    root = tmp_path / "c"
    disk_cache.store(root, "k", ".bin", b"x" * 1000, {})
    assert sorted(p.name for p in root.iterdir()) == ["k.bin", "k.json"]


@needs_emulator
def test_corrupt_emulator_library_is_rebuilt_not_loaded(tmp_path, monkeypatch):
    from gpuconv.emulator import build

    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    source = ('#include "common.cuh"\nnamespace gc {\ntemplate <typename T>\n__global__ void __launch_bounds__(64) '
              'fill(T* y, T v) { y[threadIdx.x] = v; }\n}\n')
    first = build.build("fill.cu", ("gc::fill<float>",), source=source)
    before = dict(build.stats)
    again = build.build("fill.cu", ("gc::fill<float>",), source=source)
    assert again.path == first.path and build.stats["disk_hits"] == before["disk_hits"] + 1
    first.path.write_bytes(b"\x7fELF not really")
    rebuilt = build.build("fill.cu", ("gc::fill<float>",), source=source)
    assert build.stats["builds"] == before["builds"] + 1
    assert rebuilt.path.read_bytes()[:4] == b"\x7fELF" and len(rebuilt.path.read_bytes()) > 1000


# ---------------------------------------------------------------------------------------------
# The NVRTC target
# ---------------------------------------------------------------------------------------------
SUPPORTED = (75, 80, 86, 87, 89, 90, 100, 120, 121)


@pytest.mark.parametrize("cc, expected", [
    (80, 80), (86, 86), (90, 90), (89, 89),
    (92, 90),                 # a newer minor of a known generation: its older minor's cubin loads
    (121, 121), (129, 121),
    (130, "compute_121"),     # a newer major than NVRTC knows: PTX, JIT-compiled by the driver
    (70, 70),                 # older than NVRTC's oldest: the driver reports the real problem
])
def test_target_arch(cc, expected):
    assert options.target_arch(cc, SUPPORTED) == expected


def test_arch_option_emits_ptx_for_compute_targets():
    assert options.arch_option("compute_121") == "-arch=compute_121"
    assert options.arch_option(90) == "-arch=sm_90"
    assert options.emits_ptx(options.compile_options("compute_121"))
    assert not options.emits_ptx(options.compile_options(90))
    with pytest.raises(ValueError, match="arch"):
        options.arch_option("sm_x")


def test_nvrtc_emits_loadable_ptx_for_a_newer_major():
    pytest.importorskip("cupy", reason="NVRTC comes with cupy-cuda13x")
    import gpuconv.cuda.pooling  # noqa: F401  (registers pooling.cu)

    name = registry.registered("pooling.cu")[0]
    out = nvrtc.nvrtc_compile("pooling.cu", (name,), options.compile_options("compute_90"))
    text = out.cubin.decode()
    assert text.startswith("//") and ".target sm_90" in text and out.lowered[name] in text

"""Backend selection ('auto' | 'cuda' | 'numpy') with the CUDA probe monkeypatched, so every outcome
is exercised on a machine without a GPU (robustness checklist item 35)."""
import logging
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import gpuconv
from gpuconv import arrays, backend
from gpuconv.errors import DeviceUnavailableError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def clean_selection(monkeypatch):
    """Each test starts from no selection and no GPUCONV_BACKEND; the suite's selection returns after."""
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    backend.reset()
    yield
    backend.reset()


def fake_probe(ok, reason, calls=None):
    def probe():
        if calls is not None:
            calls.append(1)
        return ok, reason
    return probe


def failing_probe():
    raise AssertionError("the CUDA probe must not run for this selection")


def test_auto_falls_back_to_numpy_with_one_log_line(monkeypatch, caplog):
    calls = []
    monkeypatch.setattr(backend, "probe_cuda", fake_probe(False, "no CUDA driver (test)", calls))
    gpuconv.set_backend("auto")
    with caplog.at_level(logging.INFO, logger="gpuconv"):
        assert gpuconv.get_backend() == "numpy"
        assert gpuconv.get_backend() == "numpy"  # resolved once, not re-probed, not re-logged
    records = [r for r in caplog.records if r.name == "gpuconv"]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert "numpy" in records[0].getMessage() and "no CUDA driver (test)" in records[0].getMessage()
    assert records[0].levelno >= logging.WARNING  # a fallback is worth a warning
    assert len(calls) == 1
    assert backend.engine().__name__ == "gpuconv.cpu.engine"
    info = gpuconv.backend_info()
    assert info["requested"] == "auto" and info["backend"] == "numpy"
    assert info["reason"] == "no CUDA driver (test)"


def test_auto_picks_cuda_when_the_probe_says_yes(monkeypatch, caplog):
    fake_engine = types.ModuleType("gpuconv.cuda.engine")
    fake_engine.NAME = "cuda"
    monkeypatch.setitem(sys.modules, "gpuconv.cuda.engine", fake_engine)
    monkeypatch.setattr(backend, "probe_cuda", fake_probe(True, "fake device (test)"))
    with caplog.at_level(logging.INFO, logger="gpuconv"):
        assert gpuconv.get_backend() == "cuda"
    assert backend.engine() is fake_engine
    records = [r for r in caplog.records if r.name == "gpuconv"]
    assert len(records) == 1 and "fake device (test)" in records[0].getMessage()


def test_cuda_unavailable_raises_with_the_reason(monkeypatch):
    monkeypatch.setattr(backend, "probe_cuda", fake_probe(False, "cudaErrorNoDevice (test)"))
    with pytest.raises(DeviceUnavailableError, match=r"cuda.*cudaErrorNoDevice \(test\)"):
        gpuconv.set_backend("cuda")
    assert issubclass(DeviceUnavailableError, RuntimeError)


def test_cuda_requested_and_available(monkeypatch):
    monkeypatch.setattr(backend, "probe_cuda", fake_probe(True, "fake device (test)"))
    gpuconv.set_backend("CUDA")
    assert gpuconv.get_backend() == "cuda"
    assert backend.requested_backend() == "cuda"


def test_numpy_never_probes(monkeypatch):
    monkeypatch.setattr(backend, "probe_cuda", failing_probe)
    gpuconv.set_backend("NumPy")
    assert gpuconv.get_backend() == "numpy"
    assert backend.engine().__name__ == "gpuconv.cpu.engine"


@pytest.mark.parametrize("name", ["gpu", "tpu", "", None, 3, "numpy "])
def test_invalid_names(name, monkeypatch):
    monkeypatch.setattr(backend, "probe_cuda", failing_probe)
    with pytest.raises(ValueError, match="backend") as info:
        gpuconv.set_backend(name)
    assert repr(name) in str(info.value)  # the message echoes the value


def test_env_var_selects_numpy(monkeypatch):
    monkeypatch.setattr(backend, "probe_cuda", failing_probe)
    monkeypatch.setenv(backend.ENV_VAR, "numpy")
    backend.reset()
    assert gpuconv.get_backend() == "numpy"
    assert backend.requested_backend() == "numpy"


def test_env_var_cuda_unavailable_raises(monkeypatch):
    monkeypatch.setattr(backend, "probe_cuda", fake_probe(False, "no driver (test)"))
    monkeypatch.setenv(backend.ENV_VAR, "cuda")
    backend.reset()
    with pytest.raises(DeviceUnavailableError, match=r"no driver \(test\)"):
        gpuconv.get_backend()


def test_env_var_invalid(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "opencl")
    backend.reset()
    with pytest.raises(ValueError, match="opencl"):
        gpuconv.get_backend()


def test_set_backend_overrides_env(monkeypatch):
    monkeypatch.setattr(backend, "probe_cuda", failing_probe)
    monkeypatch.setenv(backend.ENV_VAR, "cuda")
    backend.reset()
    gpuconv.set_backend("numpy")
    assert gpuconv.get_backend() == "numpy"


def test_reset_forgets_the_selection(monkeypatch):
    monkeypatch.setattr(backend, "probe_cuda", fake_probe(False, "first"))
    assert gpuconv.get_backend() == "numpy"
    assert gpuconv.backend_info()["reason"] == "first"
    monkeypatch.setattr(backend, "probe_cuda", fake_probe(False, "second"))
    backend.reset()
    assert gpuconv.get_backend() == "numpy"
    assert gpuconv.backend_info()["reason"] == "second"


def run_python(code, **env):
    environment = {k: v for k, v in os.environ.items() if k != backend.ENV_VAR}
    environment.update(env)
    environment["PYTHONPATH"] = REPO_ROOT + os.pathsep + environment.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                          cwd=REPO_ROOT, timeout=120)


def test_import_does_not_touch_cuda():
    result = run_python(
        "import sys, gpuconv, gpuconv.ops, gpuconv.layers\n"
        "bad = sorted(m for m in sys.modules if m == 'cupy' or m.startswith(('cupy.', 'cupy_backends'))"
        " or m == 'gpuconv.cuda.engine')\n"
        "print('LOADED', bad)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout, result.stdout


def test_numpy_backend_runs_without_importing_cupy():
    result = run_python(
        "import sys, numpy as np, gpuconv\n"
        "y = gpuconv.ops.conv(np.ones((1, 5, 2)), np.ones((3, 2, 4)))\n"
        "print('SHAPE', y.shape, 'CUPY', 'cupy' in sys.modules)\n",
        GPUCONV_BACKEND="numpy",
    )
    assert result.returncode == 0, result.stderr
    assert "SHAPE (1, 3, 4) CUPY False" in result.stdout, result.stdout


def test_to_numpy():
    a = np.arange(6.0).reshape(2, 3)
    assert gpuconv.to_numpy(a) is a  # no copy for a NumPy array
    listed = gpuconv.to_numpy([[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(listed, np.ndarray) and listed.shape == (2, 2) and listed.dtype == np.float64
    np.testing.assert_array_equal(listed, [[1.0, 2.0], [3.0, 4.0]])
    assert gpuconv.to_numpy(2.5).shape == ()
    assert not arrays.is_cupy_array(a)
    assert arrays.array_module(a) is np


def test_array_utilities_sit_below_the_backend():
    """gpuconv.arrays imports no gpuconv module at load time, so backend -> cpu -> arrays is no circle."""
    import ast

    from gpuconv.cpu import engine as cpu

    with open(arrays.__file__) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("gpuconv"), ast.dump(node)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("gpuconv") for a in node.names), ast.dump(node)
    assert cpu.asarray is arrays.to_numpy and gpuconv.to_numpy is arrays.to_numpy

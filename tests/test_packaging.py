"""The installed package must carry every CUDA source as package data ``gpuconv.kernels``:
the runtime reads them with importlib.resources, so a wheel without them fails only on a GPU."""
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("gpuconv-*.whl")
    return zipfile.ZipFile(whl)


def test_wheel_carries_every_kernel_source(wheel):
    names = set(wheel.namelist())
    sources = sorted(p.name for p in (ROOT / "kernels").iterdir() if p.suffix in (".cu", ".cuh", ".md"))
    assert "README.md" in sources
    missing = [s for s in sources if f"gpuconv/kernels/{s}" not in names]
    assert not missing, f"kernel sources missing from the wheel: {missing}"


def test_wheel_declares_the_cli(wheel):
    (ep,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    assert "gpuconv-bench = gpuconv.benchmarking.cli:main" in wheel.read(ep).decode()


def test_wheel_has_every_subpackage(wheel):
    """Every package of the source tree (a directory with an ``__init__.py``) is in the wheel:
    setup.cfg lists packages by hand, so a new one is easy to forget."""
    names = set(wheel.namelist())
    packages = sorted(str(p.parent.relative_to(ROOT)) for p in (ROOT / "gpuconv").rglob("__init__.py"))
    assert "gpuconv/training" in packages
    for pkg in packages + ["gpuconv/kernels"]:
        assert f"{pkg}/__init__.py" in names, pkg


def test_wheel_carries_the_emulator_shim(wheel):
    """The cuda-emulator compiles its shim with the kernels: an installed package needs it."""
    names = set(wheel.namelist())
    shim = sorted(p.name for p in (ROOT / "gpuconv" / "emulator" / "shim").iterdir())
    missing = [s for s in shim if f"gpuconv/emulator/shim/{s}" not in names]
    assert shim and not missing, f"emulator shim files missing from the wheel: {missing}"

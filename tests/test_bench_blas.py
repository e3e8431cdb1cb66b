"""The benchmark records which OpenBLAS kernels NumPy runs (CPU GEMM speed depends on it)."""
from gpuconv.benchmarking import blas, environment


def test_openblas_core_names_a_core_or_none():
    core = blas.openblas_core()
    assert core is None or (isinstance(core, str) and core)


def test_no_openblas_mapped_gives_no_paths(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libc.so.6\n")
    assert blas._loaded_openblas_paths(str(maps)) == []
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /x/numpy.libs/libscipy_openblas64_-ab.so\n")
    assert blas._loaded_openblas_paths(str(maps)) == ["/x/numpy.libs/libscipy_openblas64_-ab.so"]


def test_environment_records_the_core_and_the_variable(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    env = environment.collect("numpy")
    assert env["openblas_coretype_env"] == "Haswell"
    assert env["openblas_core"] == (blas.openblas_core() or "")

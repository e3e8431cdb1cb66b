"""Which kernels NumPy's OpenBLAS runs, for the benchmark's environment record.

The NumPy engine's dense rows are BLAS GEMMs, so their speed depends on the OpenBLAS core in use
(on the AVX-512 EPYC of our CI, 1024^3 float32 GEMM: 121 GFLOP/s with the 'Haswell' kernels the
machine's environment selects through OPENBLAS_CORETYPE, 229 with 'SkylakeX'). Recording it makes
CPU figures from different machines comparable.
"""
import ctypes

CORETYPE_VAR = "OPENBLAS_CORETYPE"


def _loaded_openblas_paths(maps="/proc/self/maps"):
    try:
        with open(maps) as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return []
    return sorted(paths)


def openblas_core():
    """The core name the loaded OpenBLAS uses (e.g. 'Haswell', 'SkylakeX'), or None when NumPy
    is not on OpenBLAS (or the library exposes no corename function)."""
    import numpy  # noqa: F401  (loads OpenBLAS)

    for path in _loaded_openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                       "openblas_get_corename64_", "openblas_get_corename"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return None

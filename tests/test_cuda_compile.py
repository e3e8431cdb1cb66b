"""Every kernel instantiation the runtime can request compiles through NVRTC for sm_80 and sm_90
with no register spills: ``python -m gpuconv.cuda.check`` run as a test (no GPU needed).

It runs wherever CuPy (cupy-cuda13x) and NVRTC (nvidia-cuda-nvrtc) are installed, as in CI. It
skips only when CuPy itself is not importable, and even then fails when GPUCONV_REQUIRE_NVRTC=1
(CI sets it, so the check can never be skipped silently there).
"""
import os

import pytest

REQUIRE = os.environ.get("GPUCONV_REQUIRE_NVRTC", "") not in ("", "0")

try:
    from cupy.cuda import nvrtc

    nvrtc.getVersion()
    UNAVAILABLE = None
except Exception as e:  # ImportError, or a missing libnvrtc
    UNAVAILABLE = f"CuPy/NVRTC is not importable ({type(e).__name__}: {e})"

pytestmark = pytest.mark.nvrtc


@pytest.fixture(scope="module")
def result():
    if UNAVAILABLE is not None:
        if REQUIRE:
            pytest.fail(f"GPUCONV_REQUIRE_NVRTC=1 but {UNAVAILABLE}")
        pytest.skip(UNAVAILABLE)
    from gpuconv.cuda import check

    res = check.run_check()
    print("\n" + check.report(res))
    return res


def test_every_registered_instantiation_compiles_for_sm80_and_sm90(result):
    from gpuconv.cuda import registry

    assert not result.errors, "\n".join(result.errors)
    registered = registry.registry()
    assert "conv_direct.cu" in registered and "conv_transpose.cu" in registered
    for filename, names in registered.items():
        for arch in ("sm_80", "sm_90"):
            compiled = {r.kernel for r in result.rows if r.entry and r.file == filename and r.arch == arch}
            assert compiled == set(names), f"{filename} {arch}: missing {sorted(set(names) - compiled)}"


def test_no_register_spills(result):
    spills = [f"{r.kernel} {r.arch}: {r.spill} B" for r in result.rows if r.spill]
    assert not spills, "register spills:\n" + "\n".join(spills)


def test_static_shared_memory_fits_48k(result):
    # Static __shared__ above 48 KB would need an opt-in the kernels do not make.
    too_big = [f"{r.kernel} {r.arch}: {r.smem} B" for r in result.rows if r.entry and r.smem > 48 * 1024]
    assert not too_big, "\n".join(too_big)

"""The dry run (``gpuconv.cuda.dry_run``: which kernels a call launches, from the CUDA engine's own
dispatch, with nothing compiled or run) and the cold-start benchmark built on it
(``gpuconv.benchmarking.cold_start``: NVRTC cost of a layer's first call, cold and from the disk
cache). No GPU is needed; the benchmark's compiles need NVRTC."""
import numpy as np
import pytest

import gpuconv
from gpuconv import layers
from gpuconv.benchmarking import cold_start
from gpuconv.cuda import depthwise, dry_run, module_cache, registry
from gpuconv.emulator import build

try:
    from gpuconv.cuda import nvrtc

    nvrtc.version()
    NVRTC_REASON = None
except Exception as e:  # noqa: BLE001 - any failure to load NVRTC means: skip, with the reason
    NVRTC_REASON = f"NVRTC is not loadable here: {e}"
needs_nvrtc = pytest.mark.skipif(NVRTC_REASON is not None, reason=str(NVRTC_REASON))


@pytest.fixture
def emulated(restore_backend):
    gpuconv.set_backend("cuda-emulator")


def _plan(layer, shape, dtype="float32"):
    x = np.zeros(shape, dtype)
    with dry_run.planning() as requests:
        y = layer(x)
    return dry_run.unique(requests), y


def test_a_dry_run_lists_what_the_call_asks_for_and_builds_nothing(emulated):
    builds, compiles = build.stats["builds"], module_cache.stats["nvrtc_compiles"]
    kernels, y = _plan(layers.Conv2D(8, 3, padding="same", activation="relu"), (1, 12, 12, 4))
    assert y.shape == (1, 12, 12, 8)
    assert len(kernels) == 1 and kernels[0][0] == "conv_direct.cu"
    assert kernels[0][1] in registry.registered("conv_direct.cu")
    assert (build.stats["builds"], module_cache.stats["nvrtc_compiles"]) == (builds, compiles)


def test_a_dry_run_follows_the_dispatch_of_the_layer(emulated):
    tile, _ = _plan(layers.DepthwiseConv2D(3, padding="same"), (1, 16, 16, 8))
    direct, _ = _plan(layers.DepthwiseConv2D(3, padding="same", dilation_rate=3), (1, 16, 16, 8))
    assert tile[0][0] == direct[0][0] == depthwise.FILE
    assert tile[0][1].startswith("gc::depthwise_tile<") and direct[0][1].startswith("gc::depthwise_direct<")


def test_a_dry_run_of_a_training_step_adds_the_backward_kernels(emulated):
    forward = cold_start.plan("c", lambda L: L.Conv2D(4, 3), (1, 8, 8, 2))
    step = cold_start.plan("c", lambda L: L.Conv2D(4, 3), (1, 8, 8, 2), training=True)
    assert set(forward) < set(step)
    assert any(f == "conv_backward_weights.cu" for f, _ in step)


def test_dry_run_targets_are_checked():
    with pytest.raises(ValueError, match="target='tpu'"):
        dry_run.DryRunDevice("tpu")
    assert dry_run.DryRunDevice("a100").compute_capability == "80"


@needs_nvrtc
def test_cold_start_compiles_each_kernel_once_then_reads_it_from_disk(restore_backend, tmp_path):
    compiles, hits = module_cache.stats["nvrtc_compiles"], module_cache.stats["disk_hits"]
    rows = cold_start.run(["max_pool_2x2", "average_pool_3x3_s2"], cache_dir=str(tmp_path))
    assert [r.name for r in rows] == ["max_pool_2x2", "average_pool_3x3_s2"]
    kernels = sum(len(r.kernels) for r in rows)
    assert kernels == 2 and all(f == "pooling.cu" for r in rows for f, _ in r.kernels)
    assert module_cache.stats["nvrtc_compiles"] == compiles + kernels  # cold: one NVRTC run each
    assert module_cache.stats["disk_hits"] == hits + kernels           # warm: the disk serves each
    assert all(r.cold_s > 0 and r.warm_s > 0 for r in rows)
    assert len(list(tmp_path.rglob("pooling_cu-*.cubin"))) == kernels
    text = cold_start.report(rows, 1.0, "h200", "float32", False, 90)
    assert "max_pool_2x2" in text and "sm_90" in text and "NVRTC start-up" in text


@needs_nvrtc
def test_compile_planned_compiles_each_unit_once_and_skips_those_done(restore_backend, tmp_path, monkeypatch):
    monkeypatch.setenv(module_cache.CACHE_ENV, str(tmp_path))
    gpuconv.set_backend("cuda-emulator")
    kernels = cold_start.plan("p", lambda L: L.MaxPooling2D(2), (1, 8, 8, 4), target="a100")
    compiles, hits = module_cache.stats["nvrtc_compiles"], module_cache.stats["disk_hits"]
    done = set()
    assert dry_run.compile_planned(kernels + kernels, "a100", done) > 0  # a repeat in the list is done already
    assert module_cache.stats["nvrtc_compiles"] == compiles + len(kernels) == compiles + 1
    assert done == {("pooling.cu", (kernels[0][1],))}
    dry_run.compile_planned(kernels, "a100", done)  # loaded in this process: not asked for again
    assert (module_cache.stats["nvrtc_compiles"], module_cache.stats["disk_hits"]) == (compiles + 1, hits)
    dry_run.compile_planned(kernels, "a100")  # a new process: the disk cache answers
    assert module_cache.stats["disk_hits"] == hits + 1
    assert len(list(tmp_path.glob("pooling_cu-*.cubin"))) == 1
    with pytest.raises(ValueError, match="target='tpu'"):
        dry_run.compile_planned(kernels, "tpu")


def test_cold_start_refuses_unknown_layers():
    with pytest.raises(ValueError, match="no_such_layer"):
        cold_start.run(["no_such_layer"])

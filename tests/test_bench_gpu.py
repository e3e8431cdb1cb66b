"""gpuconv-bench on a CUDA device: event timing, L2 flush, CUDA-graph replay, the datasheet or
measured ceilings, and the cuDNN comparison. Skipped with the probe's reason without CUDA."""
import json

import pytest

from gpuconv import backend as _backend

CUDA_OK, CUDA_REASON = _backend.probe_cuda()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not CUDA_OK, reason=f"CUDA backend unavailable: {CUDA_REASON}"),
    pytest.mark.usefixtures("restore_backend"),  # tests here select backends
]


def test_event_timer_and_flush():
    import cupy as cp

    from gpuconv.benchmarking.timing import L2Flusher, capture_cupy_graph, time_gpu

    flusher = L2Flusher()
    assert flusher.nbytes >= 2 * flusher.l2_bytes and flusher.nbytes >= 64 << 20
    a = cp.ones(1 << 24, dtype=cp.float32)
    b = cp.empty_like(a)
    t = time_gpu(lambda: cp.copyto(b, a), warmup=2, repeat=5, flusher=flusher)
    assert 0 < t.min <= t.median <= t.max and t.repeat == 5 and t.method == "cuda-events"
    replay = capture_cupy_graph(lambda: a * 2)
    out = replay()
    cp.cuda.Stream.null.synchronize()
    assert float(out[0]) == 2.0


@pytest.mark.parametrize("extra", [[], ["--cuda-graph"], ["--dtype", "float16", "--data-format", "channels_first"]])
def test_cli_on_the_gpu(extra, tmp_path, capsys):
    from gpuconv.benchmarking.cli import main

    out = tmp_path / "r.json"
    status = main(["--backend", "cuda", "--suite", "quick", "--rows", "W1,T3", "--warmup", "2", "--repeat", "5",
                   "--json", str(out)] + extra)
    text = capsys.readouterr().out
    assert status == 0, text
    doc = json.loads(out.read_text())
    assert doc["environment"]["backend"] == "cuda" and doc["environment"]["gpu"]
    for r in doc["rows"]:
        assert r["status"] == "PASS"
        assert r["time"]["method"] == ("cuda-graph" if extra == ["--cuda-graph"] else "cuda-events")
        if r["compare"]["status"] == "PASS":
            assert "cuDNN" in r["compare"]["library"] and r["compare"]["device"] == "cuda"

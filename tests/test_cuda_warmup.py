"""``python -m gpuconv.cuda.warmup``: reading the models it warms (JSON configs and ``.keras``
archives, gpuconv's and Keras' own), its refusals, and the warm-up itself:

- on the CUDA engine's device (a real GPU, else the cuda-emulator; GPUCONV_GPU_TESTS decides):
  a first run loads every layer's kernels (compiled or from the disk cache), a second one after
  the in-memory modules are dropped compiles nothing: the cache answers a new process's calls;
- for a target GPU without one (``--target``): NVRTC compiles what the dry-run plan asks for into
  an empty cache, and the second run finds all of it there;
- without a GPU and without ``--device emulator``: a clear message and exit status 2.
"""
import ast
import io
import json
import re
import zipfile

import pytest

import gpuconv
from conftest import GPU_BACKEND, requires_cuda
from gpuconv import backend, layers, saving
from gpuconv.cuda import module_cache, warmup
from test_cuda_check_cli import nvrtc_available  # noqa: F401 (a fixture)

LINE = re.compile(r"^\[(\d)/3\] (\w+) \((\w+)\) (\(.*?\)) -> (\(.*?\)): (.*)$")
SHAPES = [("Conv2D", (1, 8, 8, 3), (1, 6, 6, 4)), ("MaxPooling2D", (1, 6, 6, 4), (1, 3, 3, 4)),
          ("DepthwiseConv2D", (1, 3, 3, 4), (1, 3, 3, 4))]


def tiny_model():
    return gpuconv.Sequential([layers.InputLayer(shape=(8, 8, 3)), layers.Conv2D(4, 3), layers.MaxPooling2D(),
                               layers.DepthwiseConv2D(3, padding="same")])


def write_keras_archive(path, config):
    """A ``.keras`` file as Keras lays it out (config.json beside metadata.json and the weights)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"not read by the warm-up")
    return path


@pytest.fixture
def model_files(tmp_path):
    config = saving.serialize_keras_object(tiny_model())
    json_path = tmp_path / "m.json"
    json_path.write_text(json.dumps(config))
    return json_path, write_keras_archive(tmp_path / "m.keras", config)


def _kinds(model):
    return [type(layer).__name__ for layer in model.layers]


# ---------------------------------------------------------------------------------------------
# Reading models
# ---------------------------------------------------------------------------------------------
def test_reads_a_json_config_and_a_keras_archive(model_files):
    for path in model_files:
        model = warmup.load_model(path)
        assert _kinds(model) == ["Conv2D", "MaxPooling2D", "DepthwiseConv2D"]
        assert warmup.input_shape(model) == (1, 8, 8, 3)
        assert warmup.input_shape(model, batch=4) == (4, 8, 8, 3)


def test_reads_a_bare_sequential_config(tmp_path):
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(tiny_model().get_config()))
    assert _kinds(warmup.load_model(path)) == ["Conv2D", "MaxPooling2D", "DepthwiseConv2D"]


def test_reads_an_archive_keras_saved(tmp_path, keras):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.MaxPooling2D(),
                              keras.layers.DepthwiseConv2D(3, padding="same")])
    model.save(tmp_path / "k.keras")
    ours = warmup.load_model(tmp_path / "k.keras")
    assert _kinds(ours) == ["Conv2D", "MaxPooling2D", "DepthwiseConv2D"]
    assert warmup.input_shape(ours) == (1, 8, 8, 3)
    assert [layer.get_config()["name"] for layer in ours.layers] == [layer.name for layer in model.layers]


def test_a_functional_model_needs_issue_13(tmp_path, keras):
    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs)).save(tmp_path / "f.keras")
    with pytest.raises(ValueError, match=r"functional model \(class_name 'Functional'\).*issue 13"):
        warmup.load_model(tmp_path / "f.keras")


@pytest.mark.parametrize("content, message", [
    (None, "is not a file"),
    (b"\x00 not json", "neither a .keras archive nor a JSON model config"),
    (b"[1, 2]", "holds a JSON list, not a model config"),
    (json.dumps({"class_name": "Conv2D", "config": {}}).encode(), "not a Sequential model config: class_name='Conv2D'"),
])
def test_bad_model_files_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        warmup.load_model(path)
    assert str(path) in str(info.value)


def test_an_archive_without_config_json_is_refused(tmp_path):
    path = tmp_path / "empty.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
    with pytest.raises(ValueError, match="zip archive without config.json"):
        warmup.load_model(path)


def test_a_config_naming_a_foreign_class_resolves_nothing(tmp_path):
    # Classes resolve through gpuconv's registry only: a module named in the config is never imported.
    config = saving.serialize_keras_object(tiny_model())
    config["config"]["layers"][1] = {"module": "os", "class_name": "system", "config": {}, "registered_name": None}
    path = write_keras_archive(tmp_path / "evil.keras", config)
    with pytest.raises(ValueError, match="Cannot rebuild the Sequential model of .*Could not interpret layer"):
        warmup.load_model(path)


def test_a_model_without_exact_input_shape_is_refused():
    no_input = gpuconv.Sequential([layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="has no input shape"):
        warmup.input_shape(no_input)
    open_size = gpuconv.Sequential([layers.InputLayer(shape=(None, 8, 3)), layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match=r"unknown dimension\(s\) \[1\]"):
        warmup.input_shape(open_size)
    with pytest.raises(ValueError, match="batch=0"):
        warmup.input_shape(tiny_model(), batch=0)


def test_bad_suite_and_rows_are_refused():
    with pytest.raises(ValueError, match=r"expected one of \['cpu', 'keras', 'quick', 'suite'\].*suite='nope'"):
        warmup.suite_steps("nope")
    with pytest.raises(ValueError, match=r"\['K9'\] not in suite 'keras' \(its rows: K1, K2"):
        warmup.suite_steps("keras", rows=["K2", "K9"])


# ---------------------------------------------------------------------------------------------
# Without a GPU
# ---------------------------------------------------------------------------------------------
def test_without_a_gpu_it_says_so_and_exits_2(model_files, monkeypatch, capsys):
    monkeypatch.setattr(backend, "probe_cuda", lambda: (False, "no NVIDIA driver found (test)"))
    previous = backend.requested_backend()
    assert warmup.main(["--model", str(model_files[0])]) == warmup.EXIT_NO_GPU == 2
    err = capsys.readouterr().err
    assert "needs a GPU" in err and "no NVIDIA driver found (test)" in err
    assert "--device emulator" in err and "--target" in err
    assert backend.requested_backend() == previous  # the selection is left as it was


def test_cli_refusals_exit_2(model_files, capsys):
    for argv, text in ((["--suite", "nope"], "suite='nope'"),
                       (["--model", "/nonexistent/m.keras"], "is not a file"),
                       (["--rows", "K2", "--model", str(model_files[0])], "--rows selects rows of a --suite")):
        with pytest.raises(SystemExit) as info:
            warmup.main(argv)
        assert info.value.code == 2
        assert text in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Warming up
# ---------------------------------------------------------------------------------------------
def _parse(text):
    """[(class name, input shape, output shape, passes text)] of the step lines, and the summary."""
    lines = text.strip().splitlines()
    steps = []
    for line in lines:
        m = LINE.match(line)
        if m:
            steps.append((m.group(3), ast.literal_eval(m.group(4)), ast.literal_eval(m.group(5)), m.group(6)))
    return steps


def _check_lines(text, training):
    steps = _parse(text)
    assert [s[:3] for s in steps] == SHAPES, text
    for _, _, _, passes in steps:
        assert re.match(r"forward \d+\.\d\d s, ", passes), passes
        assert ("; backward " in passes) == training, passes


def _counts(results):
    return [(sum(p.compiles for p in r.passes), sum(p.disk_hits for p in r.passes)) for r in results]


@requires_cuda
def test_warmup_on_the_device_fills_the_cache_a_new_process_reads(model_files, tmp_path, monkeypatch):
    monkeypatch.setenv(module_cache.CACHE_ENV, str(tmp_path / "kernels"))  # the GPU's cache; the emulator has its own
    device = "cuda" if GPU_BACKEND == "cuda" else "emulator"
    module_cache.clear_cache()  # nothing loaded in memory: each layer's kernels come from a compile or the disk
    out = io.StringIO()
    results, line = warmup.warmup(model=str(model_files[0]), device=device, out=out)
    _check_lines(out.getvalue(), training=False)
    assert all(not r.error for r in results), out.getvalue()
    first = _counts(results)
    assert all(compiles + hits >= 1 for compiles, hits in first), first  # every layer launches a kernel
    assert re.search(r"warm-up of .*m\.json' on cuda(-emulator)?: 3 step\(s\) in \d+\.\d s, \d+ compiled, \d+ "
                     r"from the disk cache, 0 failed; cache folder ", line), line

    module_cache.clear_cache()  # as a new process: only the disk cache is left
    out = io.StringIO()
    results, _ = warmup.warmup(model=str(model_files[1]), device=device, out=out)  # the same model, from the archive
    second = _counts(results)
    assert [c for c, _ in second] == [0, 0, 0], out.getvalue()
    assert all(hits >= 1 for _, hits in second), out.getvalue()
    assert "disk cache (" in out.getvalue()


@requires_cuda
def test_training_warmup_runs_each_layers_backward(model_files, tmp_path, monkeypatch):
    monkeypatch.setenv(module_cache.CACHE_ENV, str(tmp_path / "kernels"))
    out = io.StringIO()
    results, _ = warmup.warmup(model=model_files[0], training=True,
                               device="cuda" if GPU_BACKEND == "cuda" else "emulator", out=out)
    _check_lines(out.getvalue(), training=True)
    assert all(not r.error for r in results) and all(len(r.passes) == 2 for r in results), out.getvalue()


@requires_cuda
def test_suite_rows_warm_up(capsys):
    device = "cuda" if GPU_BACKEND == "cuda" else "emulator"
    assert warmup.main(["--suite", "keras", "--rows", "K2", "K4", "--device", device, "--training"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.match(r"^\[1/2\] K2 seed CNN MaxPooling2D 2 \(128, 28, 28, 32\) -> \(128, 14, 14, 32\): "
                    r"forward \d+\.\d\d s, .*; backward \d+\.\d\d s, ", out[0]), out
    assert out[1].startswith("[2/2] K4 ") and out[2].startswith("warm-up of suite 'keras' on cuda")


def test_target_warmup_compiles_into_an_empty_cache_then_finds_it(nvrtc_available, model_files, tmp_path,
                                                                   monkeypatch, capsys):
    monkeypatch.setenv(module_cache.CACHE_ENV, str(tmp_path / "kernels"))
    results, _ = warmup.warmup(model=model_files[1], target="h200", training=True)
    first = _counts(results)
    assert all(compiles >= 2 and hits == 0 for compiles, hits in first), first  # a forward and a backward each
    cached = sorted(p.name for p in (tmp_path / "kernels").glob("*.cubin"))
    assert len(cached) == sum(c for c, _ in first)

    assert warmup.main(["--model", str(model_files[1]), "--target", "h200", "--training"]) == 0
    out = capsys.readouterr().out
    steps = _parse(out)
    assert [s[:3] for s in steps] == SHAPES, out
    assert all("compiled" not in s[3] for s in steps), out
    assert f", 0 compiled, {len(cached)} from the disk cache, 0 failed" in out
    assert sorted(p.name for p in (tmp_path / "kernels").glob("*.cubin")) == cached

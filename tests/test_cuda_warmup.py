"""``python -m gpuconv.cuda.warmup``: reading the models it warms (Sequential and functional, from
JSON configs and ``.keras`` archives, gpuconv's and Keras' own), its refusals, and the warm-up
itself (its steps are built in ``gpuconv.benchmarking.cold_start``; ``gpuconv.cuda.warmup`` runs
them and never imports what sits above the engine):

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
import os
import re
import subprocess
import sys
import zipfile

import numpy as np

import pytest

import gpuconv
from conftest import GPU_BACKEND, requires_cuda
from gpuconv import backend, layers, saving
from gpuconv.benchmarking import cold_start
from gpuconv.cuda import module_cache, warmup
from test_cuda_check_cli import nvrtc_available  # noqa: F401 (a fixture)

LINE = re.compile(r"^\[(\d)/(\d)\] (\w+) \((\w+)\) (\(.*?\)|\[.*?\]) -> (\(.*?\)): (.*)$")
OPTIMIZER_LINE = re.compile(r"^\[(\d)/(\d)\] optimizer \((\w+), (the model's|Keras' compile default)\) on (\d+) "
                            r"weight\(s\) \(.*?\) -> \(.*?\): update \d+\.\d\d s, (.*)$")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    model = tiny_model()
    json_path = tmp_path / "m.json"
    json_path.write_text(json.dumps(saving.serialize_keras_object(model)))
    saving.save_model(model, tmp_path / "m.keras")
    return json_path, tmp_path / "m.keras"


def _kinds(model):
    return [type(layer).__name__ for layer in model.layers]


# ---------------------------------------------------------------------------------------------
# Reading models
# ---------------------------------------------------------------------------------------------
def test_reads_a_json_config_and_a_keras_archive(model_files):
    for path in model_files:
        model = cold_start.load_model(path)
        assert _kinds(model) == ["Conv2D", "MaxPooling2D", "DepthwiseConv2D"]
        assert cold_start.input_shape(model) == (1, 8, 8, 3)
        assert cold_start.input_shape(model, batch=4) == (4, 8, 8, 3)


def test_reads_a_bare_sequential_config(tmp_path):
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(tiny_model().get_config()))
    assert _kinds(cold_start.load_model(path)) == ["Conv2D", "MaxPooling2D", "DepthwiseConv2D"]


def test_reads_an_archive_keras_saved(tmp_path, keras):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.MaxPooling2D(),
                              keras.layers.DepthwiseConv2D(3, padding="same")])
    model.save(tmp_path / "k.keras")
    ours = cold_start.load_model(tmp_path / "k.keras")
    assert _kinds(ours) == ["Conv2D", "MaxPooling2D", "DepthwiseConv2D"]
    assert cold_start.input_shape(ours) == (1, 8, 8, 3)
    assert [layer.get_config()["name"] for layer in ours.layers] == [layer.name for layer in model.layers]


def keras_branchy(keras):
    """A functional model with a branch and a merge, compiled (its archive records the optimizer)."""
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    b = keras.layers.Conv2D(4, 1)(inputs)
    model = keras.Model(inputs, keras.layers.MaxPooling2D()(keras.layers.Add()([a, b])))
    model.compile(optimizer="adam", loss="mse")
    return model


def test_reads_a_functional_model_keras_saved_and_its_json(tmp_path, keras):
    model = keras_branchy(keras)
    model.save(tmp_path / "f.keras")
    (tmp_path / "f.json").write_text(model.to_json())
    (tmp_path / "bare.json").write_text(json.dumps(model.get_config()))
    for name in ("f.keras", "f.json", "bare.json"):
        ours = cold_start.load_model(tmp_path / name)
        assert type(ours).__name__ == "Functional", name
        assert _kinds(ours) == ["InputLayer", "Conv2D", "Conv2D", "Add", "MaxPooling2D"], name
        assert [layer.name for layer in ours.layers] == [layer.name for layer in model.layers], name
        assert cold_start.input_shape(ours, batch=2) == (2, 8, 8, 3)
    # Only the archive holds the optimizer; a config alone has none.
    assert type(cold_start.load_model(tmp_path / "f.keras").optimizer).__name__ == "Adam"
    assert cold_start.load_model(tmp_path / "f.json", compile=True).optimizer is None


@pytest.mark.parametrize("content, message", [
    (None, "is not a file"),
    (b"\x00 not json", "neither a model file (.keras, .h5) nor a JSON model config"),
    (b"[1, 2]", "holds a JSON list, not a model config"),
    (json.dumps({"class_name": "Conv2D", "config": {}}).encode(),
     "not a Sequential or functional model config: class_name='Conv2D'"),
])
def test_bad_model_files_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        cold_start.load_model(path)
    assert str(path) in str(info.value)


def test_an_archive_without_config_json_is_refused(tmp_path):
    path = tmp_path / "empty.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
    with pytest.raises(ValueError, match="Cannot rebuild the model of .*empty.keras.*no config.json"):
        cold_start.load_model(path)


def test_a_config_naming_a_foreign_class_resolves_nothing(tmp_path):
    # Classes resolve through gpuconv's registry only: a module named in the config is never imported.
    config = saving.serialize_keras_object(tiny_model())
    config["config"]["layers"][1] = {"module": "os", "class_name": "system", "config": {}, "registered_name": None}
    path = write_keras_archive(tmp_path / "evil.keras", config)
    with pytest.raises(ValueError, match="Cannot rebuild the model of .*Could not locate class 'system'"):
        cold_start.load_model(path)


def test_a_model_without_exact_input_shape_is_refused():
    no_input = gpuconv.Sequential([layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="has no input shape"):
        cold_start.input_shape(no_input)
    open_size = gpuconv.Sequential([layers.InputLayer(shape=(None, 8, 3)), layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match=r"unknown dimension\(s\) \[1\]"):
        cold_start.input_shape(open_size)
    with pytest.raises(ValueError, match="batch=0"):
        cold_start.input_shape(tiny_model(), batch=0)


def test_bad_suite_and_rows_are_refused():
    with pytest.raises(ValueError, match=r"expected one of \['cpu', 'keras', 'quick', 'suite'\].*suite='nope'"):
        cold_start.suite_steps("nope")
    with pytest.raises(ValueError, match=r"\['K9'\] not in suite 'keras' \(its rows: K1, K2"):
        cold_start.suite_steps("keras", rows=["K2", "K9"])


# ---------------------------------------------------------------------------------------------
# Without a GPU
# ---------------------------------------------------------------------------------------------
def test_without_a_gpu_it_says_so_and_exits_2(model_files, monkeypatch, capsys):
    monkeypatch.setattr(backend, "probe_cuda", lambda: (False, "no NVIDIA driver found (test)"))
    previous = backend.requested_backend()
    assert cold_start.warmup_main(["--model", str(model_files[0])]) == warmup.EXIT_NO_GPU == 2
    err = capsys.readouterr().err
    assert "needs a GPU" in err and "no NVIDIA driver found (test)" in err
    assert "--device emulator" in err and "--target" in err
    assert backend.requested_backend() == previous  # the selection is left as it was


def test_cli_refusals_exit_2(model_files, capsys):
    for argv, text in ((["--suite", "nope"], "suite='nope'"),
                       (["--model", "/nonexistent/m.keras"], "is not a file"),
                       (["--rows", "K2", "--model", str(model_files[0])], "--rows selects rows of a --suite")):
        with pytest.raises(SystemExit) as info:
            cold_start.warmup_main(argv)
        assert info.value.code == 2
        assert text in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Warming up
# ---------------------------------------------------------------------------------------------
def _parse(text):
    """[(class name, input shape, output shape, passes text)] of the layer lines."""
    steps = []
    for line in text.strip().splitlines():
        m = LINE.match(line)
        if m:
            steps.append((m.group(4), ast.literal_eval(m.group(5)), ast.literal_eval(m.group(6)), m.group(7)))
    return steps


def _optimizer_lines(text):
    return [m for m in map(OPTIMIZER_LINE.match, text.strip().splitlines()) if m]


def _check_lines(text, training):
    """The layer lines of tiny_model; with ``training`` their backward and a last optimizer line."""
    steps = _parse(text)
    assert [s[:3] for s in steps] == SHAPES, text
    for _, _, _, passes in steps:
        assert re.match(r"forward \d+\.\d\d s, ", passes), passes
        assert ("; backward " in passes) == training, passes
    optimizer = _optimizer_lines(text)
    if not training:
        assert not optimizer and "[1/3] " in text, text
        return
    assert len(optimizer) == 1 and optimizer[0].group(1, 2) == ("4", "4"), text
    assert optimizer[0].group(3, 4, 5) == ("RMSprop", "Keras' compile default", "4"), text  # 2 kernels, 2 biases


def _counts(results):
    return [(sum(p.compiles for p in r.passes), sum(p.disk_hits for p in r.passes)) for r in results]


@requires_cuda
def test_warmup_on_the_device_fills_the_cache_a_new_process_reads(model_files, tmp_path, monkeypatch):
    monkeypatch.setenv(module_cache.CACHE_ENV, str(tmp_path / "kernels"))  # the GPU's cache; the emulator has its own
    device = "cuda" if GPU_BACKEND == "cuda" else "emulator"
    module_cache.clear_cache()  # nothing loaded in memory: each layer's kernels come from a compile or the disk
    out = io.StringIO()
    results, line = cold_start.warmup(model=str(model_files[0]), device=device, out=out)
    _check_lines(out.getvalue(), training=False)
    assert all(not r.error for r in results), out.getvalue()
    first = _counts(results)
    assert all(compiles + hits >= 1 for compiles, hits in first), first  # every layer launches a kernel
    assert re.search(r"warm-up of .*m\.json' on cuda(-emulator)?: 3 step\(s\) in \d+\.\d s, \d+ compiled, \d+ "
                     r"from the disk cache, 0 failed; cache folder ", line), line

    module_cache.clear_cache()  # as a new process: only the disk cache is left
    out = io.StringIO()
    results, _ = cold_start.warmup(model=str(model_files[1]), device=device, out=out)  # the same model, from the archive
    second = _counts(results)
    assert [c for c, _ in second] == [0, 0, 0], out.getvalue()
    assert all(hits >= 1 for _, hits in second), out.getvalue()
    assert "disk cache (" in out.getvalue()


@requires_cuda
def test_training_warmup_runs_each_layers_backward_and_the_optimizer_update(model_files, tmp_path, monkeypatch):
    monkeypatch.setenv(module_cache.CACHE_ENV, str(tmp_path / "kernels"))
    out = io.StringIO()
    results, _ = cold_start.warmup(model=model_files[0], training=True,
                                   device="cuda" if GPU_BACKEND == "cuda" else "emulator", out=out)
    _check_lines(out.getvalue(), training=True)
    assert all(not r.error for r in results), out.getvalue()
    assert [len(r.passes) for r in results] == [2, 2, 2, 1], out.getvalue()


@requires_cuda
def test_suite_rows_warm_up(capsys):
    device = "cuda" if GPU_BACKEND == "cuda" else "emulator"
    assert cold_start.warmup_main(["--suite", "keras", "--rows", "K2", "K4", "--device", device, "--training"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.match(r"^\[1/2\] K2 seed CNN MaxPooling2D 2 \(128, 28, 28, 32\) -> \(128, 14, 14, 32\): "
                    r"forward \d+\.\d\d s, .*; backward \d+\.\d\d s, ", out[0]), out
    assert out[1].startswith("[2/2] K4 ") and out[2].startswith("warm-up of suite 'keras' on cuda")


def test_target_warmup_compiles_into_an_empty_cache_then_finds_it(nvrtc_available, model_files, tmp_path,
                                                                   monkeypatch, capsys):
    monkeypatch.setenv(module_cache.CACHE_ENV, str(tmp_path / "kernels"))
    results, _ = cold_start.warmup(model=model_files[1], target="h200", training=True)
    first = _counts(results)
    assert all(compiles >= 2 and hits == 0 for compiles, hits in first[:3]), first  # a forward and a backward each
    assert first[3] == (1, 0), first  # the update: one float32 launch (RMSprop) for all four weights
    cached = sorted(p.name for p in (tmp_path / "kernels").glob("*.cubin"))
    assert len(cached) == sum(c for c, _ in first)
    assert sum("optimizer_updates_cu" in name for name in cached) == 1, cached

    assert cold_start.warmup_main(["--model", str(model_files[1]), "--target", "h200", "--training"]) == 0
    out = capsys.readouterr().out
    _check_lines(out, training=True)
    assert all("compiled" not in s[3] for s in _parse(out)), out
    assert _optimizer_lines(out)[0].group(6) == "disk cache (1)", out
    assert f", 0 compiled, {len(cached)} from the disk cache, 0 failed" in out
    assert sorted(p.name for p in (tmp_path / "kernels").glob("*.cubin")) == cached


def test_a_functional_model_warms_node_by_node_with_its_own_optimizer(nvrtc_available, tmp_path, monkeypatch,
                                                                       capsys, keras):
    monkeypatch.setenv(module_cache.CACHE_ENV, str(tmp_path / "kernels"))
    keras_branchy(keras).save(tmp_path / "f.keras")
    assert cold_start.warmup_main(["--model", str(tmp_path / "f.keras"), "--target", "h200", "--training"]) == 0
    out = capsys.readouterr().out
    steps = _parse(out)
    assert [s[:3] for s in steps] == [("Conv2D", (1, 8, 8, 3), (1, 8, 8, 4)), ("Conv2D", (1, 8, 8, 3), (1, 8, 8, 4)),
                                      ("Add", [(1, 8, 8, 4), (1, 8, 8, 4)], (1, 8, 8, 4)),
                                      ("MaxPooling2D", (1, 8, 8, 4), (1, 4, 4, 4))], out
    assert all("; backward " in s[3] for s in steps), out
    optimizer = _optimizer_lines(out)
    assert len(optimizer) == 1 and optimizer[0].group(1, 2) == ("5", "5"), out
    assert optimizer[0].group(3, 4, 5) == ("Adam", "the model's", "4"), out
    assert re.search(r"5 step\(s\) in .* 0 failed", out), out
    assert sum("optimizer_updates_cu" in p.name for p in (tmp_path / "kernels").glob("*.cubin")) == 1


def test_the_optimizer_step_leaves_the_model_and_its_optimizer_as_they_were(restore_backend):
    model = tiny_model()
    model.compile(optimizer="adam", loss="mse")
    before = [w.numpy().copy() for w in model.weights]
    steps, first = cold_start.model_steps(model, training=True)
    assert steps[-1].pass_name == "update" and steps[-1].label.startswith("optimizer (Adam, the model's)")
    assert steps[-1].forward(first) is first  # the model's output passes through
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))
    assert int(model.optimizer.iterations) == 0 and not model.optimizer.variables[2:]
    assert [s.pass_name for s in cold_start.model_steps(model, training=False)[0]] == ["forward"] * 3


def test_warmup_never_imports_what_sits_above_the_engine():
    # Importing it loads no benchmark module; running it hands the command line to the consumer.
    code = ("import sys, gpuconv.cuda.warmup; "
            "print(sorted(m for m in sys.modules if m.startswith('gpuconv.benchmarking')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
    done = subprocess.run([sys.executable, "-m", "gpuconv.cuda.warmup", "--suite", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("usage: python -m gpuconv.cuda.warmup ") and "suite='nope'" in done.stderr


def test_a_target_runner_checks_the_target_once_through_the_dry_run():
    with pytest.raises(ValueError, match="target='tpu'"):
        warmup.TargetRunner("tpu")


def test_inference_steps_follow_the_models_fusion_plan_and_training_steps_every_layer():
    # predict() runs Conv2D + BatchNormalization + ReLU as one folded call with a fused epilogue:
    # its kernels are not the members', so the inference warm-up must make that call.
    inputs = layers.Input((8, 8, 3))
    x = layers.ReLU()(layers.BatchNormalization(name="bn")(layers.Conv2D(4, 3, name="conv")(inputs)))
    functional = gpuconv.Model(inputs, layers.MaxPooling2D(name="pool")(x))
    sequential = gpuconv.Sequential([layers.InputLayer(shape=(8, 8, 3)), layers.Conv2D(4, 3, name="conv"),
                                     layers.BatchNormalization(name="bn"), layers.ReLU(name="relu"),
                                     layers.MaxPooling2D(name="pool")])
    for model in (sequential, functional):
        inference = [s.label for s in cold_start.model_steps(model)[0]]
        assert len(inference) == 2 and inference[1] == "pool (MaxPooling2D)", inference
        assert inference[0].startswith("conv (Conv2D) + bn (BatchNormalization) + ") and inference[0].endswith(" fused")
        training = [s.label for s in cold_start.model_steps(model, training=True)[0]]
        assert [label.split(" (")[0] for label in training[:4]] == ["conv", "bn", training[2].split(" (")[0], "pool"]
        assert len(training) == 5 and training[4].startswith("optimizer (RMSprop, ")

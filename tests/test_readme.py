"""README's two commands are the contract with users and CI: keep .ci/run calling the test one."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_cmds = [b.strip() for b in _bash_blocks(readme) if "pytest" in b]
    assert len(test_cmds) == 1, "README must give exactly one test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmds[0] in ci.splitlines(), ".ci/run must call README's test command verbatim"


def test_main_job_command_runs_the_benchmark_cli():
    readme = (ROOT / "README.md").read_text()
    main = [b.strip() for b in _bash_blocks(readme) if "gpuconv-bench" in b]
    assert main and main[0].startswith("python3 -m venv"), "the main-job command must set up from bare python3"


def _python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_examples_run(monkeypatch, tmp_path):
    """The README's Python examples run as written, in order, on the NumPy engine (in a scratch
    directory: the training example writes a weights file)."""
    import gpuconv

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpuconv.backend, "probe_cuda", lambda: (False, "disabled for the README test"))
    gpuconv.backend.reset()
    try:
        namespace = {}
        for block in _python_blocks((ROOT / "README.md").read_text()):
            exec(compile(block, "README.md", "exec"), namespace)
        assert namespace["probs"].shape == (4, 10)
        assert namespace["y"].shape == (8, 16, 16, 32)
        assert tuple(namespace["back"].shape) == (8, 32, 32, 16)  # the DLPack round trip
        assert type(namespace["back"]).__module__.startswith("torch")
        assert set(namespace["history"].history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        assert (tmp_path / "seed.weights.h5").is_file()
        assert namespace["scores"].shape == (2, 1000)  # the Keras file's MobileNetV2
        assert (tmp_path / "mobilenet_v2_gpuconv.keras").is_file() and (tmp_path / "cnn.keras").is_file()
    finally:
        gpuconv.backend.reset()

"""Compile, into the disk cache, every kernel a benchmark suite or a model will use.

    python -m gpuconv.cuda.warmup --suite NAME [--rows ID ...] [--dtype float32] [--data-format channels_last]
    python -m gpuconv.cuda.warmup --model PATH [--batch N]
        [--training] [--device cuda|emulator | --target a100|h100|h200]

Why: a kernel is compiled by NVRTC on its first call (about a second each) and kept in the disk
cache (``GPUCONV_CACHE_DIR``, ``module_cache``). A deployment image built with this command
answers its container's first calls from the cache.

How it knows what a call will use: it makes the call. Each suite row, or each layer of the model
at the model's input shape, runs once through the real dispatch on random inputs of the exact
shapes (with ``--training`` also its backward, through ``gpuconv.GradientTape``), and the
compile counters (``module_cache.stats``; the emulator's ``build.stats``) say what it compiled.
Where it runs:

- ``--device cuda`` (default): the active GPU. Without one the command exits with status 2.
- ``--device emulator``: the cuda-emulator, which builds the same kernel sources with the host
  compiler into its own cache (``GPUCONV_EMULATOR_CACHE_DIR``): slow, for trying the command.
- ``--target NAME``: no GPU needed. The engine's dispatch is planned for that GPU on the dry-run
  device (``dry_run.py``: nothing is launched) and the kernels it asks for are compiled by NVRTC
  for the target's architecture with the runtime's own options, into the disk cache the runtime
  reads (same NVRTC version, same kernel sources: same cache entries).

``--model`` reads what gpuconv can rebuild today: a JSON file holding a Sequential config (Keras'
``model.to_json()`` or a bare ``Sequential.get_config()``) or a ``.keras`` archive whose
``config.json`` holds a Sequential. The archive is untrusted data: only ``config.json`` is read
(with zipfile and json), nothing is unpickled, and classes resolve only through gpuconv's own
registry (``gpuconv.saving``). A functional model needs the loader of issue 13.
"""
import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time
import zipfile

import numpy as np

DEVICES = ("cuda", "emulator")
DTYPES = ("float16", "float32", "float64")
EXIT_NO_GPU = 2
MAX_CONFIG_BYTES = 64 * 2**20  # a model config is kilobytes; refuse to inflate more from an archive


class GPUNeededError(RuntimeError):
    """No GPU answers and neither ``--device emulator`` nor ``--target`` was asked for."""


# ---------------------------------------------------------------------------------------------
# What to run: steps
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Step:
    """One suite row or one model layer. ``forward(x)`` returns the output; ``backward(x, y)``
    (None: no backward to run) computes the gradients a training step takes and returns None, or
    a note saying why there was nothing to run. ``x`` is the previous step's output in a chain (a
    model's layers), else None (a suite row holds its own inputs)."""
    label: str
    forward: object
    backward: object = None
    input_shape: tuple = None  # known ahead for a suite row; a chained step's is its input's


def suite_steps(name, rows=None, dtype="float32", data_format="channels_last", training=False, seed=0):
    """A step per row of suite ``name`` (``gpuconv.benchmarking.suites.SUITES``), or of the rows
    whose ids are in ``rows``, called as the benchmark calls them (``calls.call_op``)."""
    from ..benchmarking import calls, gradient_calls, inputs, suites

    if name not in suites.SUITES:
        raise ValueError(f"Invalid value for argument `suite`: expected one of {sorted(suites.SUITES)}. "
                         f"Received: suite={name!r}")
    chosen = suites.SUITES[name]
    if rows:
        ids = [r.id for r in chosen]
        unknown = [i for i in rows if i not in ids]
        if unknown:
            raise ValueError(f"Invalid value for argument `rows`: {unknown} not in suite {name!r} "
                             f"(its rows: {', '.join(ids)}).")
        chosen = [r for r in chosen if r.id in rows]
    rng = np.random.default_rng(seed)
    steps = []
    for row in chosen:
        arrays = inputs.make_inputs(row, dtype, data_format, rng)
        if training:
            arrays["dy"] = inputs.make_output_gradient(row, dtype, data_format, rng)

        def forward(x, row=row, arrays=arrays):
            return calls.call_op(row, arrays, data_format)

        def backward(x, y, row=row, arrays=arrays):
            try:
                gradient_calls.prepare(row, arrays, data_format, None, gradient_calls.BACKWARD)()
            except gradient_calls.NoBackward as e:
                return str(e)
            return None

        steps.append(Step(f"{row.id} {row.description}", forward, backward if training else None,
                          tuple(arrays["x"].shape)))
    return steps


def model_steps(model, batch=None, training=False, seed=0):
    """(steps, first input): a step per layer of a Sequential ``model``, to run chained from a
    random input of its input shape (batch ``batch``; default: the config's batch when fixed,
    else 1)."""
    shape = input_shape(model, batch)
    input_layer = getattr(model, "_input_layer", None)  # Sequential lists it apart from its layers
    dtype = np.dtype(input_layer.dtype if input_layer is not None else "float32")
    rng = np.random.default_rng(seed)
    steps = []
    for index, layer in enumerate(model.layers):
        def forward(x, layer=layer):
            return layer(x, training=False)

        def backward(x, y, layer=layer, first=index == 0):
            return _layer_backward(layer, x, first, rng)

        steps.append(Step(f"{layer.name} ({type(layer).__name__})", forward, backward if training else None))
    return steps, _random(rng, shape, dtype)


def _random(rng, shape, dtype):
    return (rng.random(shape, dtype=np.float32) * 2 - 1).astype(dtype)


def _layer_backward(layer, x, first, rng):
    """A training step's work for one layer: its forward with ``training=True`` on a tape, then
    the gradients of its trainable weights and (past the first layer, as in ``fit``) its input."""
    from .. import GradientTape

    sources = ([] if first else [x]) + list(layer.trainable_weights)
    if not sources:
        return "nothing to differentiate"
    with GradientTape() as tape:
        if not first:
            tape.watch(x)
        y = layer(x, training=True)
    dy = _random(rng, tuple(y.shape), np.dtype(y.dtype))
    tape.gradient(y, sources, output_gradients=dy)
    return None


def input_shape(model, batch=None):
    """The model's input shape with its batch set: ``batch``, else the config's own when fixed,
    else 1. Every other dimension must be known (the kernels depend on exact shapes)."""
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"Invalid value for argument `batch`: expected a positive integer. Received: batch={batch!r}")
    shape = model.input_shape
    if shape is None:
        raise ValueError(f"Model {model.name!r} has no input shape: its config has no InputLayer (batch_shape) "
                         "and no build_input_shape, so the shapes its layers will see are unknown.")
    shape = tuple(shape)
    unknown = [i for i, d in enumerate(shape[1:], start=1) if d is None]
    if unknown:
        raise ValueError(f"Model {model.name!r} has input shape {shape} with unknown dimension(s) {unknown}; "
                         "warm-up needs exact shapes (the kernels a call uses depend on them).")
    return (batch if batch is not None else shape[0] if shape[0] is not None else 1,) + shape[1:]


# ---------------------------------------------------------------------------------------------
# Reading a model
# ---------------------------------------------------------------------------------------------
def read_model_config(path):
    """The serialized model (a dict) in a JSON file or in a ``.keras`` archive's ``config.json``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"Invalid value for argument `model`: {str(path)!r} is not a file.")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo("config.json")
            except KeyError:
                raise ValueError(f"Invalid value for argument `model`: {str(path)!r} is a zip archive without "
                                 "config.json (a .keras file has one).") from None
            if info.file_size > MAX_CONFIG_BYTES:
                raise ValueError(f"Invalid value for argument `model`: config.json in {str(path)!r} is "
                                 f"{info.file_size} bytes, more than a model config ({MAX_CONFIG_BYTES}).")
            text = archive.read(info)
    else:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError(f"Invalid value for argument `model`: {str(path)!r} is too large for a JSON model "
                             f"config ({path.stat().st_size} bytes).")
        text = path.read_bytes()
    try:
        config = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"Invalid value for argument `model`: {str(path)!r} is neither a .keras archive nor a "
                         f"JSON model config ({e}).") from None
    if not isinstance(config, dict):
        raise ValueError(f"Invalid value for argument `model`: {str(path)!r} holds a JSON "
                         f"{type(config).__name__}, not a model config (an object).")
    return config


def model_from_config(config, source="the config"):
    """The gpuconv Sequential a config describes, resolved through gpuconv's registry only."""
    from .. import saving
    from ..models import Sequential

    class_name = config.get("class_name")
    if class_name is None and "layers" in config:  # a bare Sequential.get_config()
        builder = lambda: Sequential.from_config(config)  # noqa: E731
    elif class_name in ("Functional", "Model"):
        raise ValueError(f"{source} holds a functional model (class_name {class_name!r}); gpuconv cannot read "
                         "one yet: it needs the model loader of issue 13. A Sequential model warms up today.")
    elif class_name != "Sequential":
        raise ValueError(f"{source} is not a Sequential model config: class_name={class_name!r}.")
    else:
        builder = lambda: saving.deserialize_keras_object(config)  # noqa: E731
    try:
        model = builder()
    except (ValueError, TypeError) as e:
        raise ValueError(f"Cannot rebuild the Sequential model of {source}: {e}") from e
    if not isinstance(model, Sequential):
        raise ValueError(f"{source} did not rebuild as a gpuconv Sequential (got {type(model).__name__}).")
    return model


def load_model(path):
    return model_from_config(read_model_config(path), source=repr(str(path)))


# ---------------------------------------------------------------------------------------------
# Running steps and counting compiles
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Pass:
    """One forward or backward of a step: its time and what it compiled or found cached."""
    name: str
    seconds: float
    compiles: int
    disk_hits: int
    note: str = ""  # why nothing ran ("no backward for op ...")

    def text(self):
        if self.note:
            return f"{self.name}: {self.note}"
        if self.compiles:
            found = f", {self.disk_hits} from the disk cache" if self.disk_hits else ""
            what = f"compiled {self.compiles}{found}"
        elif self.disk_hits:
            what = f"disk cache ({self.disk_hits})"
        else:
            what = "nothing compiled (already loaded, or no kernel)"
        return f"{self.name} {self.seconds:.2f} s, {what}"


@dataclasses.dataclass
class StepResult:
    step: Step
    output_shape: tuple = None
    passes: list = dataclasses.field(default_factory=list)
    error: str = ""


def _counts():
    """(compiles, disk hits) so far in this process, over NVRTC and the emulator's builds."""
    from ..emulator import build
    from . import module_cache

    stats = module_cache.stats
    return (stats.get("nvrtc_compiles", 0) + build.stats.get("builds", 0),
            stats.get("disk_hits", 0) + build.stats.get("disk_hits", 0))


class DeviceRunner:
    """Runs each pass on the active device and waits for it; counts from the compile counters."""

    def __init__(self, backend_name):
        from . import device

        self.backend_name = backend_name
        device.active().synchronize()  # a GPU's context starts here, not inside the first step's time

    def where(self):
        from ..emulator import build
        from . import module_cache

        folder = build.cache_dir() if self.backend_name == "cuda-emulator" else module_cache.cache_dir()
        return self.backend_name, folder

    def measure(self, name, fn):
        from . import device

        before = _counts()
        start = time.perf_counter()
        result = fn()
        device.active().synchronize()
        seconds = time.perf_counter() - start
        after = _counts()
        return result, Pass(name, seconds, after[0] - before[0], after[1] - before[1])


class TargetRunner:
    """Plans each pass for ``target`` on the dry-run device (nothing runs), then compiles what it
    asked for through the runtime's path (``module_cache.cubin_on_disk``) for the target's arch."""

    def __init__(self, target):
        from . import dry_run, nvrtc

        if target not in dry_run.TARGETS:
            raise ValueError(f"Invalid value for argument `target`: expected one of {sorted(dry_run.TARGETS)}. "
                             f"Received: target={target!r}")
        self.target = target
        self.arch = dry_run.TARGETS[target][0]
        self.units = dry_run.DryRunDevice(target)  # what the GPU compiles together (its compile_unit)
        nvrtc.version()  # loads NVRTC now, not inside the first step's time
        self.done = set()  # compiled (or found) already in this run: a real process holds them in memory

    def where(self):
        from . import module_cache

        return f"target {self.target} (sm_{self.arch}, planned, no GPU)", module_cache.cache_dir()

    def measure(self, name, fn):
        from . import dry_run, module_cache, options

        start = time.perf_counter()
        with dry_run.planning(self.target) as requests:
            result = fn()
        before = _counts()
        compile_options = options.compile_options(self.arch)
        for filename, expression in dry_run.unique(requests):
            unit = self.units.compile_unit(filename, expression)
            if (filename, unit) not in self.done:
                module_cache.cubin_on_disk(filename, unit, compile_options)
                self.done.add((filename, unit))
        after = _counts()
        return result, Pass(name, time.perf_counter() - start, after[0] - before[0], after[1] - before[1])


def run_steps(steps, runner, out=None, chain_from=None):
    """Run every step (forward, then backward when it has one), writing a line per step to
    ``out`` as it finishes; returns the StepResults. With ``chain_from`` (a model's input) each
    step gets the previous one's output and a failure ends the run (the next layer has no
    input); otherwise steps are independent and a failure is reported and passed over."""
    results, x = [], chain_from
    for index, step in enumerate(steps, start=1):
        result = StepResult(step)
        results.append(result)
        shape = step.input_shape if x is None else tuple(x.shape)
        try:
            y, forward = runner.measure("forward", lambda: step.forward(x))
            result.passes.append(forward)
            result.output_shape = tuple(y.shape)
            if step.backward is not None:
                note, backward = runner.measure("backward", lambda: step.backward(x, y))
                backward.note = note or ""
                result.passes.append(backward)
        except Exception as e:  # a compile or launch failure: say which step, with the library's text
            result.error = f"{type(e).__name__}: {e}"
        if out is not None:
            body = f"FAILED: {result.error}" if result.error else "; ".join(p.text() for p in result.passes)
            out.write(f"[{index}/{len(steps)}] {step.label} {shape} -> {result.output_shape or '?'}: {body}\n")
            out.flush()
        if chain_from is not None:
            if result.error:
                break
            x = y
    return results


def summary(results, runner, what, seconds):
    passes = [p for r in results for p in r.passes]
    failed = sum(1 for r in results if r.error)
    where, folder = runner.where()
    return (f"warm-up of {what} on {where}: {len(results)} step(s) in {seconds:.1f} s, "
            f"{sum(p.compiles for p in passes)} compiled, {sum(p.disk_hits for p in passes)} from the disk cache, "
            f"{failed} failed; cache folder {folder}")


# ---------------------------------------------------------------------------------------------
# Where to run
# ---------------------------------------------------------------------------------------------
def select_runner(device="cuda", target=None):
    """The runner for ``--device`` / ``--target``; selects the backend it needs. Raises
    GPUNeededError when ``device='cuda'`` and no GPU answers."""
    import gpuconv
    from .. import backend

    if target is not None:
        runner = TargetRunner(target)  # checks the name before the backend changes
        gpuconv.set_backend("cuda-emulator")  # the CUDA engine's host code plans; nothing runs
        return runner
    if device not in DEVICES:
        raise ValueError(f"Invalid value for argument `device`: expected one of {DEVICES}. Received: device={device!r}")
    if device == "emulator":
        gpuconv.set_backend("cuda-emulator")
        return DeviceRunner("cuda-emulator")
    ok, reason = backend.probe_cuda()
    if not ok:
        raise GPUNeededError(
            f"gpuconv.cuda.warmup needs a GPU to compile for ({reason}). Run it where the model will run, "
            "or pass --target a100|h100|h200 to compile for a GPU you do not have here, or --device emulator "
            "to try the command on the cuda-emulator.")
    gpuconv.set_backend("cuda")
    return DeviceRunner("cuda")


def warmup(suite=None, model=None, rows=None, batch=None, training=False, device="cuda", target=None,
           dtype="float32", data_format="channels_last", out=None):
    """Run the warm-up of ``suite`` (a name) or ``model`` (a path or a gpuconv Sequential);
    returns (results, summary line). The backend selection is restored afterwards."""
    import gpuconv
    from .. import backend

    if (suite is None) == (model is None):
        raise ValueError("Pass exactly one of `suite` and `model`. "
                         f"Received: suite={suite!r}, model={model!r}")
    first = None
    if suite is not None:
        steps, what = suite_steps(suite, rows, dtype, data_format, training), f"suite {suite!r}"
    else:
        if isinstance(model, (str, os.PathLike)):
            what, model = repr(str(model)), load_model(model)
        else:
            what = f"model {model.name!r}"
        steps, first = model_steps(model, batch, training)
    previous = backend.requested_backend()
    start = time.perf_counter()
    try:
        runner = select_runner(device, target)
        results = run_steps(steps, runner, out, chain_from=first)
    finally:
        backend.reset()
        gpuconv.set_backend(previous)
    return results, summary(results, runner, what, time.perf_counter() - start)


def main(argv=None):
    from . import dry_run

    ap = argparse.ArgumentParser(prog="python -m gpuconv.cuda.warmup", description=__doc__.splitlines()[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--suite", help="a benchmark suite: suite, cpu, quick or keras")
    source.add_argument("--model", help="a .keras archive or a JSON Sequential config")
    ap.add_argument("--rows", nargs="+", metavar="ID", help="only these rows of the suite")
    ap.add_argument("--batch", type=int, default=None, help="the model's batch (default: its config's, else 1)")
    ap.add_argument("--training", action="store_true", help="warm the backward too (GradientTape)")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--device", choices=DEVICES, default="cuda",
                       help="run on the GPU (default) or the cuda-emulator (its own cache; for trying it out)")
    where.add_argument("--target", choices=sorted(dry_run.TARGETS),
                       help="no GPU: plan for this GPU and compile its kernels for its architecture")
    ap.add_argument("--dtype", choices=DTYPES, default="float32", help="suite rows' dtype (default float32)")
    ap.add_argument("--data-format", choices=("channels_last", "channels_first"), default="channels_last",
                    help="suite rows' layout (default channels_last)")
    args = ap.parse_args(argv)
    if args.rows and not args.suite:
        ap.error("--rows selects rows of a --suite")
    if args.batch is not None and not args.model:
        ap.error("--batch applies to --model (suite rows have their own batch)")
    try:
        results, line = warmup(args.suite, args.model, args.rows, args.batch, args.training, args.device,
                               args.target, args.dtype, args.data_format, out=sys.stdout)
    except GPUNeededError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_NO_GPU
    except ValueError as e:
        ap.error(str(e))
    print(line)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

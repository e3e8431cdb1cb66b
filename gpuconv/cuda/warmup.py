"""Compile, into the disk cache, every kernel a benchmark suite or a model will use.

    python -m gpuconv.cuda.warmup --suite NAME [--rows ID ...] [--dtype float32] [--data-format channels_last]
    python -m gpuconv.cuda.warmup --model PATH [--batch N]
        [--training] [--device cuda|emulator | --target a100|h100|h200]

Why: a kernel is compiled by NVRTC on its first call (about a second each) and kept in the disk
cache (``GPUCONV_CACHE_DIR``, ``module_cache``). A deployment image built with this command
answers its container's first calls from the cache.

How it knows what a call will use: it makes the call. Each suite row, or each layer (functional:
each node) of the model at its input shape, grouped as its inference fusion plan groups them, runs
once through the real dispatch on random inputs of the exact shapes (with ``--training`` every
layer, also its backward, through ``gpuconv.GradientTape``, then one optimizer update of weights
shaped as the model's), and the compile counters (``module_cache.stats``; the emulator's
``build.stats``) say what it compiled. Where it runs:

- ``--device cuda`` (default): the active GPU. Without one the command exits with status 2.
- ``--device emulator``: the cuda-emulator, which builds the same kernel sources with the host
  compiler into its own cache (``GPUCONV_EMULATOR_CACHE_DIR``): slow, for trying the command.
- ``--target NAME``: no GPU needed. The engine's dispatch is planned for that GPU on the dry-run
  device (``dry_run.py``: nothing is launched) and the kernels it asks for are compiled by NVRTC
  for the target's architecture with the runtime's own options, into the disk cache the runtime
  reads (same NVRTC version, same kernel sources: same cache entries).

``--model`` reads a JSON file holding a Sequential or functional model config (Keras'
``model.to_json()`` or a bare ``get_config()``), or a model file ``gpuconv.saving.load_model``
reads (a ``.keras`` archive, a Keras 2 ``.h5`` file). Files are untrusted data: nothing is
unpickled, and classes resolve only through gpuconv's own registry (``gpuconv.saving``).

Layering: this module is the engine's half (what a step is, the runners that run or plan it and
count its compiles, where to run). Building the steps needs what sits above the engine (models,
the autodiff tape, the benchmark suites), so the steps and this command's options live in the
consumer, ``gpuconv.benchmarking.cold_start``; running this module hands the command line to it.
"""
import dataclasses
import sys
import time

from . import dry_run

DEVICES = ("cuda", "emulator")
EXIT_NO_GPU = 2


class GPUNeededError(RuntimeError):
    """No GPU answers and neither ``--device emulator`` nor ``--target`` was asked for."""


# ---------------------------------------------------------------------------------------------
# What to run: steps
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Step:
    """One suite row, model layer (or node, or fused group) or optimizer update. ``forward(x)``
    (its pass named ``pass_name``) returns the output; ``backward(x, y)`` (None: no backward to
    run) computes the gradients a training step takes and returns None, or a note saying why
    there was nothing to run. ``x`` is the previous step's output in a chain (a model's steps),
    else None (a suite row holds its own inputs)."""
    label: str
    forward: object
    backward: object = None
    input_shape: tuple = None  # known ahead for a suite row or a model's node; a chained layer's is its input's
    pass_name: str = "forward"  # what ``forward`` does, for its line ("update": an optimizer step)


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
    asked for through the runtime's path (``dry_run.compile_planned``) for the target's arch."""

    def __init__(self, target):
        from . import nvrtc

        self.arch = dry_run.DryRunDevice(target).compute_capability  # refuses an unknown target
        self.target = target
        nvrtc.version()  # loads NVRTC now, not inside the first step's time
        self.done = set()  # compiled (or found) already in this run: a real process holds them in memory

    def where(self):
        from . import module_cache

        return f"target {self.target} (sm_{self.arch}, planned, no GPU)", module_cache.cache_dir()

    def measure(self, name, fn):
        start = time.perf_counter()
        with dry_run.planning(self.target) as requests:
            result = fn()
        before = _counts()
        dry_run.compile_planned(dry_run.unique(requests), self.target, self.done)
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
        shape = step.input_shape if x is None or step.input_shape is not None else tuple(x.shape)
        try:
            y, forward = runner.measure(step.pass_name, lambda: step.forward(x))
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
    from .. import backend

    if target is not None:
        runner = TargetRunner(target)  # checks the name before the backend changes
        backend.set_backend("cuda-emulator")  # the CUDA engine's host code plans; nothing runs
        return runner
    if device not in DEVICES:
        raise ValueError(f"Invalid value for argument `device`: expected one of {DEVICES}. Received: device={device!r}")
    if device == "emulator":
        backend.set_backend("cuda-emulator")
        return DeviceRunner("cuda-emulator")
    ok, reason = backend.probe_cuda()
    if not ok:
        raise GPUNeededError(
            f"gpuconv.cuda.warmup needs a GPU to compile for ({reason}). Run it where the model will run, "
            "or pass --target a100|h100|h200 to compile for a GPU you do not have here, or --device emulator "
            "to try the command on the cuda-emulator.")
    backend.set_backend("cuda")
    return DeviceRunner("cuda")


def warm(steps, what, device="cuda", target=None, out=None, chain_from=None):
    """Run ``steps`` (see :func:`run_steps`) on the runner ``device`` / ``target`` select;
    returns (results, summary line). The backend selection is restored afterwards."""
    from .. import backend

    previous = backend.requested_backend()
    start = time.perf_counter()
    try:
        runner = select_runner(device, target)
        results = run_steps(steps, runner, out, chain_from=chain_from)
    finally:
        backend.reset()
        backend.set_backend(previous)
    return results, summary(results, runner, what, time.perf_counter() - start)


if __name__ == "__main__":
    # The command builds its steps from models and benchmark suites, which sit above the engine:
    # its options live with them, in the consumer (see the module docstring).
    from ..benchmarking import cold_start

    sys.exit(cold_start.warmup_main())

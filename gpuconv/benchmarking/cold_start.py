"""What the first call of each layer costs on a GPU before it runs: compiling its kernels.

    python -m gpuconv.benchmarking.cold_start [--target h200] [--dtype float32] [--training]
                                              [--only NAME ...] [--json out.json]

NVRTC compilation is CPU work, so this needs no GPU. For each layer of :data:`LAYERS` (one per
kernel family, at shapes from docs/bench_suite.md):

1. the kernels its first call launches, from the CUDA engine's own dispatch run on a dry-run
   device planned for ``--target`` (``gpuconv.cuda.dry_run``), with ``--training`` those of a
   forward and backward step under a ``GradientTape``;
2. **cold**: each compiled through the runtime's own path (``module_cache.cubin_on_disk``: the
   NVRTC run with the runtime's options for the target's architecture, and the disk-cache write)
   into an empty cache folder;
3. **warm**: the same path again, now a verified disk-cache hit (what a new process pays).

Not included, because it needs a GPU: loading the cubin into the context (``cuModuleLoadData``).
NVRTC's own start-up (the first program a process compiles) is timed once and reported apart:
every process pays it once, whatever it compiles first.

The warm-up that removes the cold start (``python -m gpuconv.cuda.warmup``, :func:`warmup_main`)
builds its steps here: suite rows and model layers sit above the engine, where
``gpuconv.cuda.warmup`` (the runners that run or plan a step and count its compiles) cannot reach.
"""
import argparse
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

from gpuconv.cuda import warmup as _warmup

# (name, layer factory over a layers module, input shape (channels_last)).
LAYERS = (
    ("conv2d_3x3_relu", lambda L: L.Conv2D(64, 3, padding="same", activation="relu"), (1, 56, 56, 64)),
    ("conv1d_causal_d2", lambda L: L.Conv1D(64, 3, padding="causal", dilation_rate=2), (1, 256, 32)),
    ("conv3d_3x3x3", lambda L: L.Conv3D(16, 3, padding="same"), (1, 16, 16, 16, 8)),
    ("conv2d_transpose_s2", lambda L: L.Conv2DTranspose(32, 3, strides=2, padding="same"), (1, 28, 28, 64)),
    ("depthwise_3x3", lambda L: L.DepthwiseConv2D(3, padding="same"), (1, 56, 56, 64)),
    ("separable_3x3", lambda L: L.SeparableConv2D(64, 3, padding="same"), (1, 56, 56, 32)),
    ("locally_connected2d", lambda L: L.LocallyConnected2D(8, 3), (1, 16, 16, 4)),
    ("max_pool_2x2", lambda L: L.MaxPooling2D(2), (1, 56, 56, 64)),
    ("average_pool_3x3_s2", lambda L: L.AveragePooling2D(3, strides=2, padding="same"), (1, 56, 56, 64)),
    ("global_average_pool", lambda L: L.GlobalAveragePooling2D(), (1, 7, 7, 512)),
    ("upsampling_bilinear", lambda L: L.UpSampling2D(2, interpolation="bilinear"), (1, 28, 28, 64)),
)
GOAL_COLD_S = 0.5
GOAL_WARM_S = 0.005


@dataclasses.dataclass
class Row:
    name: str
    kernels: list      # [(kernel file, name expression)]
    cold_s: float      # sum over the kernels: NVRTC + disk-cache write
    warm_s: float      # sum over the kernels: verified disk-cache hit


def plan(name, factory, shape, dtype="float32", training=False, target="h200"):
    """The ``(kernel file, name expression)`` list the layer's first call asks for (no repeats)."""
    import gpuconv
    from gpuconv import layers
    from gpuconv.cuda import dry_run

    layer = factory(layers)
    layer = type(layer).from_config({**layer.get_config(), "dtype": dtype})
    x = np.zeros(shape, dtype)
    with dry_run.planning(target) as requests:
        if training:
            with gpuconv.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
            tape.gradient(y, [x] + list(layer.trainable_weights), output_gradients=np.ones(y.shape, dtype))
        else:
            layer(x)
    return dry_run.unique(requests)


def nvrtc_startup_s(arch):
    """Seconds of the first NVRTC program in this process (a small registered kernel, not cached)."""
    from gpuconv.cuda import nvrtc, options, pooling, registry  # noqa: F401  (registers pooling.cu)

    start = time.perf_counter()
    nvrtc.nvrtc_compile("pooling.cu", registry.registered("pooling.cu")[:1], options.compile_options(arch))
    return time.perf_counter() - start


def run(names=None, dtype="float32", training=False, target="h200", cache_dir=None):
    """Rows for ``names`` (default: every layer), each compiled into its own empty folder under
    ``cache_dir`` (default: a new temporary folder). Sets ``GPUCONV_CACHE_DIR`` for the duration."""
    import gpuconv
    from gpuconv.cuda import dry_run, module_cache

    chosen = [row for row in LAYERS if names is None or row[0] in names]
    unknown = sorted(set(names or ()) - {row[0] for row in LAYERS})
    if unknown:
        raise ValueError(f"Invalid value for argument `names`: unknown layer(s) {unknown}; "
                         f"expected some of {[row[0] for row in LAYERS]}")
    previous_backend, previous_dir = gpuconv.get_backend(), os.environ.get(module_cache.CACHE_ENV)
    with tempfile.TemporaryDirectory(prefix="gpuconv-cold-start-") as fresh:
        gpuconv.set_backend("cuda-emulator")  # the CUDA engine's host code plans; nothing runs
        try:
            rows = []
            for name, factory, shape in chosen:
                # An empty cache per layer: a kernel an earlier row compiled would be a disk hit.
                os.environ[module_cache.CACHE_ENV] = os.path.join(cache_dir or fresh, name)
                kernels = plan(name, factory, shape, dtype, training, target)
                cold = dry_run.compile_planned(kernels, target)  # NVRTC + disk-cache write
                warm = dry_run.compile_planned(kernels, target)  # now a verified disk-cache hit
                rows.append(Row(name, kernels, cold, warm))
            return rows
        finally:
            gpuconv.set_backend(previous_backend)
            if previous_dir is None:
                os.environ.pop(module_cache.CACHE_ENV, None)
            else:
                os.environ[module_cache.CACHE_ENV] = previous_dir


def report(rows, startup_s, target, dtype, training, arch):
    """The table: one line per layer, its kernel count, cold and warm seconds against the goals."""
    phase = "forward + backward" if training else "forward"
    lines = [f"cold start for {target} (sm_{arch}), {dtype}, {phase}; NVRTC start-up, once per process: {startup_s:.2f} s",
             f"{'layer':22s} {'kernels':>7s} {'cold (s)':>9s} {'warm (ms)':>10s}  "
             f"goal: cold < {GOAL_COLD_S:g} s, warm < {GOAL_WARM_S * 1e3:g} ms"]
    for r in rows:
        met = r.cold_s < GOAL_COLD_S and r.warm_s < GOAL_WARM_S
        lines.append(f"{r.name:22s} {len(r.kernels):7d} {r.cold_s:9.2f} {r.warm_s * 1e3:10.2f}  {'met' if met else 'missed'}")
    return "\n".join(lines)


def main(argv=None):
    from gpuconv.cuda import dry_run

    ap = argparse.ArgumentParser(prog="python -m gpuconv.benchmarking.cold_start", description=__doc__.split("\n")[0])
    ap.add_argument("--target", default="h200", choices=sorted(dry_run.TARGETS), help="the GPU planned for")
    ap.add_argument("--dtype", default="float32", choices=("float16", "float32", "float64"))
    ap.add_argument("--training", action="store_true", help="a forward and backward step, not a forward call")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME", choices=[row[0] for row in LAYERS])
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    arch = dry_run.TARGETS[args.target][0]
    startup = nvrtc_startup_s(arch)
    rows = run(args.only, args.dtype, args.training, args.target)
    print(report(rows, startup, args.target, args.dtype, args.training, arch))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"target": args.target, "arch": arch, "dtype": args.dtype, "training": args.training,
                       "nvrtc_startup_s": startup, "rows": [dataclasses.asdict(r) for r in rows]}, f, indent=1)
    return 0


# ---------------------------------------------------------------------------------------------
# Warm-up: the steps of ``python -m gpuconv.cuda.warmup`` (see gpuconv/cuda/warmup.py)
# ---------------------------------------------------------------------------------------------
DTYPES = ("float16", "float32", "float64")
MAX_CONFIG_BYTES = 64 * 2**20  # a model config is kilobytes; refuse to read more from a JSON file
# Keras' ``compile(optimizer="rmsprop")`` default: the update a model without its own optimizer gets.
DEFAULT_OPTIMIZER = "rmsprop"


def suite_steps(name, rows=None, dtype="float32", data_format="channels_last", training=False, seed=0):
    """A step per row of suite ``name`` (``gpuconv.benchmarking.suites.SUITES``), or of the rows
    whose ids are in ``rows``, called as the benchmark calls them (``calls.call_op``)."""
    from . import calls, gradient_calls, inputs, suites

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

        steps.append(_warmup.Step(f"{row.id} {row.description}", forward, backward if training else None,
                                  tuple(arrays["x"].shape)))
    return steps


def model_steps(model, batch=None, training=False, seed=0):
    """(steps, first input): a step per layer of a Sequential ``model``, or per node of a
    functional one, to run chained from random inputs of its input shape(s) (batch ``batch``;
    default: the config's batch when fixed, else 1). With ``training``, each step has a backward
    and a last step applies one optimizer update to the model's trainable weights."""
    from gpuconv.models import Sequential

    rng = np.random.default_rng(seed)
    if isinstance(model, Sequential):
        steps, first = _sequential_steps(model, batch, training, rng)
    else:
        steps, first = _graph_steps(model, batch, training, rng)
    if training and model.trainable_weights:
        steps.append(_optimizer_step(model))
    return steps, first


def _sequential_steps(model, batch, training, rng):
    from gpuconv import fusion

    shape = input_shape(model, batch)
    input_layer = getattr(model, "_input_layer", None)  # Sequential lists it apart from its layers
    dtype = np.dtype(input_layer.dtype if input_layer is not None else "float32")
    # What the model's own calls run: for inference its fusion plan (a group's kernels, with the
    # folded BatchNormalization and the fused activation, are not its members'); a training step
    # runs every layer.
    members = model.layers if training else fusion.sequential_layers(model, training=False)
    steps = []
    for index, layer in enumerate(members):
        def forward(x, layer=layer):
            return layer(x, training=False)

        def backward(x, y, layer=layer, first=index == 0):
            return _layer_backward(layer, x, first, rng)

        steps.append(_warmup.Step(_label(layer), forward, backward if training else None))
    return steps, _random(rng, shape, dtype)


def _label(operation):
    """``name (Class)``; for a fused group its members', then ``fused``."""
    from gpuconv import fusion

    if isinstance(operation, fusion.FusedGroup):
        return " + ".join(_label(member) for member in operation.layers) + " fused"
    return f"{operation.name} ({type(operation).__name__})"


def _graph_steps(model, batch, training, rng):
    """A step per node of a functional model, in its run order. The steps share the values of
    the graph's tensors (each node reads its inputs' values and stores its outputs'), so they
    run chained: a failure ends the run, and a step's ``x`` (the previous output) is not used."""
    from gpuconv import fusion
    from gpuconv.functional import _run_node
    from gpuconv.layers.symbolic import SymbolicTensor, flatten, map_structure

    values = {}
    shapes = input_shapes(model, batch)
    for tensor, shape in zip(model.inputs, shapes):
        values[id(tensor)] = _random(rng, shape, np.dtype(tensor.dtype or "float32"))
    given = shapes[0][0]
    model_inputs = {id(t) for t in model.inputs}

    def run_node(node, training):
        args = map_structure(lambda a: values[id(a)] if isinstance(a, SymbolicTensor) else a, node.args)
        result = _run_node(node, args, training)
        results = [result] if len(node.outputs) == 1 else list(result)
        for tensor, value in zip(node.outputs, results):
            values[id(tensor)] = value
        return results

    steps = []
    for node in model._run_order if training else fusion.run_order(model, training=False):  # as in _sequential_steps
        operation = node.operation
        tensors = [a for a in flatten(node.args) if isinstance(a, SymbolicTensor)]
        in_shapes = [(given,) + tuple(t.shape[1:]) for t in tensors]

        def forward(x, node=node):
            return run_node(node, training=False)[0]

        def backward(x, y, node=node, tensors=tensors):
            inner = [values[id(t)] for t in tensors if id(t) not in model_inputs]  # fit: no input gradient
            sources = inner + list(getattr(node.operation, "trainable_weights", ()))
            if not sources:
                return "nothing to differentiate"
            with _tape() as tape:
                for value in inner:
                    tape.watch(value)
                outputs = run_node(node, training=True)
            tape.gradient(outputs, sources, output_gradients=[_random(rng, tuple(o.shape), np.dtype(o.dtype))
                                                              for o in outputs])
            return None

        steps.append(_warmup.Step(_label(operation), forward,
                                  backward if training else None, in_shapes[0] if len(in_shapes) == 1 else in_shapes))
    return steps, values[id(model.inputs[0])]


def _optimizer_step(model):
    """The step that runs one optimizer update of weights shaped as the model's trainable ones
    (the update kernels of ``gpuconv/cuda/optimizer_updates.py``: one per weight dtype, rule and
    index width), with a copy of the model's own optimizer when it has one (a file saved after
    ``compile``), else Keras' default. Copies, so that neither the model's weights nor its
    optimizer's state change: only the shapes and dtypes decide the kernels. Its ``x`` (the
    model's output) passes through."""
    from gpuconv import optimizers
    from gpuconv.variables import Variable

    own = getattr(model, "optimizer", None)
    optimizer = type(own).from_config(own.get_config()) if own is not None else optimizers.get(DEFAULT_OPTIMIZER)
    weights = [Variable(np.zeros(w.shape, w.dtype), name=w.name, path=w.path) for w in model.trainable_weights]

    def update(x):
        optimizer.apply_gradients([(w.array_like(x), w) for w in weights])
        return x

    whose = "the model's" if own is not None else "Keras' compile default"
    return _warmup.Step(f"optimizer ({type(optimizer).__name__}, {whose}) on {len(weights)} weight(s)", update,
                        pass_name="update")


def _tape():
    from gpuconv import GradientTape

    return GradientTape()


def _random(rng, shape, dtype):
    return (rng.random(shape, dtype=np.float32) * 2 - 1).astype(dtype)


def _layer_backward(layer, x, first, rng):
    """A training step's work for one layer: its forward with ``training=True`` on a tape, then
    the gradients of its trainable weights and (past the first layer, as in ``fit``) its input."""
    sources = ([] if first else [x]) + list(layer.trainable_weights)
    if not sources:
        return "nothing to differentiate"
    with _tape() as tape:
        if not first:
            tape.watch(x)
        y = layer(x, training=True)
    dy = _random(rng, tuple(y.shape), np.dtype(y.dtype))
    tape.gradient(y, sources, output_gradients=dy)
    return None


def input_shape(model, batch=None):
    """The model's input shape with its batch set: ``batch``, else the config's own when fixed,
    else 1. Every other dimension must be known (the kernels depend on exact shapes)."""
    shapes = input_shapes(model, batch)
    return shapes[0] if len(shapes) == 1 else shapes


def input_shapes(model, batch=None):
    """:func:`input_shape` of each of the model's inputs, as a list (one batch for all)."""
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"Invalid value for argument `batch`: expected a positive integer. Received: batch={batch!r}")
    shape = model.input_shape
    if shape is None:
        raise ValueError(f"Model {model.name!r} has no input shape: its config has no InputLayer (batch_shape) "
                         "and no build_input_shape, so the shapes its layers will see are unknown.")
    shapes = [tuple(s) for s in shape] if shape and not _is_shape(shape) else [tuple(shape)]
    fixed = [s[0] for s in shapes if s[0] is not None]
    first = batch if batch is not None else fixed[0] if fixed else 1
    for s in shapes:
        unknown = [i for i, d in enumerate(s[1:], start=1) if d is None]
        if unknown:
            raise ValueError(f"Model {model.name!r} has input shape {s} with unknown dimension(s) {unknown}; "
                             "warm-up needs exact shapes (the kernels a call uses depend on them).")
    return [(first,) + s[1:] for s in shapes]


def _is_shape(value):
    return all(d is None or isinstance(d, (int, np.integer)) for d in value)


# Reading a model --------------------------------------------------------------------------------
def read_model_config(path):
    """The serialized model (a dict) in a JSON file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"Invalid value for argument `model`: {str(path)!r} is not a file.")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"Invalid value for argument `model`: {str(path)!r} is too large for a JSON model "
                         f"config ({path.stat().st_size} bytes).")
    try:
        config = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"Invalid value for argument `model`: {str(path)!r} is neither a model file (.keras, "
                         f".h5) nor a JSON model config ({e}).") from None
    if not isinstance(config, dict):
        raise ValueError(f"Invalid value for argument `model`: {str(path)!r} holds a JSON "
                         f"{type(config).__name__}, not a model config (an object).")
    return config


def model_from_config(config, source="the config"):
    """The gpuconv Sequential or functional model a config describes, resolved through gpuconv's
    registry only."""
    from gpuconv import saving
    from gpuconv.model import Model

    class_name = config.get("class_name")
    if class_name is None and {"layers", "input_layers", "output_layers"} <= set(config):  # a bare functional config
        builder = lambda: Model.from_config(config)  # noqa: E731
    elif class_name is None and "layers" in config:  # a bare Sequential.get_config()
        from gpuconv.models import Sequential

        builder = lambda: Sequential.from_config(config)  # noqa: E731
    elif class_name in ("Sequential", "Functional", "Model"):
        builder = lambda: saving.deserialize_keras_object(config)  # noqa: E731
    else:
        raise ValueError(f"{source} is not a Sequential or functional model config: class_name={class_name!r}.")
    try:
        model = builder()
    except (ValueError, TypeError) as e:
        raise ValueError(f"Cannot rebuild the model of {source}: {e}") from e
    return _checked_model(model, source)


def _checked_model(model, source):
    from gpuconv.functional import Functional
    from gpuconv.models import Sequential

    if not isinstance(model, (Sequential, Functional)):
        raise ValueError(f"{source} did not rebuild as a gpuconv Sequential or functional model "
                         f"(got {type(model).__name__}).")
    return model


def load_model(path, compile=True):
    """The model of a JSON config file, or of a model file ``gpuconv.saving.load_model`` reads
    (``.keras`` archive or directory, Keras 2 ``.h5``; with ``compile`` its optimizer too)."""
    from gpuconv import saving

    source = repr(str(path))
    path = pathlib.Path(path)
    # Told apart by content, as load_model does: the suffix of an untrusted file proves nothing.
    if path.is_dir() or (path.is_file() and saving._file_kind(path) is not None):
        try:
            model = saving.load_model(str(path), compile=compile)
        except (ValueError, TypeError, OSError) as e:
            raise ValueError(f"Cannot rebuild the model of {source}: {e}") from e
        return _checked_model(model, source)
    return model_from_config(read_model_config(path), source=source)


def warmup(suite=None, model=None, rows=None, batch=None, training=False, device="cuda", target=None,
           dtype="float32", data_format="channels_last", out=None):
    """Run the warm-up of ``suite`` (a name) or ``model`` (a path or a gpuconv Sequential or
    functional model); returns (results, summary line). The backend selection is restored."""
    if (suite is None) == (model is None):
        raise ValueError("Pass exactly one of `suite` and `model`. "
                         f"Received: suite={suite!r}, model={model!r}")
    first = None
    if suite is not None:
        steps, what = suite_steps(suite, rows, dtype, data_format, training), f"suite {suite!r}"
    else:
        if isinstance(model, (str, os.PathLike)):
            what, model = repr(str(model)), load_model(model, compile=training)
        else:
            what = f"model {model.name!r}"
        steps, first = model_steps(model, batch, training)
    return _warmup.warm(steps, what, device, target, out, chain_from=first)


def warmup_main(argv=None):
    """``python -m gpuconv.cuda.warmup``'s command line (see that module's docstring)."""
    from gpuconv.cuda import dry_run

    ap = argparse.ArgumentParser(prog="python -m gpuconv.cuda.warmup", description=_warmup.__doc__.splitlines()[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--suite", help="a benchmark suite: suite, cpu, quick or keras")
    source.add_argument("--model", help="a .keras archive, a .h5 model file or a JSON Sequential or functional config")
    ap.add_argument("--rows", nargs="+", metavar="ID", help="only these rows of the suite")
    ap.add_argument("--batch", type=int, default=None, help="the model's batch (default: its config's, else 1)")
    ap.add_argument("--training", action="store_true",
                    help="warm the backward (GradientTape) and a model's optimizer update too")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--device", choices=_warmup.DEVICES, default="cuda",
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
    except _warmup.GPUNeededError as e:
        print(f"error: {e}", file=sys.stderr)
        return _warmup.EXIT_NO_GPU
    except ValueError as e:
        ap.error(str(e))
    print(line)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

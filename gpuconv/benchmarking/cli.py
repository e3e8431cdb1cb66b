"""gpuconv-bench: time gpuconv per layer shape against the roofline and against PyTorch.

    gpuconv-bench --suite quick                      # CPU-sized subset, < 1 min on the NumPy engine
    gpuconv-bench --suite suite --dtype float16      # docs/bench_suite.md's rows (needs a GPU to be quick)
    gpuconv-bench --suite cpu --pass backward        # the gradients of each row (GradientTape) vs torch autograd
    gpuconv-bench --suite suite --dtype float16 --plan --target h200   # estimates, no GPU needed
    gpuconv-bench --op conv2d --batch 32 --in 64 --out 128 --size 56 --kernel 3 --padding same

Exit status: 0 when every row passed its correctness check, 1 when a row failed or errored
(a wrong answer is never timed), 2 for a usage error (impossible flags, a backend that is not
available, --plot without matplotlib).

The suites' table, how the roofline percentage and the ceilings are computed, and what a flagged
ratio means: docs/bench_suite.md in the repository.
"""
import argparse
import contextlib
import os
import re
import sys

from .gradient_calls import PASSES

SUITE_NAMES = ("suite", "cpu", "quick", "keras")
PLAN_TARGETS = ("h200", "h100", "a100")  # gpuconv.cuda.dry_run.TARGETS
# (warmup, repeat). On the CPU, each library's block re-warms after an idle pause (timing.py), so
# fewer than 3 warm-up and 15 timed calls let one cold call (caches, page faults, sleeping
# worker threads) set a row's median: the quick suite's D1 measured 4.4 ms with (1, 5), 1.8 ms
# with (3, 15).
DEFAULT_COUNTS = {"cuda": (10, 100), "cpu": (3, 15)}

# Row field -> the flag that sets it (error messages name the flag the user typed).
FIELD_FLAGS = {
    "op": "--op", "N": "--batch", "C": "--in", "K": "--out", "spatial": "--size", "k": "--kernel",
    "s": "--stride", "d": "--dilation", "g": "--groups", "dm": "--depth-multiplier", "padding": "--padding",
    "activation": "--activation",
}

_OP_PATTERN = re.compile(
    r"^(?P<family>conv|convtranspose|deconv|depthwiseconv|depthwise|dwconv|separableconv|separable|sepconv|"
    r"maxpool|maxpooling|avgpool|averagepool|averagepooling)(?P<rank>[123])d(?P<transpose>transpose)?$"
)
_FAMILIES = {
    "conv": "conv", "convtranspose": "conv_transpose", "deconv": "conv_transpose",
    "depthwiseconv": "depthwise", "depthwise": "depthwise", "dwconv": "depthwise",
    "separableconv": "separable", "separable": "separable", "sepconv": "separable",
    "maxpool": "max_pool", "maxpooling": "max_pool",
    "avgpool": "avg_pool", "averagepool": "avg_pool", "averagepooling": "avg_pool",
}
OP_EXAMPLES = ("conv1d", "conv2d", "conv3d", "conv2d_transpose", "depthwise_conv2d", "separable_conv2d",
               "max_pool2d", "avg_pool2d", "dense")


HELP_EPILOG = ("The suites' table, the roofline percentage, the ceilings and the flagged ratios (!) are "
               "explained in docs/bench_suite.md (in the gpuconv repository).")


class UsageError(Exception):
    """Reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(message)


def build_parser():
    p = _Parser(prog="gpuconv-bench", description=__doc__.split("\n\n")[0], epilog=HELP_EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to run")
    what.add_argument("--suite", choices=SUITE_NAMES,
                      help="a declared suite (default: quick); 'suite' is docs/bench_suite.md's table, "
                           "'cpu' its CPU-sized twin")
    what.add_argument("--rows", help="comma-separated row ids to keep from the suite (e.g. D4,W1)")
    what.add_argument("--list", action="store_true", help="list the suite's rows and exit")
    layer = p.add_argument_group("a single layer from flags (instead of --suite)")
    layer.add_argument("--op", help=f"one of {', '.join(OP_EXAMPLES)} (Keras class names work too)")
    layer.add_argument("--batch", type=int, default=1)
    layer.add_argument("--in", dest="in_channels", type=int, help="input channels")
    layer.add_argument("--out", dest="out_channels", type=int,
                       help="output channels (filters; default: --in, times --depth-multiplier for depthwise)")
    layer.add_argument("--size", help="spatial size: 56, or 8x28x28 / 8,28,28")
    layer.add_argument("--kernel", help="kernel size (pool size for pooling), e.g. 3 or 3x5")
    layer.add_argument("--stride", help="strides (default 1; pool size for pooling)")
    layer.add_argument("--dilation", default="1", help="dilation rate (default 1)")
    layer.add_argument("--groups", type=int, default=1)
    layer.add_argument("--padding", default="valid", help="valid | same | causal (1D conv/depthwise)")
    layer.add_argument("--depth-multiplier", type=int, default=1)
    layer.add_argument("--bias", action="store_true", help="add a bias (Keras use_bias)")
    layer.add_argument("--activation", default=None, help="fused activation, e.g. relu")
    how = p.add_argument_group("how")
    how.add_argument("--pass", dest="pass_name", choices=PASSES, default="forward",
                     help="what is timed: the forward op (default), its backward (input, kernel and bias "
                          "gradients of one recorded forward), or both per call")
    how.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    how.add_argument("--data-format", choices=("channels_last", "channels_first"), default="channels_last")
    how.add_argument("--backend", choices=("auto", "cuda", "numpy"),
                     help="default: $GPUCONV_BACKEND, else auto (CUDA when a GPU answers, else NumPy)")
    how.add_argument("--warmup", type=int, help="warm-up calls (default: 10 on the GPU, 3 on the CPU)")
    how.add_argument("--repeat", type=int, help="timed calls, median reported (default: 100 GPU, 15 CPU)")
    how.add_argument("--cuda-graph", action="store_true", help="time CUDA-graph replays (GPU only)")
    how.add_argument("--measure-ceilings", action="store_true",
                     help="measure the GPU's copy bandwidth and matmul rates instead of the datasheet")
    how.add_argument("--no-compare", action="store_true", help="do not run PyTorch side by side")
    how.add_argument("--algorithm", metavar="NAME",
                     help="force this convolution algorithm (a row of gpuconv/cuda/algorithms.py, e.g. "
                          "implicit_gemm or direct_tiled; conv_transpose rows: phase_tiled...) for every row "
                          "it can run: sets GPUCONV_ALGORITHM for the run")
    how.add_argument("--plan", action="store_true",
                     help="print what each row would launch on --target and its estimated time bound "
                          "(occupancy, waves, bytes per tile; NVRTC audit, no GPU needed) and exit")
    how.add_argument("--target", choices=PLAN_TARGETS, default="h200",
                     help="the GPU --plan plans for (default h200)")
    how.add_argument("--check-batch", type=int,
                     help="batch items the float64 oracle recomputes (default: all when cheap, else fewer)")
    how.add_argument("--seed", type=int, help="random seed of the operands (default: fresh; printed)")
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="FILE")
    out.add_argument("--csv", metavar="FILE")
    out.add_argument("--plot", metavar="FILE.png", help="needs matplotlib")
    return p


# --------------------------------------------------------------------------------------------
# Flags -> rows
# --------------------------------------------------------------------------------------------
def parse_op(name):
    """``(op, rank)`` from an op flag: conv2d, conv2d_transpose, DepthwiseConv2D, max_pool3d, dense..."""
    key = re.sub(r"[\s_\-]", "", str(name)).lower()
    if key in ("dense", "linear"):
        return "dense", 1
    m = _OP_PATTERN.match(key)
    if m is None:
        raise UsageError(f"--op {name}: unknown op; expected one of {', '.join(OP_EXAMPLES)} (or their Keras names)")
    family = _FAMILIES[m["family"]]
    if m["transpose"]:
        if family != "conv":
            raise UsageError(f"--op {name}: only conv has a transposed form")
        family = "conv_transpose"
    return family, int(m["rank"])


def parse_dims(flag, text, rank):
    """'3' -> 3; '3x5' / '3,5' -> (3, 5). Validation of the values is the library's."""
    parts = [p for p in re.split(r"[x,]", str(text).strip()) if p != ""]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"{flag} {text}: expected an integer or {rank} integers like 3x3") from None
    if len(values) == 1:
        return values[0]
    return values


def row_from_flags(args):
    from .row import Row

    if args.in_channels is None:
        raise UsageError("--in is required with --op (input channels)")
    op, rank = parse_op(args.op)
    if op == "dense":
        for flag, value in (("--size", args.size), ("--kernel", args.kernel), ("--stride", args.stride)):
            if value is not None:
                raise UsageError(f"{flag} {value}: not used by --op dense (it is a matrix product)")
        spatial, k, s = (1,), 1, 1
    else:
        if args.size is None:
            raise UsageError(f"--size is required with --op {args.op}")
        size = parse_dims("--size", args.size, rank)
        spatial = size if isinstance(size, tuple) else (size,) * rank
        if len(spatial) != rank:
            raise UsageError(f"--size {args.size}: --op {args.op} has {rank} spatial dims")
        default_k = 2 if op in ("max_pool", "avg_pool") else 3
        k = parse_dims("--kernel", args.kernel, rank) if args.kernel is not None else default_k
        if args.stride is not None:
            s = parse_dims("--stride", args.stride, rank)
        else:
            s = k if op in ("max_pool", "avg_pool") else 1
    d = parse_dims("--dilation", args.dilation, rank)
    dm = args.depth_multiplier
    if args.out_channels is not None:
        out = args.out_channels
    elif op == "depthwise":
        out = args.in_channels * dm
    else:
        out = args.in_channels
    return Row("custom", f"--op {args.op} from flags", op, args.batch, args.in_channels, out, spatial, k, s,
               args.padding.lower(), d, args.groups, dm, args.bias, args.activation)


def flag_error(row, error):
    """One line naming the flags (and values) involved in a RowError."""
    values = {
        "op": row.op, "N": row.N, "C": row.C, "K": row.K, "spatial": "x".join(map(str, row.spatial)),
        "k": row.k, "s": row.s, "d": row.d, "g": row.g, "dm": row.dm, "padding": row.padding,
        "activation": row.activation,
    }
    named = " ".join(f"{FIELD_FLAGS[f]} {_flag_value(values[f])}" for f in error.fields if f in FIELD_FLAGS)
    return f"{named}: {error}" if named else str(error)


def _flag_value(v):
    return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)


def select_rows(args):
    from .suites import SUITES

    if args.op is not None:
        if args.suite is not None:
            raise UsageError(f"--suite {args.suite} and --op {args.op}: choose one")
        if args.rows:
            raise UsageError("--rows selects from a suite; it does not apply to --op")
        return "layer from flags", [row_from_flags(args)]
    name = args.suite or "quick"
    rows = list(SUITES[name])
    if args.rows:
        wanted = [w.strip() for w in args.rows.split(",") if w.strip()]
        known = {r.id for r in rows}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise UsageError(f"--rows {args.rows}: no row {', '.join(unknown)} in suite '{name}' "
                             f"(it has {', '.join(r.id for r in rows)})")
        rows = [r for r in rows if r.id in wanted]
    return f"suite '{name}'", rows


def check_counts(args):
    for flag, value, least in (("--warmup", args.warmup, 0), ("--repeat", args.repeat, 1),
                               ("--check-batch", args.check_batch, 1)):
        if value is not None and value < least:
            raise UsageError(f"{flag} {value}: must be >= {least}")


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def main(argv=None, engine=None):
    """Entry point of ``gpuconv-bench`` and ``python -m gpuconv.benchmarking``; returns the exit status.

    ``engine`` (for tests and engine developers, any object implementing ``gpuconv.engines.Engine``)
    runs the timed calls instead of the backend's engine; the oracle stays the NumPy engine."""
    try:
        return _main(argv, engine)
    except UsageError as e:
        print(f"gpuconv-bench: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gpuconv-bench: interrupted", file=sys.stderr)
        return 130


def _main(argv, engine):
    args = build_parser().parse_args(argv)
    check_counts(args)
    title, rows = select_rows(args)
    with forced_algorithm(args.algorithm):
        return _main_rows(args, title, rows, engine)


def algorithm_override(name):
    """``op=NAME`` for ``--algorithm NAME``: the table (conv or conv_transpose) that has a row of
    that name; a name neither has is a usage error listing both tables."""
    from gpuconv.cuda import algorithms

    tables = {"conv": algorithms.CONV_ALGORITHMS, "conv_transpose": algorithms.CONV_TRANSPOSE_ALGORITHMS}
    for op, table in tables.items():
        if name in {a.name for a in table}:
            return op
    listed = "; ".join(f"{op}: {', '.join(a.name for a in table)}" for op, table in tables.items())
    raise UsageError(f"--algorithm {name}: no such algorithm ({listed})")


@contextlib.contextmanager
def forced_algorithm(name):
    """``GPUCONV_ALGORITHM`` with ``op=NAME`` set (other ops' items kept) for the block; the
    chooser's own override code then forces it. Restored afterwards (tests call main in-process)."""
    if name is None:
        yield
        return
    from gpuconv.cuda import algorithms

    op = algorithm_override(name)
    try:
        items = algorithms.overrides()
    except ValueError as e:
        raise UsageError(f"${algorithms.OVERRIDE_ENV}: {e}") from None
    items[op] = name
    before = os.environ.get(algorithms.OVERRIDE_ENV)
    os.environ[algorithms.OVERRIDE_ENV] = ",".join(f"{k}={v}" for k, v in items.items())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(algorithms.OVERRIDE_ENV, None)
        else:
            os.environ[algorithms.OVERRIDE_ENV] = before


def _plan(args, rows):
    from . import plan

    if args.pass_name != "forward":
        raise UsageError(f"--plan --pass {args.pass_name}: the plan models the forward kernels only")
    planned = plan.plan_rows(rows, args.dtype, args.data_format, args.target)
    print(plan.render_plan(planned, args.dtype, args.data_format, args.target), flush=True)
    return 0


def _main_rows(args, title, rows, engine):
    from .calls import RowError, validate
    from .plot import PlotUnavailable, require

    if args.plan:
        for row in rows:
            try:
                validate(row, args.data_format, args.dtype)
            except RowError as e:
                raise UsageError(flag_error(row, e) if row.id == "custom" else f"row {row.id}: {e}") from None
        return _plan(args, rows)
    backend = _select_backend(args.backend)
    for row in rows:
        try:
            validate(row, args.data_format, args.dtype)
        except RowError as e:
            raise UsageError(flag_error(row, e) if row.id == "custom" else f"row {row.id}: {e}") from None
    if args.list:
        _print_rows(rows)
        return 0
    if args.plot:
        try:
            require()
        except PlotUnavailable as e:
            raise UsageError(str(e)) from None
    return _run(args, title, rows, backend, engine)


def _select_backend(name):
    """The backend the run's calls name, probed once: ``--backend``, else $GPUCONV_BACKEND, else
    'auto' ('auto' resolved to the engine it finds). The global backend choice is left alone:
    every call of the run names its engine."""
    from gpuconv import backend as _backend
    from gpuconv import engines
    from gpuconv.errors import DeviceUnavailableError

    if name is None:
        try:
            name = _backend.requested_backend()
        except ValueError as e:
            raise UsageError(f"${_backend.ENV_VAR}: {e}") from None
    try:
        return engines.resolve(name).NAME
    except DeviceUnavailableError as e:
        raise UsageError(f"--backend {name}: {e}") from None


def _print_rows(rows):
    from .cost import flops

    for r in rows:
        print(f"{r.id:5} {r.op_text():10} {r.shape_text():42} {flops(r).total / 1e9:9.3f} GFLOP  {r.description}")


def _comparison(device, threads, enabled):
    if not enabled:
        return None, "--no-compare"
    from .torch_compare import TorchSubject, Unsupported

    try:
        return TorchSubject(device, threads), ""
    except ImportError as e:
        return None, f"PyTorch is not importable ({e})"
    except Unsupported as e:
        return None, str(e)


def _ceilings(device, env, measure):
    from . import ceilings

    if device == "cpu":
        return ceilings.measure_cpu(env["cpu"])
    sheet = ceilings.datasheet(env["gpu"])
    if sheet is not None and not measure:
        return sheet
    measured = ceilings.measure_gpu(env["gpu"])
    if sheet is None:
        import dataclasses

        measured = dataclasses.replace(measured, source=measured.source + f" (no datasheet entry for {env['gpu']})")
    return measured


def _algorithms(rows, settings, backend):
    """``{row id: algorithm name}`` for the table's "algo" column: the algorithm table's choice on
    the run's device (the NumPy engine has no table: 'numpy')."""
    from . import plan

    if backend == "numpy":
        return {r.id: "numpy" for r in rows}
    device = None
    try:
        if backend == "cuda":
            import cupy

            device = cupy.cuda.Device()
        else:
            from gpuconv.cuda import device as _device

            active = _device.active()
            device = active if hasattr(active, "compute_capability") else None
    except Exception:  # the column is informative; the rows' own runs report a broken device
        device = None
    return {r.id: plan.algorithm_name(r, settings.dtype, settings.data_format, device) for r in rows}


def _run(args, title, rows, backend, engine):
    from . import environment, export, report
    from .runner import Runner, Settings, summarize
    from .subjects import GpuconvSubject

    device = "cuda" if backend == "cuda" else "cpu"
    warmup, repeat = DEFAULT_COUNTS[device]
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little") >> 1
    settings = Settings(
        dtype=args.dtype, data_format=args.data_format,
        warmup=warmup if args.warmup is None else args.warmup,
        repeat=repeat if args.repeat is None else args.repeat,
        cuda_graph=args.cuda_graph, check_batch=args.check_batch, seed=seed, pass_name=args.pass_name,
    )
    threads = environment.cpu_threads()
    comparison, comparison_error = _comparison(device, threads, not args.no_compare)
    env = environment.collect(backend, comparison.version if comparison else None)
    env["load_average_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    comparison_text = comparison.label if comparison else ""
    if comparison is not None and comparison.placement:  # CPU: how torch's OpenMP threads are placed
        env["compare_threads"] = comparison.placement
        comparison_text += f", {comparison.placement}"
    ceilings = _ceilings(device, env, args.measure_ceilings)
    flusher = None
    if device == "cuda":
        from .timing import L2Flusher

        flusher = L2Flusher()
    runner = Runner(settings, GpuconvSubject(backend, engine), ceilings, comparison, comparison_error, flusher)

    print(report.render_header(title, len(rows), settings, env, ceilings, comparison_text, comparison_error),
          flush=True)
    busy = report.load_warning(env["load_average_1min"], threads) if device == "cpu" else ""
    if busy:
        print(busy, flush=True)
    progress = report.Progress(len(rows))
    results = []
    for i, row in enumerate(rows):
        progress.update(i, f"{row.id} {row.op_text()} {row.shape_text()}")
        results.append(runner.run(row))
        if device == "cuda":  # the next row may be the largest: give its memory back
            import cupy

            cupy.get_default_memory_pool().free_all_blocks()
            if comparison is not None:
                comparison.torch.cuda.empty_cache()
    progress.update(len(rows), "done")
    progress.close()

    summary = summarize(results)
    print()
    print(report.render_table(results, _algorithms(rows, settings, backend)))
    notes = report.render_notes(results)
    if notes:
        print()
        print(notes)
    print()
    print(report.render_summary(summary), flush=True)

    doc = export.document(results, env, settings, ceilings, summary)
    if args.json:
        export.write_json(args.json, doc)
    if args.csv:
        export.write_csv(args.csv, doc)
    if args.plot:
        from .ceilings import remeasure_cpu
        from .plot import write_plot

        # measured CPU ceilings undershoot on a busy machine: the plot re-checks them after the rows
        plot_ceilings = remeasure_cpu(ceilings) if device == "cpu" else ceilings
        write_plot(args.plot, results, f"gpuconv-bench {title}, {settings.dtype} {settings.data_format}, "
                                       f"{env['gpu'] or env['cpu']}", plot_ceilings)
    return 0 if summary["fail"] == 0 and summary["error"] == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

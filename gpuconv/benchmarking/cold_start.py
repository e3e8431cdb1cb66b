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
"""
import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

import numpy as np

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


def _time_compiles(kernels, arch):
    from gpuconv.cuda import module_cache, options

    compile_options = options.compile_options(arch)
    start = time.perf_counter()
    for filename, name in kernels:
        module_cache.cubin_on_disk(filename, (name,), compile_options)
    return time.perf_counter() - start


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
    arch = dry_run.TARGETS[target][0]
    previous_backend, previous_dir = gpuconv.get_backend(), os.environ.get(module_cache.CACHE_ENV)
    with tempfile.TemporaryDirectory(prefix="gpuconv-cold-start-") as fresh:
        gpuconv.set_backend("cuda-emulator")  # the CUDA engine's host code plans; nothing runs
        try:
            rows = []
            for name, factory, shape in chosen:
                # An empty cache per layer: a kernel an earlier row compiled would be a disk hit.
                os.environ[module_cache.CACHE_ENV] = os.path.join(cache_dir or fresh, name)
                kernels = plan(name, factory, shape, dtype, training, target)
                cold = _time_compiles(kernels, arch)
                warm = _time_compiles(kernels, arch)
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


if __name__ == "__main__":
    sys.exit(main())

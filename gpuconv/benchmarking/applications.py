"""Inference of real Keras CNNs (keras.applications), gpuconv against Keras 3 on its PyTorch
backend, side by side in one process on the same weights and batch, with gpuconv's inference
fusion on and off.

    python -m gpuconv.benchmarking.applications [--models MobileNetV2,ResNet50] [--size 224]
        [--batch 8] [--repeats 5] [--backend auto|numpy|cuda] [--no-keras] [--json out.json]

Each model is built by Keras with ``weights=None`` and seeded random weights (BatchNormalization
statistics far from the identity), saved as a ``.keras`` file and loaded by
``gpuconv.saving.load_model`` -- the path a Keras user's model takes. Both libraries then run
``predict_on_batch`` on one batch: two warm-up calls (first-call costs: kernel compiles, thread
pools, the fusion plan), then the median of ``--repeats`` timed calls. Keras uses the thread
count NumPy's BLAS uses. Every row also reports the relative L2 distance of gpuconv's output
from Keras', so a fast wrong answer cannot pass for a result.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from .environment import cpu_threads

DEFAULT_MODELS = ("MobileNetV2", "ResNet50")
# The models this benchmark builds (a name from the command line selects from this list only).
KNOWN_MODELS = ("MobileNetV2", "ResNet50", "MobileNet", "MobileNetV3Small", "EfficientNetB0", "DenseNet121",
                "Xception", "ResNet50V2", "InceptionV3", "VGG16")


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    return keras


def randomize(model, seed):
    """Seeded random values for every variable of a Keras model; BatchNormalization's
    statistics far from the identity (a fold that ignored them would show)."""
    rng = np.random.default_rng(seed)
    for var in model.weights:
        shape, name = tuple(var.shape), var.path
        if name.endswith(("gamma", "moving_variance")):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("beta", "moving_mean")):
            value = rng.normal(0.0, 0.2, shape)
        elif name.endswith("bias"):
            value = rng.normal(0.0, 0.05, shape)
        elif name.endswith("count"):  # a Normalization layer's sample count
            value = np.zeros(shape)
        elif name.endswith("variance"):  # ... and its statistics
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("mean"):
            value = rng.normal(0.0, 0.2, shape)
        else:  # kernels: fan-in scaled so activations stay O(1) through the depth
            fan_in = max(int(np.prod(shape[:-1])), 1) if len(shape) > 1 else 1
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        var.assign(value.astype(var.dtype))


def _median_seconds(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rel_l2(actual, expected):
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))


def measure(name, size, batch, repeats, with_keras=True, workdir=None):
    """One row: {model, ms_fused, ms_unfused, ms_keras, ratio_fused, ratio_unfused, rel_l2_*}."""
    import gpuconv
    from gpuconv import saving

    keras = _keras()
    keras.utils.set_random_seed(0)
    reference = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    randomize(reference, seed=sum(map(ord, name)))
    path = os.path.join(workdir or tempfile.mkdtemp(), f"{name}.keras")
    reference.save(path)
    model = saving.load_model(path)
    x = np.random.default_rng(1).uniform(0.0, 1.0, (batch, size, size, 3)).astype("float32")
    expected = np.asarray(reference.predict_on_batch(x))
    row = {"model": name, "size": size, "batch": batch, "params": model.count_params()}
    for label, fused in (("fused", True), ("unfused", False)):
        model.fuse_inference = fused
        got = gpuconv.to_numpy(model.predict_on_batch(x))
        row[f"rel_l2_{label}"] = _rel_l2(got, expected)
        row[f"ms_{label}"] = 1e3 * _median_seconds(lambda: model.predict_on_batch(x), repeats)
    if with_keras:
        row["ms_keras"] = 1e3 * _median_seconds(lambda: reference.predict_on_batch(x), repeats)
        for label in ("fused", "unfused"):
            row[f"ratio_{label}"] = row[f"ms_{label}"] / row["ms_keras"]
    return row


def format_table(rows, backend, threads):
    head = (f"keras.applications inference, batch {rows[0]['batch'] if rows else '?'}, backend {backend}, "
            f"{threads} CPU thread(s); time ratio = gpuconv / Keras (torch), lower is faster")
    lines = [head, f"{'model':<14}{'params':>12}{'fused ms':>11}{'unfused ms':>12}{'keras ms':>10}"
                   f"{'fused/keras':>13}{'unfused/keras':>15}{'relL2 fused':>13}{'relL2 unfused':>15}"]
    for r in rows:
        keras_ms = f"{r['ms_keras']:10.1f}" if "ms_keras" in r else f"{'-':>10}"
        ratios = (f"{r['ratio_fused']:12.2f}x{r['ratio_unfused']:14.2f}x" if "ratio_fused" in r
                  else f"{'-':>13}{'-':>15}")
        lines.append(f"{r['model']:<14}{r['params']:>12,}{r['ms_fused']:11.1f}{r['ms_unfused']:12.1f}{keras_ms}"
                     f"{ratios}{r['rel_l2_fused']:13.1e}{r['rel_l2_unfused']:15.1e}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpuconv.benchmarking.applications", description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated keras.applications names (default: %(default)s)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="auto", choices=("auto", "numpy", "cuda"))
    parser.add_argument("--no-keras", action="store_true", help="time gpuconv only (outputs are still checked)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    for flag, value in (("--size", args.size), ("--batch", args.batch), ("--repeats", args.repeats)):
        if value < 1:
            parser.error(f"{flag} must be a positive integer. Received: {flag} {value}")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in KNOWN_MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(KNOWN_MODELS)}")

    import gpuconv

    threads = cpu_threads()
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    gpuconv.set_backend(args.backend)
    backend = gpuconv.get_backend()
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            rows.append(measure(name, args.size, args.batch, args.repeats, not args.no_keras, workdir))
            print(f"  measured {name}", file=sys.stderr, flush=True)
    print(format_table(rows, backend, threads))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": backend, "threads": threads, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

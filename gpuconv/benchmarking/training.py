"""One training epoch of the seed CNN, gpuconv against Keras 3 on its PyTorch backend, side by
side in one process on the same data and initial weights; and where gpuconv's time goes.

    python -m gpuconv.benchmarking.training [--samples 10000] [--batch-size 32] [--backend numpy]
                                             [--no-keras] [--repeats 3] [--profile-steps 40]
                                             [--json out.json]

Both models are the lecture's (Conv2D 32 -> MaxPooling -> Conv2D 64 -> MaxPooling -> Flatten ->
Dense 100 -> Dropout 0.4 -> Dense 10 softmax), compiled with Adam, sparse categorical
crossentropy and accuracy, ``fit(..., epochs=1, batch_size=32, verbose=0)``. Each library first
runs a few warm-up steps (first-call costs, thread pools) outside the timed epoch. Keras uses
the same thread count as NumPy's BLAS.

``--repeats`` pairs: a Keras epoch, then a gpuconv epoch, each pair back to back, so a change in
the machine's load (a shared 2-core VM swings 20-30% within a minute) hits both sides of a pair
alike; the ratio reported is the median of the pairs' ratios, the times the medians of each
side's epochs, and every pair is listed.

The breakdown runs ``--profile-steps`` more steps under ``cProfile`` (which slows them, so it
reports fractions, not times): forward (the model's call), backward (``GradientTape.gradient``),
optimizer (``optimizer.apply``), loss and metrics, and the rest of the step (batching, logs,
callbacks): the per-step overhead outside the layers is that rest plus the loss and metrics.
"""
import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time

import numpy as np

from .environment import cpu_threads

# (label, (file suffix, function name)) of the step's parts, in the order they are reported.
_PARTS = (
    ("forward", ("models.py", "__call__")),
    ("backward", ("tape.py", "gradient")),
    ("optimizer", ("optimizer.py", "apply")),
    ("loss", ("compile_utils.py", "__call__")),
    ("metrics", ("compile_utils.py", "update_state")),
)


def seed_cnn(lib, dropout=0.4):
    """The lecture's CNN written once for ``lib`` (``gpuconv`` or ``keras``); ``dropout=None``
    leaves the Dropout layer out (the parity tests' variant: the two libraries draw different
    masks)."""
    L = lib.layers
    stack = [L.Input((28, 28, 1)), L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
             L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2), L.Flatten(),
             L.Dense(100, activation="relu")]
    if dropout is not None:
        stack.append(L.Dropout(dropout))
    return lib.Sequential(stack + [L.Dense(10, activation="softmax")])


def _compiled(lib, weights=None):
    model = seed_cnn(lib)
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=lib.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _epoch_seconds(model, x, y, batch_size, warmup_steps):
    model.fit(x[:warmup_steps * batch_size], y[:warmup_steps * batch_size], batch_size=batch_size, epochs=1,
              verbose=0, shuffle=False)
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - start, history.history


def _breakdown(model, x, y, batch_size, steps):
    """Fractions of a profiled run's time per part of the step."""
    profiler = cProfile.Profile()
    n = steps * batch_size
    profiler.enable()
    start = time.perf_counter()
    model.fit(x[:n], y[:n], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    total = time.perf_counter() - start
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    parts = {}
    for label, (suffix, name) in _PARTS:
        parts[label] = sum(v[3] for (path, _, fn), v in stats.items() if fn == name and path.endswith(suffix))
    parts["rest of the step"] = max(total - sum(parts.values()), 0.0)
    return {label: seconds / total for label, seconds in parts.items()}


def run(samples=10000, batch_size=32, backend="numpy", keras=True, profile_steps=40, warmup_steps=5, seed=0,
        repeats=3):
    import gpuconv

    gpuconv.set_backend(backend)
    rng = np.random.default_rng(seed)
    x = rng.random((samples, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, size=samples)
    steps = -(-samples // batch_size)
    result = {"samples": samples, "batch_size": batch_size, "steps": steps, "backend": gpuconv.get_backend(),
              "threads": cpu_threads()}
    weights = None
    theirs = None
    if keras:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import keras as keras_module
        import torch

        torch.set_num_threads(result["threads"])
        theirs = _compiled(keras_module)
        weights = theirs.get_weights()
        result["keras"] = {"version": keras_module.__version__, "torch": torch.__version__,
                           "device": "cuda" if torch.cuda.is_available() else "cpu"}
    ours = _compiled(gpuconv, weights)
    pairs = []
    for _ in range(repeats):
        theirs_s = _epoch_seconds(theirs, x, y, batch_size, warmup_steps)[0] if keras else None
        pairs.append((theirs_s, _epoch_seconds(ours, x, y, batch_size, warmup_steps)[0]))
    seconds = statistics.median(ours_s for _, ours_s in pairs)
    result["gpuconv"] = {"epoch_s": seconds, "step_ms": 1e3 * seconds / steps}
    if keras:
        seconds = statistics.median(theirs_s for theirs_s, _ in pairs)
        result["keras"].update(epoch_s=seconds, step_ms=1e3 * seconds / steps)
        result["pairs"] = [{"keras_s": t, "gpuconv_s": o, "ratio": o / t} for t, o in pairs]
        result["ratio"] = statistics.median(pair["ratio"] for pair in result["pairs"])
    if profile_steps:
        fractions = _breakdown(_compiled(gpuconv, weights), x, y, batch_size, profile_steps)
        result["gpuconv"]["breakdown"] = fractions
        outside = fractions["rest of the step"] + fractions["loss"] + fractions["metrics"]
        result["gpuconv"]["overhead_outside_layers_ms"] = outside * result["gpuconv"]["step_ms"]
    return result


def report(result):
    lines = [f"one epoch of the seed CNN: {result['samples']} samples, batch {result['batch_size']} "
             f"({result['steps']} steps), gpuconv backend {result['backend']}, {result['threads']} threads"]
    ours = result["gpuconv"]
    lines.append(f"  gpuconv            {ours['epoch_s']:8.2f} s   {ours['step_ms']:7.2f} ms/step")
    if "keras" in result:
        k = result["keras"]
        lines.append(f"  keras {k['version']} (torch {k['torch']} {k['device']}) {k['epoch_s']:8.2f} s   "
                     f"{k['step_ms']:7.2f} ms/step")
        each = ", ".join(f"{pair['ratio']:.2f}" for pair in result["pairs"])
        lines.append(f"  gpuconv / keras    {result['ratio']:.2f}x  (< 1: gpuconv faster; median of "
                     f"{len(result['pairs'])} side-by-side pairs: {each})")
    if "breakdown" in ours:
        parts = ", ".join(f"{label} {100 * f:.0f}%" for label, f in ours["breakdown"].items())
        lines.append(f"  where gpuconv's step goes (cProfile): {parts}")
        lines.append(f"  per-step overhead outside the layers: {ours['overhead_outside_layers_ms']:.2f} ms")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpuconv.benchmarking.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--no-keras", action="store_true", help="time gpuconv only")
    parser.add_argument("--repeats", type=int, default=3, help="side-by-side epoch pairs (median reported)")
    parser.add_argument("--profile-steps", type=int, default=40)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    for name in ("samples", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer; received {getattr(args, name)}")
    result = run(args.samples, args.batch_size, args.backend, not args.no_keras, args.profile_steps,
                 repeats=args.repeats)
    print(report(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The gpuconv backward a row stands for, through the public gradient path (``gpuconv.GradientTape``).

Why through the tape rather than ``gpuconv.gradients`` directly: the benchmark times what a user
runs, so the timed backward is ``tape.gradient(y, [x, *weights, (bias)], output_gradients=dy)``
of the very ops call the forward rows time (``calls.call_op``). Two passes are timed:

- ``backward``: the forward is recorded once on a persistent tape before timing, and each timed
  call is one ``tape.gradient``: exactly the backward kernels (and the tape's bookkeeping);
- ``both``: each timed call records the forward on a fresh tape and takes the gradient once.

Gradients are taken with respect to the input, every kernel and the bias when the row has one, in
that order (the order of ``Row.weight_shapes``). ``dy`` is ``arrays["dy"]``, in the output's
layout. The same functions run the float64 oracle on the NumPy engine (``gradient_gate``).
"""
from .. import autodiff as _autodiff
from .calls import call_op

FORWARD, BACKWARD, BOTH = "forward", "backward", "both"
PASSES = (FORWARD, BACKWARD, BOTH)


class NoBackward(Exception):
    """The library records no backward for the row's op: the row is skipped, not failed."""


def gradient_names(row):
    """``('dx', 'd<weight>', ...)``: the gradients a backward returns, in order."""
    return ("dx",) + tuple(f"d{name}" for name in row.weight_shapes())


def output_names(row, pass_name):
    """What a timed call of ``pass_name`` returns: the gradients, after the output for 'both'."""
    return (("y",) if pass_name == BOTH else ()) + gradient_names(row)


def _sources(row, arrays):
    return [arrays["x"]] + [arrays[name] for name in row.weight_shapes()]


def _record(row, arrays, data_format, engine, persistent):
    """The row's forward recorded on a new tape watching every source; returns (tape, y, sources)."""
    sources = _sources(row, arrays)
    tape = _autodiff.GradientTape(persistent=persistent, watch_accessed_variables=False)
    with tape:
        for source in sources:
            tape.watch(source)
        y = call_op(row, arrays, data_format, engine)
    return tape, y, sources


def _gradients(row, tape, y, sources, dy):
    try:
        grads = tape.gradient(y, sources, output_gradients=dy)
    except ValueError as e:
        if "not produced by any operation recorded" in str(e):  # the op recorded nothing
            raise NoBackward(f"no backward for op {row.op_text()}") from e
        raise
    missing = [name for name, g in zip(gradient_names(row), grads) if g is None]
    if missing:
        raise NoBackward(f"no backward for op {row.op_text()} (no {', '.join(missing)})")
    return tuple(grads)


def prepare(row, arrays, data_format, engine, pass_name):
    """A zero-argument callable running ``pass_name`` ('backward' or 'both') of ``row`` on ``arrays``
    (``make_inputs``' dict plus ``dy``) on ``engine``; it returns ``output_names(row, pass_name)``'s
    arrays. For 'backward' the forward is recorded here, once."""
    dy = arrays["dy"]
    if pass_name == BACKWARD:
        tape, y, sources = _record(row, arrays, data_format, engine, persistent=True)
        return lambda: _gradients(row, tape, y, sources, dy)
    if pass_name != BOTH:
        raise ValueError(f"Expected pass 'backward' or 'both'; received pass={pass_name!r}")

    def both():
        tape, y, sources = _record(row, arrays, data_format, engine, persistent=False)
        return (y,) + _gradients(row, tape, y, sources, dy)

    return both

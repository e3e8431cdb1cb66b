"""gpuconv.utils.progbar.Progbar prints what Keras 3.15's keras.utils.Progbar prints.

Both bars are fed the same ``update`` / ``add`` calls under the same fixed clock (``time.time``
monkeypatched, which both modules read at call time), and their stdout is compared character
for character: verbose 1 redrawn (a terminal) and plain (a pipe), verbose 2, several targets
including None and 0, metric magnitudes that pick ``%.4f`` or ``%.4e``, stateful and stateless
metrics, times that give s/ms/us per step and ETAs in seconds, minutes and hours. Besides: the
non-terminal default, the ASCII fallback of the bar glyph, and argument errors.
"""
import io
import os
import sys
import time

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process
keras = pytest.importorskip("keras", reason="Progbar parity needs keras>=3.15 with the torch backend "
                            "(pip install .[parity])", exc_type=ImportError)

from gpuconv.utils import progbar as gprogbar  # noqa: E402


class Clock:
    """``time.time`` replacement: returns ``now``, which the test sets before each call."""

    def __init__(self, start=1_000_000.0):
        self.now = start

    def __call__(self):
        return self.now


def _run(make_bar, script, clock, capsys, dynamic):
    """Run ``script`` (a list of (time, method, args, kwargs)) on a fresh bar; return stdout."""
    clock.now = 1_000_000.0
    bar = make_bar()
    bar._dynamic_display = dynamic
    for at, method, args, kwargs in script:
        clock.now = 1_000_000.0 + at
        getattr(bar, method)(*args, **kwargs)
    return capsys.readouterr().out


def _compare(script, capsys, monkeypatch, dynamic=True, **bar_kwargs):
    clock = Clock()
    monkeypatch.setattr(time, "time", clock)
    expected = _run(lambda: keras.utils.Progbar(**bar_kwargs), script, clock, capsys, dynamic)
    actual = _run(lambda: gprogbar.Progbar(**bar_kwargs), script, clock, capsys, dynamic)
    assert actual == expected
    return actual


def _steps(target, dt, values_for, finalize_last=None):
    """One update per step 1..target, ``dt`` seconds apart."""
    script = [(dt * step, "update", (step, values_for(step)), {}) for step in range(1, target + 1)]
    if finalize_last is not None:
        at, _, args, _ = script[-1]
        script[-1] = (at, "update", args, {"finalize": finalize_last})
    return script


def _metrics(step):
    return [("loss", 1.0 / step), ("accuracy", np.float32(0.1 * step)), ("tiny", 1e-5 * step),
            ("negative", -0.25 * step)]


SCRIPTS = {
    # target, time per step, metrics
    "ten-steps-ms": (10, _steps(10, 0.037, _metrics)),
    "three-steps-s": (3, _steps(3, 2.5, _metrics)),
    "one-step": (1, _steps(1, 0.0004, _metrics)),
    "hundred-us-interval-skips": (100, _steps(100, 0.0002, _metrics)),
    "five-digit-target": (12345, [(0.5, "update", (1, [("loss", 3.0)]), {}),
                                  (90.0, "update", (150, [("loss", 2.0)]), {}),
                                  (200.0, "update", (3000, [("loss", 1.0)]), {}),
                                  (400.0, "update", (12345, [("loss", 0.5)]), {})]),
    "eta-hours": (100000, [(3.0, "update", (1, [("loss", 3.0)]), {}), (10.0, "update", (2, [("loss", 2.0)]), {}),
                           (20.0, "update", (3, None), {})]),
    "unknown-target": (None, _steps(5, 0.2, _metrics) + [(1.5, "update", (5, [("loss", 0.1)]), {"finalize": True})]),
    "zero-target": (0, [(0.1, "update", (0, [("loss", 0.5)]), {}), (0.3, "update", (0, [("loss", 0.4)]), {})]),
    "add-and-arrays": (6, [(0.1, "add", (2, [("loss", np.array(0.5))]), {}),
                           (0.2, "add", (2, [("loss", np.array([0.1, 0.3]))]), {}),
                           (0.9, "add", (2, [("loss", np.float64(0.2))]), {})]),
    "shrinking-line": (4, [(0.1, "update", (1, [("loss", 123.456), ("long_metric_name", 5.0)]), {}),
                           (0.2, "update", (2, [("loss", 1.0)]), {}),
                           (0.3, "update", (4, []), {"finalize": True})]),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize("verbose", [1, 2])
@pytest.mark.parametrize("dynamic", [True, False], ids=["tty", "pipe"])
def test_output_matches_keras(name, verbose, dynamic, capsys, monkeypatch):
    target, script = SCRIPTS[name]
    out = _compare(script, capsys, monkeypatch, dynamic=dynamic, target=target, verbose=verbose)
    if verbose == 1 and target:
        assert "━" in out  # the comparison covered a drawn bar


@pytest.mark.parametrize("bar_kwargs", [
    {"stateful_metrics": ["accuracy"]},
    {"stateless_metrics": ["loss"]},
    {"stateless_metrics": set()},
    {"width": 7, "unit_name": "sample"},
    {"interval": 0.0},
    {"interval": 10.0},
], ids=["stateful", "stateless", "all-stateful", "width-unit", "no-interval", "long-interval"])
@pytest.mark.parametrize("verbose", [1, 2])
def test_options_match_keras(bar_kwargs, verbose, capsys, monkeypatch):
    _compare(_steps(8, 0.3, _metrics), capsys, monkeypatch, target=8, verbose=verbose, **bar_kwargs)


def test_silent_bar_prints_nothing(capsys, monkeypatch):
    assert _compare(_steps(4, 0.1, _metrics), capsys, monkeypatch, target=4, verbose=0) == ""


def test_known_line_layout(capsys, monkeypatch):
    """An independent check of one finished line (not only "same as Keras")."""
    clock = Clock()
    monkeypatch.setattr(time, "time", clock)
    out = _run(lambda: gprogbar.Progbar(target=2), [(1.0, "update", (1, [("loss", 0.5)]), {}),
                                                    (1.25, "update", (2, [("loss", 0.25)]), {})],
               clock, capsys, dynamic=False)
    first, last = out.split("\n")[1:3]
    assert first == ("\x1b[1m1/2\x1b[0m \x1b[32m" + "━" * 10 + "\x1b[0m\x1b[37m" + "━" * 10 + "\x1b[0m"
                     " \x1b[1m1s\x1b[0m 1s/step - loss: 0.5000")
    # The final update shows the value it is given (epoch-level results), not a running average.
    assert last == ("\x1b[1m2/2\x1b[0m \x1b[32m" + "━" * 20 + "\x1b[0m\x1b[37m\x1b[0m \x1b[1m1s\x1b[0m"
                    " 250ms/step - loss: 0.2500")


def test_non_terminal_stdout_is_not_redrawn(monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.delenv("PYCHARM_HOSTED", raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert gprogbar.Progbar(target=3)._dynamic_display is False


def test_terminal_stdout_is_redrawn(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdout", Terminal())
    assert gprogbar.Progbar(target=3)._dynamic_display is True


def test_ascii_stdout_falls_back_like_keras(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(time, "time", clock)
    outputs = []
    for module in (keras.utils, gprogbar):
        buffer = io.BytesIO()
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buffer, encoding="ascii"))
        clock.now = 5.0
        bar = module.Progbar(target=2)
        bar._dynamic_display = True
        clock.now = 6.0
        bar.update(2, [("loss", 0.5)])
        sys.stdout.flush()
        outputs.append(buffer.getvalue())
    assert b"====" in outputs[1]
    assert outputs[1] == outputs[0]


def test_both_metric_lists_is_keras_error():
    with pytest.raises(ValueError) as keras_error:
        keras.utils.Progbar(3, stateful_metrics=["a"], stateless_metrics=["b"])
    with pytest.raises(ValueError) as error:
        gprogbar.Progbar(3, stateful_metrics=["a"], stateless_metrics=["b"])
    assert str(error.value) == str(keras_error.value)


@pytest.mark.parametrize("kwargs, name", [
    ({"target": -1}, "target"), ({"target": 2.5}, "target"), ({"target": 3, "width": 0}, "width"),
    ({"target": 3, "verbose": 3}, "verbose"), ({"target": 3, "interval": -0.1}, "interval"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`.*Received: {name}="):
        gprogbar.Progbar(**kwargs)

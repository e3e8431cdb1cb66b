"""The progress bar Keras prints during fit, evaluate and predict, character for character.

A user porting Keras code reads training progress from this bar, and scripts that scrape Keras'
log lines keep working, so the layout (step counter, bar, ETA, time per step, metric averages)
follows Keras 3.15's ``keras.utils.Progbar`` exactly. Two places differ on purpose:

- Redrawing with ``\\r`` happens only when stdout is a terminal (or a notebook / PyCharm console).
  Keras also redraws whenever the ``posix`` module is loaded, i.e. always on Linux, even into a
  file or a pipe; issue 12 asks for plain lines on a non-interactive stream. Tests that compare
  against Keras set ``_dynamic_display`` on both bars.
- Messages always go to ``sys.stdout`` (Keras can route them to absl logging instead).

Time comes from ``time.time()``, looked up at every call, so a test fixes the clock by
monkeypatching ``time.time`` (the same patch drives Keras' bar).
"""
import math
import numbers
import os
import sys
import time

import numpy as np

from ..arrays import to_numpy, is_cupy_array

__all__ = ["Progbar", "print_msg"]


def print_msg(message, line_break=True):
    """Write ``message`` to stdout as Keras' ``io_utils.print_msg`` does, falling back to ``=``
    for the bar glyph where the stream's encoding cannot show it."""
    message = f"{message}\n" if line_break else str(message)
    stream = sys.stdout
    try:
        stream.write(message)
    except UnicodeEncodeError:
        encoding = stream.encoding or "utf-8"
        stream.write(message.replace("━", "=").encode(encoding, errors="ignore").decode(encoding))
    stream.flush()


def _is_interactive(stream):
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        tty = False
    return tty or "ipykernel" in sys.modules or "PYCHARM_HOSTED" in os.environ


def _format_duration(seconds):
    """ETA text: ``h:mm:ss`` past an hour, ``m:ss`` past a minute, else ``Ns``."""
    if seconds > 3600:
        return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)
    if seconds > 60:
        return "%d:%02d" % (seconds // 60, seconds % 60)
    return "%ds" % seconds


def _format_time_per_unit(time_per_unit, unit_name):
    """`` 2s/step``, `` 35ms/step`` or `` 80us/step`` (zero counts as seconds, as in Keras)."""
    if time_per_unit >= 1 or time_per_unit == 0:
        return f" {time_per_unit:.0f}s/{unit_name}"
    if time_per_unit >= 1e-3:
        return f" {time_per_unit * 1e3:.0f}ms/{unit_name}"
    return f" {time_per_unit * 1e6:.0f}us/{unit_name}"


def _host_value(value):
    """A metric value the bar can average with NumPy (a CuPy scalar is brought to the host)."""
    return to_numpy(value) if is_cupy_array(value) else value


class Progbar:
    """Displays a progress bar (Keras 3.15's ``keras.utils.Progbar``).

    Args:
        target: total number of steps expected, ``None`` if unknown.
        width: width of the bar in characters.
        verbose: 0 (silent), 1 (a bar redrawn as it advances), 2 (one line when it finishes).
        interval: minimum seconds between two redraws of a ``verbose=1`` bar.
        stateful_metrics: names of metrics shown as given (all others are averaged over steps).
        stateless_metrics: names of metrics averaged over steps (all others shown as given);
            give at most one of the two lists.
        unit_name: what a step is called in the time-per-step field.
    """

    def __init__(self, target, width=20, verbose=1, interval=0.05, stateful_metrics=None,
                 stateless_metrics=None, unit_name="step"):
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError(
                "Only one of `stateful_metrics` or `stateless_metrics` can be provided. "
                "`stateful_metrics` is used to make metrics stateless by default (with an "
                "exclusion list), while `stateless_metrics` is used to make metrics stateful by "
                "default (with an exclusion list).")
        if target is not None and (isinstance(target, bool) or not isinstance(target, numbers.Integral)
                                   or target < 0):
            raise ValueError(f"Expected `target` to be None or a non-negative integer. Received: target={target!r}")
        if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
            raise ValueError(f"Expected `width` to be a positive integer. Received: width={width!r}")
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"Expected `verbose` to be 0, 1 or 2. Received: verbose={verbose!r}")
        if isinstance(interval, bool) or not isinstance(interval, numbers.Real) or interval < 0:
            raise ValueError(f"Expected `interval` to be a non-negative number. Received: interval={interval!r}")
        self.target = target
        self.width = width
        self.verbose = verbose
        self.interval = interval
        self.unit_name = unit_name
        if stateless_metrics is not None:
            self.stateful_metrics, self.stateless_metrics = None, set(stateless_metrics)
        else:
            self.stateful_metrics, self.stateless_metrics = set(stateful_metrics or ()), None
        self._dynamic_display = _is_interactive(sys.stdout)
        self._seen_so_far = 0
        self._values = {}  # name -> [weighted sum, weight]
        self._values_order = []
        self._start = time.time()
        self._last_update = 0
        self._time_at_epoch_start = self._start
        self._time_after_first_step = None
        self._prev_total_width = 0

    def _is_averaged(self, name):
        if self.stateful_metrics is not None:
            return name not in self.stateful_metrics
        return name in self.stateless_metrics

    def _record(self, current, values, finalize):
        for name, value in values:
            value = _host_value(value)
            if name not in self._values_order:
                self._values_order.append(name)
            if not self._is_averaged(name) or finalize:
                # The final call carries epoch-level results: shown as given, not re-averaged.
                self._values[name] = [value, 1]
                continue
            # Weight by the steps since the last update (at least one: fit's first epoch without
            # a target repeats the last step when it finalizes).
            steps = max(current - self._seen_so_far, 1)
            if name in self._values:
                self._values[name][0] += value * steps
                self._values[name][1] += steps
            else:
                self._values[name] = [value * steps, steps]
        self._seen_so_far = current

    def _average(self, name):
        total, count = self._values[name]
        if not isinstance(total, float):
            total = np.mean(total)
        return total / max(1, count)

    def update(self, current, values=None, finalize=None):
        """Advance the bar to step ``current``.

        Args:
            current: index of the current step (1-based count of steps done).
            values: list of ``(name, value_for_last_step)`` pairs.
            finalize: whether this is the last update; ``None`` means ``current >= target``.
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        self._record(current, values or [], finalize)
        now = time.time()
        time_per_unit = self._estimate_step_duration(current, now)
        if self.verbose == 1:
            if now - self._last_update < self.interval and not finalize:
                return
            self._draw(current, now, time_per_unit, finalize)
        elif self.verbose == 2 and finalize and self.target is not None and self.target > 0:
            print_msg(self._summary_line(current, now, time_per_unit), line_break=False)
        self._last_update = now

    def _counter(self, current):
        digits = int(math.log10(self.target)) + 1
        return f"%{digits}d/%d" % (current, self.target)

    def _bar(self, current):
        """The step counter and the bar, with the count of escape-code characters in them."""
        if self.target is None or self.target <= 0:
            return "%7d/Unknown" % current, 0
        bar = f"\x1b[1m{self._counter(current)}\x1b[0m "
        escapes = 8
        done = int(self.width * (float(current) / self.target))
        if done > 0:
            bar += f"\33[32m{'━' * done}\x1b[0m"
            escapes += 9
        bar += f"\33[37m{'━' * (self.width - done)}\x1b[0m"
        return bar, escapes + 9

    def _metrics_text(self, large):
        """`` - name: value`` for every metric; ``large(avg)`` picks ``%.4f`` over ``%.4e``."""
        text = ""
        for name in self._values_order:
            avg = self._average(name)
            text += f" - {name}: {avg:.4f}" if large(avg) else f" - {name}: {avg:.4e}"
        return text

    def _draw(self, current, now, time_per_unit, finalize):
        bar, escapes = self._bar(current)
        if self.target is not None and self.target > 0 and not finalize:
            clock = _format_duration(time_per_unit * (self.target - current))
        else:
            clock = f"{now - self._start:.0f}s"
        info = f" \x1b[1m{clock}\x1b[0m" + _format_time_per_unit(time_per_unit, self.unit_name)
        info += self._metrics_text(lambda avg: abs(avg) > 1e-3)
        escapes += 8
        message = ("\b" * self._prev_total_width + "\r") if self._dynamic_display else "\n"
        message += bar + info
        total_width = len(bar) + len(info) - escapes
        if self._prev_total_width > total_width:
            message += " " * (self._prev_total_width - total_width)
        if finalize:
            message += "\n"
        print_msg(message, line_break=False)
        self._prev_total_width = total_width

    def _summary_line(self, current, now, time_per_unit):
        line = f"{self._counter(current)} - {now - self._start:.0f}s -"
        line += _format_time_per_unit(time_per_unit, self.unit_name)
        # Keras' one-line form tests ``avg > 1e-3`` without abs: negative values print as %.4e.
        return line + self._metrics_text(lambda avg: avg > 1e-3) + "\n"

    def add(self, n, values=None):
        """Advance the bar by ``n`` steps."""
        self.update(self._seen_so_far + n, values)

    def _estimate_step_duration(self, current, now):
        """Seconds per step; past the first step the first one is left out of the estimate (it
        carries compilation and warm-up)."""
        if not current:
            return 0
        if self._time_after_first_step is not None and current > 1:
            time_per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            time_per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return time_per_unit

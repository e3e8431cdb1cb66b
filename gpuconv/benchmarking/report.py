"""The terminal side: a progress bar on stderr while rows run, the header, the table (with the
footnote of its flagged ratios) and the summary line."""
import sys

from .runner import PASS, RATIO_BOUNDS, RATIO_FLAG

# The mark of a flagged ratio cell, and the footnote under a table that has one.
FLAG_MARK = "!"
FLAG_FOOTNOTE = (
    f"{FLAG_MARK} gpuconv/torch ratio outside {RATIO_BOUNDS[0]:g}x..{RATIO_BOUNDS[1]:g}x even after both "
    "sides were re-measured with a longer warm-up: a real gap, or the machine (on a busy CPU a thread "
    "pool loses whole scheduler ticks per call); the row's note gives both measurements. Included in "
    "the geomean. See docs/bench_suite.md, \"Flagged ratios\"."
)

# The op cell's suffix naming a row's pass (forward rows keep the bare op name).
PASS_SUFFIX = {"forward": "", "backward": ":bwd", "both": ":fwd+bwd"}


def fmt_time(seconds):
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_ratio(ratio):
    """Two decimals, or two significant digits below 0.1 (0.012x, not 0.01x)."""
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def _num(value, spec):
    return "-" if value is None else format(value, spec)


class Progress:
    """``[#####.....] 5/25 D5 conv2d`` on one rewritten line of a terminal; one line per row
    otherwise (a log file gets no carriage returns)."""

    def __init__(self, total, stream=None, width=24):
        self.total, self.width = total, width
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, done, label=""):
        filled = self.width * done // max(self.total, 1)
        bar = "#" * filled + "." * (self.width - filled)
        text = f"[{bar}] {done}/{self.total} {label}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


COLUMNS = (
    ("id", "<"), ("op", "<"), ("algo", "<"), ("shape", "<"), ("check", "<"), ("median", ">"), ("min..max", ">"),
    ("GFLOP", ">"), ("TFLOP/s", ">"), ("GB/s", ">"), ("roofline", ">"), ("%roof", ">"), ("bound", "<"),
    ("torch", ">"), ("gpuconv/torch", ">"),
)


def _cells(r, algorithm="-"):
    row = r.row
    if r.status == PASS:
        check = f"PASS {r.rel_err:.1e}"
    elif r.rel_err is not None:
        check = f"{r.status} {r.rel_err:.1e}"
    else:
        check = r.status
    t = r.time
    comp = r.compare
    if comp is None:
        torch_cell, ratio_cell = "-", "-"
    elif comp.time is not None:
        torch_cell = fmt_time(comp.time.median)
        ratio_cell = fmt_ratio(comp.ratio) + (FLAG_MARK if RATIO_FLAG in r.flags else "")
    else:
        torch_cell, ratio_cell = comp.status, "-"
    return (
        row.id, row.op_text() + PASS_SUFFIX[r.pass_name], algorithm, row.shape_text(), check,
        fmt_time(t.median) if t else "-",
        f"{fmt_time(t.min)}..{fmt_time(t.max)}" if t else "-",
        f"{r.flop / 1e9:.3g}", _num(r.tflops, ".3g"), _num(r.gbs, ".3g"),
        fmt_time(r.roofline_s), _num(r.roofline_pct, ".1f"), r.bound, torch_cell, ratio_cell,
    )


def render_table(results, algorithms=None):
    """The results table; ``algorithms`` maps a row id to the algorithm that ran it (the "algo"
    column: the algorithm table's choice, ``plan.algorithm_name``), '-' where not given."""
    algorithms = algorithms or {}
    lines = [tuple(name for name, _ in COLUMNS)] + [_cells(r, algorithms.get(r.row.id, "-")) for r in results]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(format(cell, f"{align}{w}") for cell, (_, align), w in zip(line, COLUMNS, widths)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    if any(RATIO_FLAG in r.flags for r in results):
        out += ["", FLAG_FOOTNOTE]
    return "\n".join(out)


def render_notes(results):
    """Errors, failures and comparison notes, one line each, under the table."""
    lines = []
    for r in results:
        if r.error:
            lines.append(f"{r.row.id}: {r.status}: {r.error}")
        if r.compare is not None and r.compare.note and r.compare.status != "OFF":
            lines.append(f"{r.row.id}: comparison {r.compare.status}: {r.compare.note}")
        lines += [f"{r.row.id}: {note}" for note in r.notes]
    return "\n".join(lines)


def ceilings_line(ceilings, device, threads=None):
    """The header's line of the ceilings the roofline uses, worded for ``device``: the GPU's fp32,
    fp16 tensor-core and CUDA-core rates, or the CPU's measured float32 FMA rate and copy
    bandwidth with the thread count they were measured with."""
    if device == "cuda":
        c32, c16 = ceilings.for_dtype("float32"), ceilings.for_dtype("float16")
        return (f"ceilings: fp32 {c32.tensor_flops / 1e12:.3g} TFLOP/s, fp16 tensor {c16.tensor_flops / 1e12:.3g} / "
                f"CUDA-core {c16.simt_flops / 1e12:.3g} TFLOP/s, memory {ceilings.bandwidth / 1e9:.4g} GB/s "
                f"[{ceilings.source}]")
    if device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda'. Received: device={device!r}")
    on = f"{threads} threads" if threads else "its threads"
    return (f"ceilings measured on this CPU ({on}): float32 FMA {ceilings.fp32 / 1e9:.4g} GFLOP/s, memory "
            f"{ceilings.bandwidth / 1e9:.4g} GB/s; float16 rows are held to the float32 rate (the NumPy "
            f"engine computes in float32) [{ceilings.source}]")


def load_warning(load_average, cpus):
    """A line saying the machine is busy (1-minute load average above half its CPUs), else ''.
    Other processes' work is in every CPU time measured (a thread pool waits for the cores they
    hold), so a reader of the table should know."""
    if cpus < 1:
        raise ValueError(f"cpus must be >= 1. Received: cpus={cpus!r}")
    if load_average is None or load_average <= 0.5 * cpus:
        return ""
    return (f"note: the machine is busy (1-minute load average {load_average:.2f} on {cpus} CPUs): the times "
            f"include waiting for a core (multi-threaded calls wait most)")


def render_header(suite_name, n_rows, settings, env, ceilings, comparison_label, comparison_error):
    s = settings
    where = env["gpu"] if env["backend"] == "cuda" else f"{env['cpu']} ({env['cpu_threads']} threads)"
    if env["backend"] == "cuda":
        clock = ", CUDA events, L2 flushed between repeats"
    else:  # the runner times gpuconv and the comparison in alternating blocks (time_cpu_blocks)
        clock = ", perf_counter" + (", each library in its own alternating blocks" if comparison_label else "")
    lines = [
        f"gpuconv-bench {env['gpuconv']}: {suite_name} ({n_rows} rows), {s.dtype}, {s.data_format}, "
        + ("" if s.pass_name == "forward" else f"{s.pass_name} pass, ")
        + f"backend {env['backend']} on {where}",
        ceilings_line(ceilings, "cuda" if env["backend"] == "cuda" else "cpu", env["cpu_threads"]),
        f"timing: median of {s.repeat} after {s.warmup} warm-up"
        + clock
        + ((", CUDA-graph replay" if env["backend"] == "cuda" else " (--cuda-graph ignored on the CPU)")
           if s.cuda_graph else "")
        + f"; every row checked against the float64 oracle first (seed {s.seed})",
        "compared with: " + (f"{comparison_label}, measured side by side in this run" if comparison_label
                             else f"nothing ({comparison_error})"),
    ]
    return "\n".join(lines)


def render_summary(summary):
    parts = [f"{summary['pass']}/{summary['rows']} rows PASS"]
    if summary["fail"]:
        parts.append(f"{summary['fail']} FAIL")
    if summary["error"]:
        parts.append(f"{summary['error']} ERROR")
    if summary.get("skip"):
        parts.append(f"{summary['skip']} SKIP")
    if summary["geomean_roofline_pct"] is not None:
        parts.append(f"geomean {summary['geomean_roofline_pct']:.1f}% of roofline")
    if summary["geomean_ratio"] is not None:
        parts.append(
            f"geomean time ratio gpuconv/torch {summary['geomean_ratio']:.2f}x over {summary['compared_rows']} rows "
            f"(< 1: gpuconv faster; vs {summary['compared_with']})"
        )
    else:
        parts.append("no comparison ratio")
    if summary.get("flagged_rows"):
        parts.append(f"{summary['flagged_rows']} ratio{'s' if summary['flagged_rows'] > 1 else ''} flagged "
                     f"({FLAG_MARK}, see the note under the table)")
    return "summary: " + "; ".join(parts)

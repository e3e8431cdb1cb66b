"""The terminal side: a progress bar on stderr while rows run, the table and the summary line."""
import sys

from .runner import PASS

# The op cell's suffix naming a row's pass (forward rows keep the bare op name).
PASS_SUFFIX = {"forward": "", "backward": ":bwd", "both": ":fwd+bwd"}


def fmt_time(seconds):
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


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
    ("id", "<"), ("op", "<"), ("shape", "<"), ("check", "<"), ("median", ">"), ("min..max", ">"),
    ("GFLOP", ">"), ("TFLOP/s", ">"), ("GB/s", ">"), ("roofline", ">"), ("%roof", ">"), ("bound", "<"),
    ("torch", ">"), ("gpuconv/torch", ">"),
)


def _cells(r):
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
        torch_cell, ratio_cell = fmt_time(comp.time.median), f"{comp.ratio:.2f}x"
    else:
        torch_cell, ratio_cell = comp.status, "-"
    return (
        row.id, row.op_text() + PASS_SUFFIX[r.pass_name], row.shape_text(), check,
        fmt_time(t.median) if t else "-",
        f"{fmt_time(t.min)}..{fmt_time(t.max)}" if t else "-",
        f"{r.flop / 1e9:.3g}", _num(r.tflops, ".3g"), _num(r.gbs, ".3g"),
        fmt_time(r.roofline_s), _num(r.roofline_pct, ".1f"), r.bound, torch_cell, ratio_cell,
    )


def render_table(results):
    lines = [tuple(name for name, _ in COLUMNS)] + [_cells(r) for r in results]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(format(cell, f"{align}{w}") for cell, (_, align), w in zip(line, COLUMNS, widths)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
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


def render_header(suite_name, n_rows, settings, env, ceilings, comparison_label, comparison_error):
    s = settings
    where = env["gpu"] if env["backend"] == "cuda" else f"{env['cpu']} ({env['cpu_threads']} threads)"
    c32, c16 = ceilings.for_dtype("float32"), ceilings.for_dtype("float16")
    if env["backend"] == "cuda":
        clock = ", CUDA events, L2 flushed between repeats"
    else:  # the runner times gpuconv and the comparison in alternating blocks (time_cpu_blocks)
        clock = ", perf_counter" + (", each library in its own alternating blocks" if comparison_label else "")
    lines = [
        f"gpuconv-bench {env['gpuconv']}: {suite_name} ({n_rows} rows), {s.dtype}, {s.data_format}, "
        + ("" if s.pass_name == "forward" else f"{s.pass_name} pass, ")
        + f"backend {env['backend']} on {where}",
        f"ceilings: fp32 {c32.tensor_flops / 1e12:.3g} TFLOP/s, fp16 tensor {c16.tensor_flops / 1e12:.3g} / "
        f"CUDA-core {c16.simt_flops / 1e12:.3g} TFLOP/s, memory {ceilings.bandwidth / 1e9:.4g} GB/s "
        f"[{ceilings.source}]",
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
    return "summary: " + "; ".join(parts)

"""--plot FILE.png: % of roofline and the time ratio against the comparison, per row.

The figure is meant for a report: every bar carries its value, rows are named by id, op and
shape, the roofline (100%) and parity (1.0x) are labelled lines, every colour is in a legend, and
the log ratio axis gets 1-2-5 or decade ticks chosen so that their labels never overlap. A row
above 100% of roofline (a measured CPU ceiling undershoots on a loaded machine) is drawn clipped,
hatched and listed in a footnote; it never passes the line silently. A ratio the runner flagged
(outside its bounds after re-measuring) is marked "!" and footnoted, as in the table.

matplotlib is optional (``pip install 'gpuconv[plot]'``); the CLI asks :func:`require` before any
row runs, so a missing matplotlib costs a clear message, not a finished run without its plot.
"""
import math
import textwrap

from .cost import pass_flops, roofline_seconds
from .runner import RATIO_BOUNDS, RATIO_FLAG


class PlotUnavailable(RuntimeError):
    pass


def require():
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise PlotUnavailable(
            f"--plot needs matplotlib, which is not importable here ({e}); install it with "
            "`pip install matplotlib` (or the 'plot' extra), or leave --plot out"
        ) from None


# ---- colours: one meaning each, every one of them in a legend -------------------------------
TIMED = "tab:blue"
OVER_CEILING = "tab:purple"
NOT_TIMED = "#f4c7c3"
FASTER = "tab:green"
SLOWER = "tab:orange"
NOT_COMPARED = "#dddddd"

ROOFLINE_XMAX = 128.0  # room right of the 100% line for the labels of the longest bars
INSIDE_FROM = 80.0  # % from which a bar's label goes inside the bar, clear of the 100% line
RATIO_MARGIN = 2.5  # factor left and right of the extreme ratios, for their value labels
DESCRIPTION_CHARS = 46
ROW_INCHES = 0.42  # two 8-pt lines of row label and some air
NOTE_INCHES = 0.17  # one 8-pt footnote line
NOTE_CHARS = 200  # an 8-pt footnote line across the 14-inch figure
# Tick ladders on the log ratio axis, densest first: mantissas per decade, then every k-th decade.
MANTISSAS = ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 5), (1, 3), (1,))
DECADE_STEPS = (2, 3, 5, 10)


# ---- numbers and words ------------------------------------------------------------------------
def pct_text(pct):
    """``51.8%``; two significant digits below 1% (``0.042%``) so a small bar is not ``0.0%``, and
    two decimals next to 100% so that a bar over the ceiling never reads ``100.0%``."""
    if pct < 1:
        return f"{pct:#.2g}%"
    text = f"{pct:.1f}"
    return f"{pct:.2f}%" if text == "100.0" and pct != 100 else f"{text}%"


def ratio_text(ratio):
    """``0.83x``, ``3.30x``, ``16x``; two significant digits below 0.1 (``0.0071x``)."""
    if ratio >= 10:
        return f"{ratio:.0f}x"
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:#.2g}x"


def row_label(row):
    """Two lines: ``D1  conv2d 1x224x224 3->64 k7 s2 same`` and the row's description, shortened."""
    desc = row.description.split(" [CPU-sized")[0]  # the shape line already says the CPU size
    if len(desc) > DESCRIPTION_CHARS:
        desc = desc[:DESCRIPTION_CHARS - 1].rstrip() + "\u2026"
    return f"{row.id}  {row.op_text()} {row.shape_text()}\n{desc}"


def roofline_pct(result, ceilings=None):
    """% of roofline of a timed ``result``: the run's own figure, or against ``ceilings``
    (e.g. re-measured after the run) when given; None for a row that was not timed."""
    if not result.timed:
        return None
    if ceilings is None:
        return result.roofline_pct
    seconds, _ = roofline_seconds(pass_flops(result.row, result.pass_name), result.bytes,
                                  ceilings.for_dtype(result.dtype))
    return 100.0 * seconds / result.time.median


def _usable_ratio(result):
    r = result.ratio
    return r if r is not None and r > 0 and math.isfinite(r) else None


def compared_with(results):
    """The comparison library (or libraries) of the run, as the results name them."""
    names = sorted({r.compare.library for r in results if r.compare is not None and r.compare.library})
    return ", ".join(names)


# ---- the log ratio axis -----------------------------------------------------------------------
def log_ticks(lo, hi, max_ticks):
    """Ticks for a log axis over ``[lo, hi]``: the densest ladder (1..9, 1-2-5, 1-3, decades, every
    k-th decade) that puts at most ``max_ticks`` ticks in range, and at least two where a ladder can."""
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"log_ticks needs 0 < lo < hi (finite). Received: lo={lo!r}, hi={hi!r}")
    if max_ticks < 1:
        raise ValueError(f"max_ticks must be >= 1. Received: max_ticks={max_ticks!r}")
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ladders = [[m * 10.0 ** e for e in range(first, last + 1) for m in ms] for ms in MANTISSAS]
    ladders += [[10.0 ** e for e in range(first, last + 1) if e % k == 0] for k in DECADE_STEPS]
    fitting = [[v for v in ladder if lo <= v <= hi] for ladder in ladders]
    fitting = [t for t in fitting if 1 <= len(t) <= max_ticks]
    if not fitting:  # no ladder has a tick in range, or each has too many: the decade nearest the middle
        middle = round((math.log10(lo) + math.log10(hi)) / 2)
        return [10.0 ** middle]
    two_or_more = [t for t in fitting if len(t) >= 2]
    return two_or_more[0] if two_or_more else fitting[0]


def overlapping_labels(axis, renderer):
    """Pairs of the visible, non-empty tick labels of ``axis`` whose drawn boxes overlap."""
    labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
    return [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]


def _ratio_tick(value, _pos):
    """``2x``, not ``2x10^0``; the parity tick names its line."""
    return "1x\nparity" if value == 1 else f"{value:g}x"


def _roofline_tick(value, _pos):
    return "100%\nroofline" if value == 100 else f"{value:g}%"


def _set_ratio_ticks(ax, fig, lo, hi):
    """Tick the log ratio axis with the densest ladder whose labels do not overlap once drawn."""
    import matplotlib.ticker as mticker

    ax.xaxis.set_major_formatter(mticker.FuncFormatter(_ratio_tick))
    ax.xaxis.set_minor_locator(mticker.LogLocator(subs="all", numticks=50))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    width_in = ax.get_position().width * fig.get_figwidth()
    max_ticks = max(2, int(width_in * 1.8))
    while True:
        ticks = log_ticks(lo, hi, max_ticks)
        ax.set_xticks(ticks)
        ax.set_xlim(lo, hi)
        fig.canvas.draw()
        if max_ticks == 1 or not overlapping_labels(ax.xaxis, fig.canvas.get_renderer()):
            return
        max_ticks = min(max_ticks, len(ticks)) - 1


# ---- the figure -------------------------------------------------------------------------------
def _band(ax, y, text, color):
    """A row that has no bar in this panel: a full-width band that says why."""
    ax.axhspan(y - 0.4, y + 0.4, color=color, zorder=0)
    ax.text(0.5, y, text, transform=ax.get_yaxis_transform(), ha="center", va="center", fontsize=8,
            color="0.2", zorder=4, bbox={"facecolor": color, "edgecolor": "none", "pad": 1}, gid="band-label")


def _why_not_timed(result):
    return {"FAIL": "FAIL: wrong answer, not timed", "SKIP": "SKIP: not run"}.get(
        result.status, f"{result.status}: not timed")


def _why_not_compared(result, library):
    comp = result.compare
    if comp is None or comp.status == "OFF":
        return "not compared (comparison off)"
    return f"{library or comp.library or 'comparison'}: {comp.status}, not timed"


def _draw_roofline(ax, results, pcts):
    """Left panel: % of roofline, bars clipped at the 100% line, the excess hatched and flagged."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    used = set()
    for y, (res, pct) in enumerate(zip(results, pcts)):
        if pct is None:
            _band(ax, y, _why_not_timed(res), NOT_TIMED)
            used.add("not timed")
            continue
        label = pct_text(pct) + (" *" if _brought_under(res, pct) else "")
        if pct > 100:
            ax.barh(y, 100, color=OVER_CEILING, hatch="//", edgecolor="white", height=0.7)
            ax.text(97, y, "exceeds measured ceiling", ha="right", va="center", fontsize=7, color="white",
                    bbox={"facecolor": OVER_CEILING, "edgecolor": "none", "pad": 1}, gid=f"flag:{res.row.id}")
            label += " \u2020"
            used.add("over")
        else:
            ax.barh(y, pct, color=TIMED, height=0.7)
            used.add("timed")
        if INSIDE_FROM <= pct <= 100:  # outside, the label would cross the 100% line
            ax.text(pct - 1.5, y, label, ha="right", va="center", fontsize=8, color="white", gid=f"pct:{res.row.id}")
        else:
            ax.text(min(pct, 100) + 1.5, y, label, ha="left", va="center", fontsize=8, gid=f"pct:{res.row.id}")
    ax.axvline(100, color="black", lw=1, ls="--", zorder=3)
    ax.set_xlim(0, ROOFLINE_XMAX)
    ax.set_xticks([0, 20, 40, 60, 80, 100])
    ax.xaxis.set_major_formatter(_roofline_tick)
    ax.set_xlabel("% of roofline: roofline time / measured median time (higher is better)")
    handles = [Line2D([], [], color="black", ls="--", lw=1, label="roofline (100%)")]
    if "timed" in used:
        handles.append(Patch(color=TIMED, label="timed, % of roofline"))
    if "over" in used:
        handles.append(Patch(facecolor=OVER_CEILING, hatch="//", edgecolor="white",
                             label="\u2020 exceeds measured ceiling (clipped at 100%)"))
    if "not timed" in used:
        handles.append(Patch(color=NOT_TIMED, label="not timed (FAIL / ERROR / SKIP)"))
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8,
              frameon=False)


def _draw_ratio(ax, results, library):
    """Right panel: time ratio on a log axis, bars from parity (1.0x) to the row's ratio."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    used, ratios = set(), []
    for y, res in enumerate(results):
        ratio = _usable_ratio(res)
        if ratio is None:
            _band(ax, y, _why_not_timed(res) if not res.timed else _why_not_compared(res, library),
                  NOT_TIMED if not res.timed else NOT_COMPARED)
            used.add("not timed" if not res.timed else "not compared")
            continue
        ratios.append(ratio)
        faster = ratio < 1
        ax.barh(y, ratio - 1, left=1, color=FASTER if faster else SLOWER, height=0.7)
        used.add("faster" if faster else "slower")
        gap = 0.96 if faster else 1.04  # a few % beyond the bar's end, on the log axis
        label = ratio_text(ratio) + (" !" if RATIO_FLAG in res.flags else "")
        ax.text(ratio * gap, y, label, ha="right" if faster else "left", va="center",
                fontsize=8, gid=f"ratio:{res.row.id}")
    ax.axvline(1.0, color="black", lw=1, ls="--", zorder=3)
    ax.set_xscale("log")
    other = library or "comparison"
    ax.set_xlabel(f"time gpuconv / {other}\n(log scale; < 1: gpuconv faster)")
    handles = [Line2D([], [], color="black", ls="--", lw=1, label="parity (1.0x)")]
    names = {"faster": (FASTER, "gpuconv faster"), "slower": (SLOWER, "gpuconv slower"),
             "not compared": (NOT_COMPARED, "not compared"), "not timed": (NOT_TIMED, "not timed")}
    handles += [Patch(color=c, label=text) for key, (c, text) in names.items() if key in used]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8,
              frameon=False)
    lo = min(ratios + [1.0]) / RATIO_MARGIN
    hi = max(ratios + [1.0]) * RATIO_MARGIN
    return lo, hi


def _brought_under(result, pct):
    """Whether a re-measured ceiling brought the row from above 100% to ``pct`` <= 100%."""
    return pct is not None and pct <= 100 < (result.roofline_pct or 0)


def _footnote(results, pcts, ceilings):
    """Lines under the figure: the ceilings drawn against, rows a re-measured ceiling brought
    under 100%, rows still above it, and ratios the runner flagged."""
    lines = []
    if ceilings is not None:
        lines.append(f"Roofline against {ceilings.device}: fp32 {ceilings.fp32 / 1e9:.4g} GFLOP/s, "
                     f"memory {ceilings.bandwidth / 1e9:.4g} GB/s [{ceilings.source}].")
    lowered = [(r, p) for r, p in zip(results, pcts) if _brought_under(r, p)]
    if lowered:
        lines.append("* ceiling re-measured: " + ", ".join(
            f"{r.row.id} {pct_text(r.roofline_pct)} against the start-up ceilings, {pct_text(p)} now"
            for r, p in lowered) + ".")
    over = [(r, p) for r, p in zip(results, pcts) if p is not None and p > 100]
    if over:
        lines.append("\u2020 exceeds measured ceiling: " + ", ".join(f"{r.row.id} ({pct_text(p)})" for r, p in over)
                     + ". A measured ceiling undershoots the device's peak (e.g. a loaded machine); "
                     "the bar is clipped at 100%.")
    flagged = [r for r in results if RATIO_FLAG in r.flags and _usable_ratio(r) is not None]
    if flagged:
        lines.append(f"! ratio outside {RATIO_BOUNDS[0]:g}x..{RATIO_BOUNDS[1]:g}x even after both sides were "
                     "re-measured: " + ", ".join(f"{r.row.id} ({ratio_text(r.ratio)})" for r in flagged)
                     + ". Not to be trusted: on a small or shared CPU usually a thread pool losing scheduler "
                     "ticks, not either library.")
    return [part for line in lines for part in textwrap.wrap(line, NOTE_CHARS)]


def build_figure(results, title, ceilings=None):
    """The figure of a run's ``results`` (RowResult objects, in table order), titled ``title``.

    ``ceilings`` (a ``DeviceCeilings``), when given, is what % of roofline is computed against
    (e.g. ``ceilings.remeasure_cpu`` after a CPU run) and is named in the footnote; otherwise each
    result's own ``roofline_pct`` is drawn.
    """
    require()
    results = list(results)
    if not results:
        raise ValueError("build_figure needs at least one result. Received: results=[]")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pcts = [roofline_pct(r, ceilings) for r in results]
    notes = _footnote(results, pcts, ceilings)
    n = len(results)
    plot_h, note_h = ROW_INCHES * n + 1.8, NOTE_INCHES * len(notes) + 0.2
    fig = Figure(figsize=(14, plot_h + note_h + 0.4), layout="constrained")
    FigureCanvasAgg(fig)  # its own canvas: no pyplot state, and a renderer to measure labels with
    grid = fig.add_gridspec(2, 2, width_ratios=(1, 1.15), height_ratios=(plot_h, note_h))
    ax_pct = fig.add_subplot(grid[0, 0], label="roofline")
    ax_ratio = fig.add_subplot(grid[0, 1], sharey=ax_pct, label="ratio")
    ax_note = fig.add_subplot(grid[1, :], label="footnote")
    ax_note.set_axis_off()
    ax_note.set(xticks=[], yticks=[])  # not drawn anyway; leaves no phantom tick labels to measure

    _draw_roofline(ax_pct, results, pcts)
    lo, hi = _draw_ratio(ax_ratio, results, compared_with(results))
    ax_pct.set_yticks(range(n), [row_label(r.row) for r in results], fontsize=8)
    ax_pct.set_ylim(n - 0.5, -0.5)  # first row on top, as in the table
    ax_ratio.tick_params(axis="y", labelleft=False)
    for ax in (ax_pct, ax_ratio):
        ax.tick_params(axis="x", labelsize=8)
        ax.xaxis.label.set_fontsize(9)
        ax.grid(axis="x", which="major", color="0.9", zorder=0)
        ax.set_axisbelow(True)
    from matplotlib.transforms import blended_transform_factory

    ax_note.text(0.01, 1, "\n".join(notes), transform=blended_transform_factory(fig.transFigure, ax_note.transAxes),
                 ha="left", va="top", fontsize=8, gid="footnote")
    fig.suptitle(str(title), fontsize=11)
    _set_ratio_ticks(ax_ratio, fig, lo, hi)
    return fig


def write_plot(path, results, title, ceilings=None):
    """Save :func:`build_figure` of ``results`` to ``path`` (PNG, or any format matplotlib infers)."""
    fig = build_figure(results, title, ceilings)
    fig.savefig(path, dpi=120)

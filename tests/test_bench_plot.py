"""The --plot figure, checked as a structure (no PNG read back, no benchmark run): value labels
equal to the numbers, a legend entry per colour drawn, the 100% and 1.0x lines, the >100% row
clipped and flagged, and no two tick labels overlapping on any axis at several ratio ranges."""
import dataclasses
import math

import pytest

pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the 'test' extra installs it)")

from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from gpuconv.benchmarking import ceilings as ceilings_mod  # noqa: E402
from gpuconv.benchmarking import plot  # noqa: E402
from gpuconv.benchmarking.ceilings import DeviceCeilings  # noqa: E402
from gpuconv.benchmarking.cost import pass_bytes, pass_flops, roofline_seconds  # noqa: E402
from gpuconv.benchmarking.row import Row  # noqa: E402
from gpuconv.benchmarking.runner import (ERROR, FAIL, OFF, PASS, RATIO_FLAG, UNSUPPORTED,  # noqa: E402
                                         Comparison, RowResult)
from gpuconv.benchmarking.timing import Timing  # noqa: E402

MEDIAN = 0.004  # seconds per call of every fake row


def _row(i):
    return Row(f"R{i}", f"fake conv row number {i} for the plot test", "conv", 2, 8, 16, (12, 12), 3, 1, "same")


def _result(i, pct=None, ratio=None, status=PASS, compare_status=PASS):
    """A RowResult as the runner leaves it: timed at MEDIAN with ``pct`` % of roofline, and a
    comparison of time ratio ``ratio`` (None: the comparison did not time it)."""
    row = _row(i)
    res = RowResult(row, "float32", "channels_last", status, 1e-4)
    res.bytes = pass_bytes(row, "float32", "forward")
    if status != PASS:
        return res
    res.time = Timing(MEDIAN, MEDIAN, MEDIAN, 1, "perf_counter")
    res.roofline_s = pct / 100 * MEDIAN
    if compare_status == OFF:
        res.compare = Comparison("", "", OFF, note="--no-compare")
    elif ratio is None:
        res.compare = Comparison("torch 9.9 CPU (2 threads)", "cpu", compare_status)
    else:
        comp_time = Timing(MEDIAN / ratio, MEDIAN / ratio, MEDIAN / ratio, 1, "perf_counter")
        res.compare = Comparison("torch 9.9 CPU (2 threads)", "cpu", PASS, time=comp_time, ratio=ratio)
    return res


def _timed(pcts_ratios):
    return [_result(i, p, r) for i, (p, r) in enumerate(pcts_ratios)]


# (name, results): the ratio ranges of the brief, one row, a row over 100%, rows without a ratio.
CASES = {
    "tiny ratios 0.007..0.04": _timed([(12.0, 0.007), (30.0, 0.012), (45.0, 0.02), (8.0, 0.04)]),
    "near parity 0.5..2": _timed([(55.0, 0.5), (60.0, 0.83), (70.0, 1.25), (20.0, 2.0)]),
    "wide 0.01..50": _timed([(5.0, 0.01), (15.0, 0.3), (25.0, 1.0), (35.0, 7.0), (65.0, 50.0)]),
    "one row": _timed([(51.8, 0.83)]),
    "over the ceiling": _timed([(162.9, 0.9), (40.0, 1.5)]),
    "not compared or not timed": [
        _result(0, 30.0, 0.6), _result(1, 20.0, None, compare_status=UNSUPPORTED),
        _result(2, 10.0, None, compare_status=OFF), _result(3, status=FAIL), _result(4, status=ERROR),
    ],
    "next to the roofline": _timed([(79.9, 0.5), (80.0, 0.9), (95.0, 0.97), (99.96, 1.1), (100.0, 2.0), (100.04, 3.0)]),
    "many rows, 0.05..20": _timed([(5.0 + 3 * i, 0.05 * 1.4 ** i) for i in range(18)]),
}


@pytest.fixture(params=sorted(CASES), scope="module")
def drawn(request):
    results = CASES[request.param]
    fig = plot.build_figure(results, f"test: {request.param}, on some CPU")
    fig.canvas.draw()
    return results, fig


def _axes(fig, label):
    (ax,) = [a for a in fig.axes if a.get_label() == label]
    return ax


def _texts(fig):
    return {t.get_gid(): t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid()}


# ---- values on the bars -----------------------------------------------------------------------
def test_every_timed_row_carries_its_percentage_and_ratio_as_text(drawn):
    results, fig = drawn
    texts = _texts(fig)
    for res in results:
        rid = res.row.id
        if not res.timed:
            assert f"pct:{rid}" not in texts and f"ratio:{rid}" not in texts
            continue
        _assert_shows(texts[f"pct:{rid}"].split("%")[0], res.roofline_pct)
        if res.ratio is None:
            assert f"ratio:{rid}" not in texts
        else:
            _assert_shows(texts[f"ratio:{rid}"].rstrip("x"), res.ratio)


def _assert_shows(text, value):
    """``text`` is ``value`` rounded to the digits it shows (at least two significant ones)."""
    decimals = len(text.partition(".")[2])
    assert abs(float(text) - value) <= 0.5 * 10 ** -decimals * (1 + 1e-9), (text, value)
    assert len(text.replace(".", "").lstrip("0")) >= 2, text


def test_value_label_formats():
    pcts = (51.83, 6.7, 162.94, 0.0421, 100.0, 100.04, 99.96)
    assert [plot.pct_text(v) for v in pcts] == ["51.8%", "6.7%", "162.9%", "0.042%", "100.0%", "100.04%", "99.96%"]
    ratios = (0.83, 3.3, 16.4, 0.00712, 0.05, 1.0)
    assert [plot.ratio_text(v) for v in ratios] == ["0.83x", "3.30x", "16x", "0.0071x", "0.050x", "1.00x"]


def test_rows_are_named_by_id_op_shape_and_description(drawn):
    results, fig = drawn
    labels = [t.get_text() for t in _axes(fig, "roofline").get_yticklabels()]
    assert labels == [f"{r.row.id}  conv2d 2x12x12 8->16 k3 same\nfake conv row number {r.row.id[1:]} for the "
                      f"plot test" for r in results]


def test_a_long_description_is_shortened_and_the_cpu_size_note_dropped():
    row = dataclasses.replace(_row(0), description="x" * 80 + " [CPU-sized: N=1]")
    first, second = plot.row_label(row).split("\n")
    assert first == "R0  conv2d 2x12x12 8->16 k3 same"
    assert len(second) == plot.DESCRIPTION_CHARS and second.endswith("\u2026")


# ---- lines and legend -------------------------------------------------------------------------
def _vertical_lines_at(ax, x):
    return [ln for ln in ax.lines if list(ln.get_xdata()) == [x, x]]


def test_roofline_and_parity_are_labelled_lines(drawn):
    _, fig = drawn
    for label, x, name, tick in (("roofline", 100, "roofline (100%)", "100%\nroofline"),
                                 ("ratio", 1.0, "parity (1.0x)", "1x\nparity")):
        ax = _axes(fig, label)
        assert len(_vertical_lines_at(ax, x)) == 1
        assert name in [t.get_text() for t in ax.get_legend().get_texts()]
        assert tick in [t.get_text() for t in ax.xaxis.get_ticklabels()]


def test_the_legend_has_an_entry_for_every_colour_drawn(drawn):
    _, fig = drawn
    for label in ("roofline", "ratio"):
        ax = _axes(fig, label)
        drawn_colours = {to_rgba(p.get_facecolor()) for p in ax.patches if isinstance(p, Rectangle)}
        handles = ax.get_legend().legend_handles
        legend_colours = {to_rgba(h.get_facecolor()) for h in handles if not isinstance(h, Line2D)}
        assert drawn_colours and drawn_colours == legend_colours, label


def test_the_ratio_axis_names_the_comparison_library(drawn):
    results, fig = drawn
    xlabel = _axes(fig, "ratio").get_xlabel()
    assert xlabel.startswith("time gpuconv / torch 9.9 CPU (2 threads)") and "< 1: gpuconv faster" in xlabel


def test_rows_without_a_bar_say_why():
    fig = plot.build_figure(CASES["not compared or not timed"], "t")
    bands = [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == "band-label"]
    assert bands.count("FAIL: wrong answer, not timed") == 2  # both panels
    assert bands.count("ERROR: not timed") == 2
    assert "torch 9.9 CPU (2 threads): UNSUPPORTED, not timed" in bands
    assert "not compared (comparison off)" in bands


# ---- no bar silently past 100% ------------------------------------------------------------------
def test_a_row_over_the_ceiling_is_clipped_flagged_and_footnoted():
    fig = plot.build_figure(CASES["over the ceiling"], "t")
    ax = _axes(fig, "roofline")
    widths = sorted(p.get_width() for p in ax.patches if isinstance(p, Rectangle))
    assert widths == [pytest.approx(40.0), pytest.approx(100.0)]  # 162.9% drawn as 100%
    texts = _texts(fig)
    assert texts["pct:R0"] == "162.9% \u2020" and texts["pct:R1"] == "40.0%"
    assert texts["flag:R0"] == "exceeds measured ceiling" and "flag:R1" not in texts
    assert "\u2020 exceeds measured ceiling: R0 (162.9%)" in texts["footnote"]


def test_a_flagged_ratio_is_marked_and_footnoted():
    results = _timed([(30.0, 0.01), (40.0, 0.8)])
    results[0].flags.append(RATIO_FLAG)
    texts = _texts(plot.build_figure(results, "t"))
    assert texts["ratio:R0"] == "0.010x !" and texts["ratio:R1"] == "0.80x"
    assert "! ratio outside 0.05x..20x even after both sides were re-measured: R0 (0.010x)." in texts["footnote"]


def test_higher_ceilings_recompute_the_percentages_and_say_which_row_they_brought_under_100():
    row = _row(0)
    res = RowResult(row, "float32", "channels_last", PASS, 1e-4, time=Timing(MEDIAN, MEDIAN, MEDIAN, 1, "x"))
    res.bytes = pass_bytes(row, "float32", "forward")
    start = DeviceCeilings("cpu", 1e9, 1e9, 1e9, 1e9, "start-up")
    res.roofline_s, _ = roofline_seconds(pass_flops(row, "forward"), res.bytes, start.for_dtype("float32"))
    res.time = Timing(res.roofline_s / 1.5, res.roofline_s / 1.5, res.roofline_s / 1.5, 1, "x")  # 150%
    doubled = DeviceCeilings("cpu", 2e9, 2e9, 2e9, 2e9, "start-up; re-measured after the run")
    assert plot.roofline_pct(res) == pytest.approx(150.0)
    assert plot.roofline_pct(res, doubled) == pytest.approx(75.0)
    fig = plot.build_figure([res], "t", doubled)
    texts = _texts(fig)
    assert texts["pct:R0"] == "75.0% *" and "flag:R0" not in texts
    assert "* ceiling re-measured: R0 150.0% against the start-up ceilings, 75.0% now" in texts["footnote"]
    assert "re-measured after the run" in texts["footnote"]


def test_remeasure_cpu_keeps_the_larger_of_each_rate():
    small = {"copy_bytes": 1 << 20, "matmul_n": 64, "repeat": 1}
    low = DeviceCeilings("cpu", 1.0, 1.0, 1.0, 1.0, "start-up")
    raised = ceilings_mod.remeasure_cpu(low, **small)
    assert min(raised.fp32, raised.fp16_tensor, raised.fp16_simt, raised.bandwidth) > 1.0
    assert raised.source.startswith("start-up; re-measured after the run, larger kept (higher now: fp32")
    high = DeviceCeilings("cpu", 1e30, 1e30, 1e30, 1e30, "start-up")
    kept = ceilings_mod.remeasure_cpu(high, **small)
    assert (kept.fp32, kept.bandwidth) == (1e30, 1e30)
    assert kept.source == "start-up; re-measured after the run, larger kept (none higher now)"
    with pytest.raises(TypeError, match="previous must be a DeviceCeilings. Received: previous=1.5"):
        ceilings_mod.remeasure_cpu(1.5)


# ---- readable ticks -----------------------------------------------------------------------------
def _visible_labels(axis):
    lo, hi = sorted(axis.get_view_interval())
    return [t for loc, t in zip(axis.get_majorticklocs(), axis.get_majorticklabels())
            if lo <= loc <= hi and t.get_visible() and t.get_text()]


def test_no_two_tick_labels_overlap_on_any_axis(drawn):
    _, fig = drawn
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _visible_labels(axis)]
            for i, (a, box_a) in enumerate(boxes):
                for b, box_b in boxes[i + 1:]:
                    assert not box_a.overlaps(box_b), f"{ax.get_label()}: {a!r} overlaps {b!r}"


def test_the_ratio_axis_has_at_least_two_labelled_ticks_on_clean_values(drawn):
    _, fig = drawn
    axis = _axes(fig, "ratio").xaxis
    ticks = [loc for loc, t in zip(axis.get_majorticklocs(), axis.get_majorticklabels()) if t.get_text()]
    assert len(ticks) >= 2
    for v in ticks:  # one significant digit: 1-2-5 or 1..9 per decade
        mantissa = v / 10 ** math.floor(math.log10(v) + 1e-9)
        assert mantissa == pytest.approx(round(mantissa)), v


def test_value_labels_stay_inside_the_figure(drawn):
    _, fig = drawn
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    for ax in fig.axes:
        for t in ax.texts:
            box = t.get_window_extent(renderer)
            assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, t.get_text()


def test_value_labels_do_not_cross_the_roofline_or_parity_line(drawn):
    _, fig = drawn
    renderer = fig.canvas.get_renderer()
    for label, x, prefix in (("roofline", 100, "pct:"), ("ratio", 1.0, "ratio:")):
        ax = _axes(fig, label)
        line_px = ax.transData.transform((x, 0))[0]
        for t in ax.texts:
            if (t.get_gid() or "").startswith(prefix):
                box = t.get_window_extent(renderer)
                assert not box.x0 < line_px < box.x1, (label, t.get_text())


@pytest.mark.parametrize("lo, hi, max_ticks, expected", [
    (0.5, 2.0, 9, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0]),
    (0.0028, 2.5, 9, [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]),
    (0.004, 125.0, 9, [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]),
    (0.004, 125.0, 8, [0.01, 0.1, 1.0, 10.0, 100.0]),
    (1e-9, 1e9, 9, [1e-8, 1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4, 1e6, 1e8]),
    (0.95, 1.05, 9, [1.0]),  # no ladder has two ticks in range: the one it has
])
def test_log_ticks_take_the_densest_ladder_that_fits(lo, hi, max_ticks, expected):
    assert plot.log_ticks(lo, hi, max_ticks) == pytest.approx(expected)


@pytest.mark.parametrize("lo, hi, max_ticks, message", [
    (0.0, 1.0, 5, "lo=0.0, hi=1.0"), (2.0, 1.0, 5, "lo=2.0, hi=1.0"), (0.1, 1.0, 0, "max_ticks=0"),
])
def test_log_ticks_reject_bad_input(lo, hi, max_ticks, message):
    with pytest.raises(ValueError, match=message):
        plot.log_ticks(lo, hi, max_ticks)


# ---- the file -----------------------------------------------------------------------------------
def test_write_plot_saves_a_png(tmp_path):
    path = tmp_path / "plot.png"
    plot.write_plot(path, CASES["one row"], "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_empty_run_is_a_value_error():
    with pytest.raises(ValueError, match=r"at least one result. Received: results=\[\]"):
        plot.build_figure([], "t")

"""--plot FILE.png: % of roofline and the time ratio against the comparison, per row.

matplotlib is optional (``pip install 'gpuconv[plot]'``); the CLI asks :func:`require` before any
row runs, so a missing matplotlib costs a clear message, not a finished run without its plot.
"""


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


def write_plot(path, results, title):
    require()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ids = [r.row.id for r in results]
    pct = [r.roofline_pct or 0.0 for r in results]
    ratio = [r.ratio for r in results]
    ys = range(len(ids))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.35 * len(ids) + 1.5), sharey=True)
    colors = ["tab:blue" if r.status == "PASS" else "tab:red" for r in results]
    ax1.barh(ys, pct, color=colors)
    ax1.set_xlabel("% of roofline (higher is better; red: not timed)")
    ax1.set_yticks(list(ys), ids)
    ax1.invert_yaxis()
    ax1.axvline(100, color="grey", lw=0.8)
    compared = [(y, v) for y, v in zip(ys, ratio) if v]  # a log axis has no place for "not compared"
    ax2.barh([y for y, _ in compared], [v for _, v in compared],
             color=["tab:green" if v <= 1 else "tab:orange" for _, v in compared])
    ax2.axvline(1.0, color="grey", lw=0.8)
    ax2.set_xscale("log")
    ratio_labels = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x")  # "2x", not "2x10^0"
    ax2.xaxis.set_major_formatter(ratio_labels)
    ax2.xaxis.set_minor_formatter(ratio_labels)
    ax2.set_xlabel("time gpuconv / torch (log; < 1: gpuconv faster)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

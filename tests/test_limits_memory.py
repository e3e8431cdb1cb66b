"""Issue 8, section 4: the memory budget is real and covers everything.

``GPUCONV_WORKSPACE_MB`` (a positive integer, default 512) bounds every temporary of every op of
the NumPy engine: the zero-padded input (padded piece by piece, never whole), im2col columns,
GEMM results, intermediates (separable's depthwise result, upsampling's passes), the float32
accumulator of a float16 op and the activation's temporaries. Checked here by tracing every
allocation (tracemalloc sees NumPy's) on inputs several times larger than a small budget, where
the padded copy of the whole input alone would exceed it. The peak RSS of the issue's full case
(batch 64, 256x256x64, 3x3 'same' to 64) is measured by bench/test_peak_memory_bench.py.
"""
import tracemalloc

import engine_calls as calls
import numpy as np
import pytest

from gpuconv.cpu import engine as eng
from gpuconv.cpu import memory

import reference as ref
from conftest import assert_close

BUDGET = 128 * 1024
SAME = ((1, 1), (1, 1))


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "1.5", "", " ", "1e3", "٣", "0x10"])
def test_an_invalid_workspace_setting_is_a_clear_value_error(monkeypatch, raw):
    monkeypatch.setattr(memory, "_environment_budget", None)
    monkeypatch.setenv("GPUCONV_WORKSPACE_MB", raw)
    with pytest.raises(ValueError, match=f"GPUCONV_WORKSPACE_MB must be a positive integer.*{raw!r}"):
        memory.budget_bytes()
    with pytest.raises(ValueError, match="GPUCONV_WORKSPACE_MB"):  # at the first op, too
        calls.conv(eng, np.ones((1, 4, 1)), np.ones((2, 1, 1)), None, strides=(1,), padding=((0, 0),), dilation=(1,),
                 groups=1, channels_last=True, activation=None)


@pytest.mark.parametrize("raw,mib", [(None, 512), ("64", 64), (" 3 ", 3), ("100000", 100000)])
def test_the_workspace_setting_in_mib(monkeypatch, raw, mib):
    monkeypatch.setattr(memory, "_environment_budget", None)
    if raw is None:
        monkeypatch.delenv("GPUCONV_WORKSPACE_MB", raising=False)
    else:
        monkeypatch.setenv("GPUCONV_WORKSPACE_MB", raw)
    assert memory.budget_bytes() == mib * 2**20
    # its two shares never add up to more than the budget (two working buffers, the pieces)
    assert 2 * memory.chunk_limit() + memory.piece_limit() <= mib * 2**20


def _temporaries(call):
    """(peak bytes allocated during ``call`` beyond its result, the result)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        y = call()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak - y.nbytes, y


def _cases(rng, dtype, channels_last):
    """(name, engine call, float64 reference) for every op family on a 2x40x40x16 input (200 KiB
    in float32: its padded copy alone is over the 128 KiB budget)."""
    x = rng.standard_normal((2, 40, 40, 16)).astype(dtype)
    xin = x if channels_last else np.ascontiguousarray(np.moveaxis(x, -1, 1))
    cl = channels_last

    def back(y):  # the raw result is checked; this only wraps it for the comparison
        return _Raw(y, cl)

    w = rng.standard_normal((3, 3, 16, 16)).astype(dtype) / 8
    wg = rng.standard_normal((3, 3, 4, 16)).astype(dtype) / 4
    wd = rng.standard_normal((3, 3, 16, 2)).astype(dtype) / 3
    pw = rng.standard_normal((1, 1, 32, 16)).astype(dtype) / 6
    wt = rng.standard_normal((4, 4, 8, 16)).astype(dtype) / 8
    b = rng.standard_normal(16).astype(dtype)
    small = x[:, :16, :16]
    lk = rng.standard_normal((16 * 16, 9 * 16, 8)).astype(dtype) / 12
    lk_first = np.moveaxis(lk.reshape(256, 3, 3, 16, 8), 3, 1).reshape(lk.shape)  # patch rows (C, *k)
    f64 = [a.astype(np.float64) for a in (x, w, wg, wd, pw, wt, b, lk)]
    X, W, WG, WD, PW, WT, B, LK = f64
    XP = np.pad(X, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return [
        ("conv + bias + sigmoid", lambda: back(calls.conv(eng, xin, w, b, strides=(1, 1), padding=SAME, dilation=(1, 1),
                                                         groups=1, channels_last=cl, activation="sigmoid")),
         lambda: ref.activate(ref.conv(XP, W, B), "sigmoid")),
        ("grouped conv", lambda: back(calls.conv(eng, xin, wg, None, strides=(1, 1), padding=SAME, dilation=(1, 1), groups=4,
                                                channels_last=cl, activation=None)),
         lambda: ref.conv(XP, WG)),
        ("depthwise + relu", lambda: back(calls.depthwise_conv(eng, xin, wd, None, strides=(1, 1), padding=SAME,
                                                             dilation=(1, 1), channels_last=cl, activation="relu")),
         lambda: ref.activate(ref.depthwise_conv(XP, WD), "relu")),
        ("depthwise s2 d2", lambda: back(calls.depthwise_conv(eng, xin, wd, None, strides=(2, 2), padding=SAME,
                                                            dilation=(2, 2), channels_last=cl, activation=None)),
         lambda: ref.depthwise_conv(XP, WD, strides=2, dilation_rate=2)),
        ("separable", lambda: back(calls.separable_conv(eng, xin, wd, pw, None, strides=(1, 1), padding=SAME, dilation=(1, 1),
                                                      channels_last=cl, activation=None)),
         lambda: ref.separable_conv(XP, WD, PW)),
        ("max pool", lambda: back(calls.pool(eng, xin, mode="max", pool_size=(3, 3), strides=(1, 1), padding=SAME,
                                           channels_last=cl)),
         lambda: ref.max_pool(X, 3, strides=1, padding="same")),
        ("average pool", lambda: back(calls.pool(eng, xin, mode="average", pool_size=(3, 3), strides=(1, 1), padding=SAME,
                                               channels_last=cl)),
         lambda: ref.average_pool(X, 3, strides=1, padding="same")),
        ("transposed", lambda: back(calls.conv_transpose(eng, xin, wt, None, strides=(2, 2), dilation=(1, 1), groups=1,
                                                       out_spatial=(80, 80), crop=(1, 1), channels_last=cl,
                                                       activation=None)),
         lambda: ref.transpose_scatter(X, WT, (2, 2), (1, 1), 1, (80, 80), (1, 1))),
        ("bilinear upsampling", lambda: back(calls.upsample(eng, xin, size=(2, 2), interpolation="bilinear",
                                                          channels_last=cl)),
         lambda: ref.upsample(X, (2, 2), "bilinear")),
        ("nearest upsampling", lambda: back(calls.upsample(eng, xin, size=(2, 2), interpolation="nearest", channels_last=cl)),
         lambda: ref.upsample(X, (2, 2), "nearest")),
        ("locally connected + tanh", lambda: back(calls.locally_connected(eng, 
            small if cl else np.ascontiguousarray(np.moveaxis(small, -1, 1)), lk if cl else lk_first, None,
            kernel_size=(3, 3), strides=(1, 1), padding=SAME, out_spatial=(16, 16), channels_last=cl,
            activation="tanh")),
         lambda: ref.activate(ref.locally_connected(X[:, :16, :16], LK, kernel_size=3, padding="same"), "tanh")),
    ]


class _Raw:
    """An engine result and its layout (channels_last view for the reference comparison)."""

    def __init__(self, y, channels_last):
        self.y, self.channels_last = y, channels_last

    @property
    def nbytes(self):
        return self.y.nbytes

    def last(self):
        return self.y if self.channels_last else np.moveaxis(self.y, 1, -1)


CASE_NAMES = [c[0] for c in _cases(np.random.default_rng(0), "float32", True)]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_temporary_stays_within_the_workspace_budget(monkeypatch, dtype, channels_last, case):
    monkeypatch.setattr(memory, "MEMORY_BUDGET_BYTES", BUDGET)
    rng = np.random.default_rng(11)
    _, call, reference_fn = next(c for c in _cases(rng, dtype, channels_last) if c[0] == case)
    extra, raw = _temporaries(call)
    assert extra <= BUDGET, f"{case}: {extra} bytes of temporaries > the {BUDGET}-byte budget"
    assert raw.y.dtype == dtype and raw.y.flags.c_contiguous
    assert_close(raw.last(), reference_fn(), dtype)


def test_the_padded_copy_is_no_longer_made_whole(monkeypatch):
    """The case the issue measured, scaled down: a 'same' conv's temporaries are a small share of
    its input (before issue 8 they were the whole padded input and more)."""
    monkeypatch.setattr(memory, "MEMORY_BUDGET_BYTES", 2 * 2**20)
    x = np.random.default_rng(12).random((8, 64, 64, 16), dtype=np.float32)  # 2 MiB
    w = np.random.default_rng(13).random((3, 3, 16, 16), dtype=np.float32)
    extra, _ = _temporaries(lambda: calls.conv(eng, x, w, None, strides=(1, 1), padding=SAME, dilation=(1, 1), groups=1,
                                              channels_last=True, activation=None))
    padded_whole = 8 * 66 * 66 * 16 * 4
    assert extra <= 2 * 2**20 < padded_whole


@pytest.mark.parametrize("budget", [1, 4096, 60000])
@pytest.mark.parametrize("dtype", ["float64", "float16"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_pieces_of_every_size_give_the_reference(monkeypatch, budget, dtype, channels_last):
    """Tiny budgets cut the output into single rows of one item, or runs of rows, or groups of
    items; each piece from its own padded input rows, its own accumulator (float16; channels_first
    runs of rows) and its own epilogue: the result is the float64 reference's."""
    monkeypatch.setattr(memory, "MEMORY_BUDGET_BYTES", budget)
    rng = np.random.default_rng(14)
    x = rng.standard_normal((3, 9, 7, 4)).astype(dtype)
    w = (rng.standard_normal((3, 2, 2, 6)) / 3).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    xin = x if channels_last else np.ascontiguousarray(np.moveaxis(x, -1, 1))
    pads = ((1, 1), (0, 1))
    y = calls.conv(eng, xin, w, b, strides=(2, 1), padding=pads, dilation=(1, 1), groups=2, channels_last=channels_last,
                 activation="tanh")
    y = y if channels_last else np.moveaxis(y, 1, -1)
    want = ref.activate(ref.conv(np.pad(x.astype(np.float64), ((0, 0), *pads, (0, 0))), w.astype(np.float64),
                                 b.astype(np.float64), strides=(2, 1)), "tanh")
    assert_close(y, want, dtype)

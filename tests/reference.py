"""An independent float64 reference for every op, written as plain loops for small sizes.

Independent means: no import from gpuconv. Output lengths, pad splits and crops are derived here
from /work/shared/keras_spec.md (sections 1.3-1.5, 2.5, 2.8, 2.9), in a different form where the
spec offers one (the transposed-conv crop comes from JAX's ``left_pad`` rule, not from
``max(full - O, 0) // 2``). Every op is written once for channels_last, looping over output
positions and kernel taps with ``itertools.product`` (so one body serves ranks 1-3); channels
are handled by small explicit products. channels_first inputs are transposed in and out.

Products are summed with ``(a[:, :, None] * b[None]).sum(1)`` instead of BLAS, so IEEE special
values propagate exactly as the maths says (0 * Inf = NaN, Inf - Inf = NaN). Zero padding is
literal: the padded array is built with ``np.pad`` and its zeros enter the products. Every op
runs under ``np.errstate(all="ignore")``: NaN/Inf inputs are deliberate in the tests, so NumPy's
RuntimeWarnings would only be noise.

Signatures mirror ``gpuconv.ops`` (keyword arguments with the same names) so a test can call the
op and the reference with one ``**kwargs``. Results are float64 and never share memory with
the inputs.
"""
import itertools
import math

import numpy as np

CHANNELS_LAST = "channels_last"
CHANNELS_FIRST = "channels_first"


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def as_tuple(value, rank):
    if isinstance(value, (int, np.integer)):
        return (int(value),) * rank
    value = tuple(int(v) for v in value)
    assert len(value) == rank, (value, rank)
    return value


def to_channels_last(x, data_format):
    x = np.asarray(x, dtype=np.float64)
    return x if data_format == CHANNELS_LAST else np.moveaxis(x, 1, -1)


def from_channels_last(y, data_format):
    return y if data_format == CHANNELS_LAST else np.moveaxis(y, -1, 1)


def positions(shape):
    """Every index tuple of ``shape`` in row-major order."""
    return itertools.product(*(range(n) for n in shape))


def matvec(x, w):
    """``x (N, A) @ w (A, B)`` by explicit products and a sum (no BLAS shortcuts)."""
    return (x[:, :, None] * w[None, :, :]).sum(axis=1)


def at(spatial_index, channels=slice(None)):
    """Index ``[:, *spatial_index, channels]`` of a channels-last array."""
    return (slice(None),) + tuple(spatial_index) + (channels,)


def add_bias(y, bias):
    """channels-last ``y``; bias of shape (F,) or per position (*out_spatial, F)."""
    if bias is None:
        return y
    return y + np.asarray(bias, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Geometry, from keras_spec.md (deliberately not gpuconv.geometry)
# --------------------------------------------------------------------------------------------
def dilated_extent(k, d):
    return (k - 1) * d + 1


def forward_geometry(length, k, s, d, padding):
    """(output length, (pad before, pad after)) of a conv/depthwise/separable dim (spec 1.4)."""
    k_eff = dilated_extent(k, d)
    if padding == "valid":
        return (length - k_eff) // s + 1, (0, 0)
    out = math.ceil(length / s)
    if padding == "causal":
        return out, (k_eff - 1, 0)
    assert padding == "same", padding
    total = max((out - 1) * s + k_eff - length, 0)
    return out, (total // 2, total - total // 2)


def pool_geometry(length, p, s, padding):
    """Pooling: like conv with dilation 1 (spec 2.5)."""
    return forward_geometry(length, p, s, 1, padding)


def transpose_geometry(length, k, s, d, padding, output_padding):
    """(output length, left crop of the full scatter) of a transposed conv dim (spec 1.5).

    The crop follows JAX's formulation: ``pad_len`` of the stride-dilated input, ``left_pad =
    min(ceil(pad_len / 2), k_eff - 1)``, and the crop is what the full padding ``k_eff - 1``
    has in excess of ``left_pad``.
    """
    k_eff = dilated_extent(k, d)
    if padding == "valid":
        if output_padding is None:
            return (length - 1) * s + max(k_eff, s), 0
        return (length - 1) * s + k_eff + output_padding, 0
    assert padding == "same", padding
    if output_padding is None:
        out, pad_len = length * s, s + k_eff - 2
    else:
        out, pad_len = (length - 1) * s + k_eff % 2 + output_padding, k_eff + k_eff % 2 - 2 + output_padding
    left_pad = min(math.ceil(pad_len / 2), k_eff - 1)
    return out, k_eff - 1 - left_pad


def locally_connected_geometry(length, k, s, padding):
    """(output length, start offset of window 0) for Keras 2 LocallyConnected (spec 2.9)."""
    if padding == "valid":
        return math.ceil((length - k + 1) / s), 0
    assert padding == "same", padding
    return math.ceil(length / s), -(k // 2)


# --------------------------------------------------------------------------------------------
# Convolutions
# --------------------------------------------------------------------------------------------
def _padded(x, pads):
    return np.pad(x, [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)])


@np.errstate(all="ignore")
def conv(inputs, kernel, bias=None, *, strides=1, padding="valid", data_format=CHANNELS_LAST, dilation_rate=1):
    """Grouped, strided, dilated cross-correlation (spec 1.3): groups = C_in // kernel.shape[-2];
    output block g of the filters sees input block g."""
    x = to_channels_last(inputs, data_format)
    w = np.asarray(kernel, dtype=np.float64)
    rank = w.ndim - 2
    ksize = w.shape[:rank]
    strides, dilation = as_tuple(strides, rank), as_tuple(dilation_rate, rank)
    c_group, filters = w.shape[-2:]
    groups = x.shape[-1] // c_group
    f_group = filters // groups
    geo = [forward_geometry(L, k, s, d, padding) for L, k, s, d in zip(x.shape[1:-1], ksize, strides, dilation)]
    out_spatial = [o for o, _ in geo]
    xp = _padded(x, [p for _, p in geo])
    y = np.zeros((x.shape[0], *out_spatial, filters))
    for o in positions(out_spatial):
        for t in positions(ksize):
            src = [oi * s + ti * d for oi, ti, s, d in zip(o, t, strides, dilation)]
            for g in range(groups):
                cs = slice(g * c_group, (g + 1) * c_group)
                fs = slice(g * f_group, (g + 1) * f_group)
                y[at(o, fs)] += matvec(xp[at(src, cs)], w[t][:, fs])
    return from_channels_last(add_bias(y, bias), data_format)


@np.errstate(all="ignore")
def conv_transpose(inputs, kernel, bias=None, *, strides=1, padding="valid", output_padding=None,
                   data_format=CHANNELS_LAST, dilation_rate=1, groups=1):
    """Scatter definition (spec 1.3/1.5): ``full[i*s + t*d, block g] += W[t][:, block g] @ x[i, block g]``
    with W of shape ``(k.., F // groups, C_in)``, then ``y[o] = full[o + crop]`` or 0 past its end."""
    x = to_channels_last(inputs, data_format)
    w = np.asarray(kernel, dtype=np.float64)
    rank = w.ndim - 2
    strides, dilation = as_tuple(strides, rank), as_tuple(dilation_rate, rank)
    ops_ = (None,) * rank if output_padding is None else as_tuple(output_padding, rank)
    geo = [transpose_geometry(L, k, s, d, padding, op)
           for L, k, s, d, op in zip(x.shape[1:-1], w.shape[:rank], strides, dilation, ops_)]
    y = transpose_scatter(x, w, strides, dilation, groups, [o for o, _ in geo], [crop for _, crop in geo])
    return from_channels_last(add_bias(y, bias), data_format)


@np.errstate(all="ignore")
def transpose_scatter(x, w, strides, dilation, groups, out_spatial, crop):
    """The transposed conv of a channels-last ``x`` for an explicit output size and left crop:
    ``full[i*s + t*d] += W[t] @ x[i]`` (per group), then ``y[o] = full[o + crop]`` or 0 past its end."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    rank = w.ndim - 2
    ksize = w.shape[:rank]
    f_group = w.shape[-2]
    c_group = x.shape[-1] // groups
    in_spatial = x.shape[1:-1]
    full_spatial = [(L - 1) * s + dilated_extent(k, d) for L, k, s, d in zip(in_spatial, ksize, strides, dilation)]
    full = np.zeros((x.shape[0], *full_spatial, f_group * groups))
    for i in positions(in_spatial):
        for t in positions(ksize):
            dst = [ii * s + ti * d for ii, ti, s, d in zip(i, t, strides, dilation)]
            for g in range(groups):
                cs = slice(g * c_group, (g + 1) * c_group)
                fs = slice(g * f_group, (g + 1) * f_group)
                full[at(dst, fs)] += matvec(x[at(i, cs)], w[t][:, cs].T)
    y = np.zeros((x.shape[0], *out_spatial, f_group * groups))
    for o in positions(out_spatial):
        src = [oi + c for oi, c in zip(o, crop)]
        if all(si < n for si, n in zip(src, full_spatial)):
            y[at(o)] = full[at(src)]
    return y


@np.errstate(all="ignore")
def depthwise_conv(inputs, kernel, bias=None, *, strides=1, padding="valid", data_format=CHANNELS_LAST,
                   dilation_rate=1):
    """``y[.., c*dm + m] = sum_t x[.., c] W[t, c, m]`` (spec 1.3)."""
    x = to_channels_last(inputs, data_format)
    w = np.asarray(kernel, dtype=np.float64)
    rank = w.ndim - 2
    ksize = w.shape[:rank]
    strides, dilation = as_tuple(strides, rank), as_tuple(dilation_rate, rank)
    channels, dm = w.shape[-2:]
    geo = [forward_geometry(L, k, s, d, padding) for L, k, s, d in zip(x.shape[1:-1], ksize, strides, dilation)]
    out_spatial = [o for o, _ in geo]
    xp = _padded(x, [p for _, p in geo])
    n = x.shape[0]
    y = np.zeros((n, *out_spatial, channels * dm))
    for o in positions(out_spatial):
        for t in positions(ksize):
            src = [oi * s + ti * d for oi, ti, s, d in zip(o, t, strides, dilation)]
            y[at(o)] += (xp[at(src)][:, :, None] * w[t][None]).reshape(n, channels * dm)
    return from_channels_last(add_bias(y, bias), data_format)


@np.errstate(all="ignore")
def separable_conv(inputs, depthwise_kernel, pointwise_kernel, bias=None, *, strides=1, padding="valid",
                   data_format=CHANNELS_LAST, dilation_rate=1):
    """Depthwise (strides, padding, dilation), then a 1x1 stride-1 conv, then bias (spec 2.4)."""
    mid = depthwise_conv(inputs, depthwise_kernel, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate)
    return conv(mid, pointwise_kernel, bias, data_format=data_format)


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------
@np.errstate(all="ignore")
def pool(inputs, mode, pool_size, strides=None, padding="valid", data_format=CHANNELS_LAST):
    """Max ignores padded cells; average divides by the number of real cells (spec 2.5)."""
    x = to_channels_last(inputs, data_format)
    rank = x.ndim - 2
    pool_size = as_tuple(pool_size, rank)
    strides = pool_size if strides is None else as_tuple(strides, rank)
    geo = [pool_geometry(L, p, s, padding) for L, p, s in zip(x.shape[1:-1], pool_size, strides)]
    y = np.zeros((x.shape[0], *[o for o, _ in geo], x.shape[-1]))
    for o in positions(y.shape[1:-1]):
        window = []
        for oi, s, p, L, (_, (before, _)) in zip(o, strides, pool_size, x.shape[1:-1], geo):
            start = oi * s - before
            window.append(slice(max(start, 0), min(start + p, L)))
        cells = x[at(window)].reshape(x.shape[0], -1, x.shape[-1])
        assert cells.shape[1] > 0, "a pooling window with no real cell"
        y[at(o)] = cells.max(axis=1) if mode == "max" else cells.sum(axis=1) / cells.shape[1]
    return from_channels_last(y, data_format)


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=CHANNELS_LAST):
    return pool(inputs, "max", pool_size, strides, padding, data_format)


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=CHANNELS_LAST):
    return pool(inputs, "average", pool_size, strides, padding, data_format)


# --------------------------------------------------------------------------------------------
# Locally connected (Keras 2 implementation=1 layout)
# --------------------------------------------------------------------------------------------
@np.errstate(all="ignore")
def locally_connected(inputs, kernel, bias=None, *, kernel_size, strides=1, padding="valid",
                      data_format=CHANNELS_LAST):
    """Unshared weights: ``y[p] = patch[p] @ kernel[p]``, positions row-major.

    The patch is flattened ``(*k, C)`` for channels_last and ``(C, *k)`` for channels_first
    (spec 2.9); window p starts at ``p*s`` ('valid') or ``p*s - k//2`` ('same'); cells outside
    the input are zeros. The bias is per position: ``(*out_spatial, F)``, and for channels_first
    it is added transposed (bias[p, f] to output channel f at position p), as the gpuconv engine
    contract says. (Keras 2's bias_add instead *reshaped* it to (F, *out_spatial).)
    """
    x = to_channels_last(inputs, data_format)
    w = np.asarray(kernel, dtype=np.float64)
    rank = x.ndim - 2
    ksize = as_tuple(kernel_size, rank)
    strides = as_tuple(strides, rank)
    n, channels, filters = x.shape[0], x.shape[-1], w.shape[-1]
    if data_format == CHANNELS_FIRST:  # rows (C, *k) -> (*k, C), the channels_last order
        w = np.moveaxis(w.reshape(w.shape[0], channels, *ksize, filters), 1, -2).reshape(w.shape)
    geo = [locally_connected_geometry(L, k, s, padding) for L, k, s in zip(x.shape[1:-1], ksize, strides)]
    out_spatial = [o for o, _ in geo]
    y = np.zeros((n, *out_spatial, filters))
    for index, p in enumerate(positions(out_spatial)):
        patch = np.zeros((n, *ksize, channels))
        for t in positions(ksize):
            src = [pi * s + offset + ti for pi, s, (_, offset), ti in zip(p, strides, geo, t)]
            if all(0 <= si < L for si, L in zip(src, x.shape[1:-1])):
                patch[at(t)] = x[at(src)]
        y[at(p)] = matvec(patch.reshape(n, -1), w[index])
    return from_channels_last(add_bias(y, bias), data_format)


# --------------------------------------------------------------------------------------------
# Upsampling
# --------------------------------------------------------------------------------------------
def linear_taps(out_index, scale, length):
    """Half-pixel source coordinate with edge clamp: ((i0, 1 - f), (i1, f)) (spec 2.8)."""
    src = max((out_index + 0.5) / scale - 0.5, 0.0)
    i0 = min(int(math.floor(src)), length - 1)
    i1 = min(i0 + 1, length - 1)
    frac = src - i0 if i0 < length - 1 else 0.0
    return (i0, 1.0 - frac), (i1, frac)


@np.errstate(all="ignore")
def upsample(inputs, size, interpolation="nearest", data_format=CHANNELS_LAST):
    """'nearest' replicates; 'bilinear'/'trilinear' interpolate each axis with half-pixel centres."""
    x = to_channels_last(inputs, data_format)
    size = tuple(size)
    in_spatial = x.shape[1:-1]
    out_spatial = [L * s for L, s in zip(in_spatial, size)]
    y = np.zeros((x.shape[0], *out_spatial, x.shape[-1]))
    for o in positions(out_spatial):
        if interpolation == "nearest":
            y[at(o)] = x[at([oi // s for oi, s in zip(o, size)])]
            continue
        taps = [linear_taps(oi, s, L) for oi, s, L in zip(o, size, in_spatial)]
        for corner in itertools.product(*taps):
            weight = math.prod(wt for _, wt in corner)
            y[at(o)] += weight * x[at([i for i, _ in corner])]
    return from_channels_last(y, data_format)


# --------------------------------------------------------------------------------------------
# Activations the cores can apply after the bias (Keras' definitions)
# --------------------------------------------------------------------------------------------
ACTIVATIONS = {
    None: lambda y: y,
    "linear": lambda y: y,
    "relu": lambda y: np.maximum(y, 0.0),  # NaN stays NaN
    "sigmoid": lambda y: 1.0 / (1.0 + np.exp(-y)),
    "tanh": np.tanh,
    "elu": lambda y: np.where(y > 0, y, np.expm1(np.minimum(y, 0.0))),
}


@np.errstate(all="ignore")
def activate(y, activation):
    return ACTIVATIONS[activation](np.asarray(y, dtype=np.float64))

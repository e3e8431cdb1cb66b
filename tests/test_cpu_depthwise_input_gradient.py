"""The NumPy engine's transposed convolution with one input channel per group in channels_last
(a depthwise convolution's input gradient) scatters ``x`` times each tap's weights in contiguous
channel runs; the channels_first path keeps the per-group GEMM form. Both form each product with
one rounding and add the taps in the same order, so the two layouts must agree bitwise: a
regression here means the fast path changed the arithmetic, not just the memory order."""
import itertools

import engine_calls as ec
import numpy as np
import pytest

from gpuconv.cpu import engine as eng
from gpuconv.geometry import effective_kernel

CASES = [
    # (rank, spatial, kernel, strides, dilation, crop at the start, depth multiplier)
    (1, (9,), (3,), (1,), (1,), 1, 1),
    (1, (7,), (4,), (3,), (1,), 0, 3),
    (2, (6, 5), (3, 3), (1, 1), (1, 1), 1, 1),
    (2, (6, 5), (3, 3), (2, 2), (1, 1), 1, 3),
    (2, (5, 6), (2, 3), (2, 1), (2, 1), 0, 2),
    (2, (4, 4), (2, 2), (2, 2), (1, 1), 0, 1),   # k == s: disjoint taps, assigned
    (3, (3, 4, 3), (3, 2, 3), (1, 2, 1), (1, 1, 2), 1, 2),
]


@pytest.mark.parametrize("rank, spatial, ksize, strides, dilation, crop, dm", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_channels_last_scatter_is_bitwise_the_channels_first_gemm_form(rng, rank, spatial, ksize, strides, dilation,
                                                                         crop, dm, dtype):
    n, c = 3, 5
    x = rng.standard_normal((n,) + spatial + (c,)).astype(dtype)
    kernel = rng.standard_normal(ksize + (dm, c)).astype(dtype)  # (*k, Fg, C): one input channel per group
    full = tuple((i - 1) * s + effective_kernel(k, d) for i, k, s, d in zip(spatial, ksize, strides, dilation))
    out_spatial = tuple(f - 2 * crop for f in full)
    geometry = dict(strides=strides, dilation=dilation, groups=c, out_spatial=out_spatial, crop=(crop,) * rank)
    last = ec.conv_transpose(eng, x, kernel, None, channels_last=True, **geometry)
    first = ec.conv_transpose(eng, np.ascontiguousarray(np.moveaxis(x, -1, 1)), kernel, None, channels_last=False,
                              **geometry)
    assert last.shape == (n,) + out_spatial + (c * dm,)
    np.testing.assert_array_equal(last, np.moveaxis(first, 1, -1))
    # and both are the transposed convolution: each output cell the sum of its taps' products
    want = np.zeros((n,) + full + (c, dm))
    w64 = np.moveaxis(kernel.astype(np.float64), -1, -2)  # (*k, C, dm)
    for i in itertools.product(*(range(s) for s in spatial)):
        for t in itertools.product(*(range(k) for k in ksize)):
            o = tuple(a * s + b * d for a, b, s, d in zip(i, t, strides, dilation))
            want[(slice(None),) + o] += x.astype(np.float64)[(slice(None),) + i][..., None] * w64[t]
    cut = (slice(None),) + tuple(slice(crop, crop + o) for o in out_spatial)
    want = want[cut].reshape(last.shape)
    np.testing.assert_allclose(last.astype(np.float64), want, rtol=0, atol=(2e-2 if dtype == "float16" else 1e-5) * np.abs(want).max())

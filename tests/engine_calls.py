"""Calling an engine function directly with the geometry spelled out, as the tests of engine
internals do: each function builds the problem (``gpuconv.problems``) that ``gpuconv.ops`` would
build for these resolved arguments and calls ``engine.<op>(problem, arrays...)``.

``padding`` is the ``(before, after)`` pairs; the output extents follow from them exactly as a
'valid' window over the padded input (the problem then derives the same trailing padding).
"""
import math

import numpy as np

from gpuconv import geometry as g
from gpuconv import problems as P


def _layout(x, channels_last):
    spatial = tuple(x.shape[1:-1]) if channels_last else tuple(x.shape[2:])
    channels = x.shape[-1] if channels_last else x.shape[1]
    return int(x.shape[0]), int(channels), spatial


def _window_problem(kind, x, ksize, bias, strides, padding, dilation, channels_last, activation, out_channels,
                    groups=1, depth_multiplier=1):
    n, c, spatial = _layout(x, channels_last)
    out = g.padded_output_spatial(spatial, ksize, strides, padding, dilation)
    return P.ConvProblem(kind=kind, batch=n, in_channels=c, out_channels=int(out_channels), in_spatial=spatial,
                         out_spatial=tuple(out), kernel_size=tuple(int(k) for k in ksize), strides=tuple(strides),
                         dilation=tuple(dilation), pad_before=tuple(p[0] for p in padding), groups=int(groups),
                         depth_multiplier=int(depth_multiplier), channels_last=bool(channels_last),
                         dtype=np.dtype(x.dtype), activation=activation, has_bias=bias is not None)


def conv_problem(x, kernel, bias, *, strides, padding, dilation, groups, channels_last, activation=None):
    rank = kernel.ndim - 2
    return _window_problem(P.CONV, x, kernel.shape[:rank], bias, strides, padding, dilation, channels_last,
                           activation, kernel.shape[-1], groups=groups)


def conv(engine, x, kernel, bias, **geometry):
    return engine.conv(conv_problem(x, kernel, bias, **geometry), x, kernel, bias)


def depthwise_problem(x, kernel, bias, *, strides, padding, dilation, channels_last, activation=None):
    rank = kernel.ndim - 2
    return _window_problem(P.DEPTHWISE, x, kernel.shape[:rank], bias, strides, padding, dilation, channels_last,
                           activation, kernel.shape[-2] * kernel.shape[-1], depth_multiplier=kernel.shape[-1])


def depthwise_conv(engine, x, kernel, bias, **geometry):
    return engine.depthwise_conv(depthwise_problem(x, kernel, bias, **geometry), x, kernel, bias)


def separable_problem(x, depthwise_kernel, pointwise_kernel, bias, *, strides, padding, dilation, channels_last,
                      activation=None):
    rank = depthwise_kernel.ndim - 2
    return _window_problem(P.SEPARABLE, x, depthwise_kernel.shape[:rank], bias, strides, padding, dilation,
                           channels_last, activation, pointwise_kernel.shape[-1],
                           depth_multiplier=depthwise_kernel.shape[-1])


def separable_conv(engine, x, depthwise_kernel, pointwise_kernel, bias, **geometry):
    problem = separable_problem(x, depthwise_kernel, pointwise_kernel, bias, **geometry)
    return engine.separable_conv(problem, x, depthwise_kernel, pointwise_kernel, bias)


def conv_transpose_problem(x, kernel, bias, *, strides, dilation, groups, out_spatial, crop, channels_last,
                           activation=None):
    rank = kernel.ndim - 2
    n, c, spatial = _layout(x, channels_last)
    return P.ConvProblem(kind=P.CONV_TRANSPOSE, batch=n, in_channels=c, out_channels=int(kernel.shape[-2] * groups),
                         in_spatial=spatial, out_spatial=tuple(out_spatial),
                         kernel_size=tuple(int(k) for k in kernel.shape[:rank]), strides=tuple(strides),
                         dilation=tuple(dilation), pad_before=tuple(crop), groups=int(groups),
                         channels_last=bool(channels_last), dtype=np.dtype(x.dtype), activation=activation,
                         has_bias=bias is not None)


def conv_transpose(engine, x, kernel, bias, **geometry):
    return engine.conv_transpose(conv_transpose_problem(x, kernel, bias, **geometry), x, kernel, bias)


def pool_problem(x, *, mode, pool_size, strides, padding, channels_last):
    n, c, spatial = _layout(x, channels_last)
    out = g.padded_output_spatial(spatial, pool_size, strides, padding, (1,) * len(pool_size))
    return P.PoolProblem(mode=mode, batch=n, channels=c, in_spatial=spatial, out_spatial=tuple(out),
                         pool_size=tuple(pool_size), strides=tuple(strides), pad_before=tuple(p[0] for p in padding),
                         channels_last=bool(channels_last), dtype=np.dtype(x.dtype))


def pool(engine, x, **geometry):
    return engine.pool(pool_problem(x, **geometry), x)


def locally_connected_problem(x, kernel, bias, *, kernel_size, strides, padding, out_spatial, channels_last,
                              activation=None):
    n, c, spatial = _layout(x, channels_last)
    assert math.prod(out_spatial) == kernel.shape[0]
    return P.LocalProblem(batch=n, in_channels=c, out_channels=int(kernel.shape[-1]), in_spatial=spatial,
                          out_spatial=tuple(out_spatial), kernel_size=tuple(kernel_size), strides=tuple(strides),
                          pad_before=tuple(p[0] for p in padding), channels_last=bool(channels_last),
                          dtype=np.dtype(x.dtype), activation=activation, has_bias=bias is not None)


def locally_connected(engine, x, kernel, bias, **geometry):
    return engine.locally_connected(locally_connected_problem(x, kernel, bias, **geometry), x, kernel, bias)


def upsample_problem(x, *, size, interpolation, channels_last):
    n, c, spatial = _layout(x, channels_last)
    return P.ResampleProblem(batch=n, channels=c, in_spatial=spatial,
                             out_spatial=tuple(L * s for L, s in zip(spatial, size)), size=tuple(size),
                             interpolation=interpolation, channels_last=bool(channels_last), dtype=np.dtype(x.dtype))


def upsample(engine, x, **geometry):
    return engine.upsample(upsample_problem(x, **geometry), x)

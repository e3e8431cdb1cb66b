"""The typed problems that ``gpuconv.ops`` builds once and every engine takes.

Why they exist: before them each engine got loose keyword arguments that differed per op (pad
pairs here, an output size and a crop there) and recomputed the output size itself, so one
formula lived in four places and the engines could disagree. A problem is frozen and complete:
every extent an engine or a kernel needs is a field or a property derived from the fields, the
arguments are already canonical (Python ints, tuples of ``rank``), and nothing downstream
normalises or recomputes a size again.

One problem family per kind of work:
- :class:`ConvProblem`: dense/grouped convolution, depthwise, separable and transposed
  convolution. All four are windows of ``kernel_size`` taps, strides and dilation between a
  *wide* side (the convolution's input) and a *narrow* side (its output): output ``o``, tap
  ``t`` reads input ``o*s + t*d - pad_before``. A transposed convolution is the adjoint of such
  a convolution, so it is described by the same fields with the two sides exchanged: its input
  is the narrow side, its output the wide side, and ``pad_before`` is the crop of the full
  scatter result (``y[o] = full[o + crop]``). :meth:`ConvProblem.adjoint` turns one into the
  other; the gradients of the next issue are built on exactly that (the input gradient of a
  convolution is the transposed convolution of ``problem.adjoint()``).
- :class:`PoolProblem`: max and average pooling windows (stride and padding, no dilation).
- :class:`LocalProblem`: locally connected (unshared weights, Keras 2 layout).
- :class:`ResampleProblem`: upsampling by integer factors (nearest, bilinear, trilinear).

Only the leading padding is stored: the output extent bounds the window, so the trailing zeros
a window reads past the input's end follow from the other fields (``pad_after``), and two
descriptions of one problem cannot disagree.
"""
import dataclasses
import math

import numpy as np

CONV = "conv"
DEPTHWISE = "depthwise"
SEPARABLE = "separable"
CONV_TRANSPOSE = "conv_transpose"
CONV_KINDS = (CONV, DEPTHWISE, SEPARABLE, CONV_TRANSPOSE)

POOL_MODES = ("max", "average")
INTERPOLATIONS = {1: ("nearest",), 2: ("nearest", "bilinear"), 3: ("nearest", "trilinear")}


def _trailing_padding(wide, narrow, kernel_size, strides, dilation, pad_before):
    """Zeros past the wide side's end that the last window reads (never negative)."""
    return tuple(
        max(0, (o - 1) * s + (k - 1) * d + 1 - p - L)
        for L, o, k, s, d, p in zip(wide, narrow, kernel_size, strides, dilation, pad_before)
    )


def _shape(batch, channels, spatial, channels_last):
    return (batch, *spatial, channels) if channels_last else (batch, channels, *spatial)


@dataclasses.dataclass(frozen=True)
class _Tensors:
    """What every problem has: the batch, the spatial extents of input and output, the layout
    and the dtype the engine computes in (float16 accumulates in float32 inside the engines)."""

    batch: int
    in_spatial: tuple
    out_spatial: tuple
    channels_last: bool
    dtype: np.dtype

    @property
    def rank(self):
        return len(self.in_spatial)

    @property
    def data_format(self):
        return "channels_last" if self.channels_last else "channels_first"

    @property
    def output_positions(self):
        """Output pixels per image."""
        return math.prod(self.out_spatial)

    @property
    def output_pixels(self):
        """Output pixels of the whole batch."""
        return self.batch * self.output_positions

    @property
    def input_shape(self):
        return _shape(self.batch, self.in_channels, self.in_spatial, self.channels_last)

    @property
    def output_shape(self):
        return _shape(self.batch, self.out_channels, self.out_spatial, self.channels_last)

    # Windowed problems: the trailing padding follows from the leading one and the extents.
    def _window(self):
        """``(wide extents, narrow extents, taps, strides, dilation)`` of a windowed problem."""
        raise AttributeError(f"{type(self).__name__} has no window")

    @property
    def pad_after(self):
        return _trailing_padding(*self._window(), self.pad_before)

    @property
    def padding(self):
        """``((before, after), ...)`` zero padding of the wide side, one pair per spatial dim."""
        return tuple(zip(self.pad_before, self.pad_after))


@dataclasses.dataclass(frozen=True)
class _SameChannels(_Tensors):
    """Problems that keep the channel count (pooling, upsampling)."""

    channels: int = 0

    @property
    def in_channels(self):
        return self.channels

    @property
    def out_channels(self):
        return self.channels


@dataclasses.dataclass(frozen=True)
class ConvProblem(_Tensors):
    """A convolution-family problem (see the module docstring for the four kinds).

    ``in_channels``/``out_channels`` are the op's input and output channels (for separable,
    ``out_channels`` is the pointwise filters and ``mid_channels`` the depthwise result's);
    ``groups`` splits both for ``conv``/``conv_transpose``; ``depth_multiplier`` is the
    depthwise step's. ``activation`` is the name the engine fuses after the bias (None: none);
    it is always one of the engine's ``FUSED_ACTIVATIONS``.
    """

    kind: str = CONV
    in_channels: int = 0
    out_channels: int = 0
    kernel_size: tuple = ()
    strides: tuple = ()
    dilation: tuple = ()
    pad_before: tuple = ()
    groups: int = 1
    depth_multiplier: int = 1
    activation: str = None
    has_bias: bool = False

    @property
    def transposed(self):
        return self.kind == CONV_TRANSPOSE

    @property
    def wide_spatial(self):
        """The convolution's input extents (a transposed convolution's output)."""
        return self.out_spatial if self.transposed else self.in_spatial

    @property
    def narrow_spatial(self):
        """The convolution's output extents (a transposed convolution's input)."""
        return self.in_spatial if self.transposed else self.out_spatial

    def _window(self):
        return self.wide_spatial, self.narrow_spatial, self.kernel_size, self.strides, self.dilation

    @property
    def crop(self):
        """A transposed convolution's leading crop of its full scatter result."""
        if not self.transposed:
            raise AttributeError(f"a {self.kind!r} problem has padding, not a crop")
        return self.pad_before

    @property
    def mid_channels(self):
        """Channels after the depthwise step (depthwise, separable)."""
        return self.in_channels * self.depth_multiplier

    @property
    def channels_per_group(self):
        return self.in_channels // self.groups

    @property
    def filters_per_group(self):
        return self.out_channels // self.groups

    @property
    def kernel_shape(self):
        """The weights' shape: conv ``(*k, C // g, F)``, transposed ``(*k, F // g, C)``,
        depthwise and separable's depthwise kernel ``(*k, C, dm)``."""
        k = tuple(self.kernel_size)
        if self.kind == CONV:
            return k + (self.channels_per_group, self.out_channels)
        if self.kind == CONV_TRANSPOSE:
            return k + (self.filters_per_group, self.in_channels)
        return k + (self.in_channels, self.depth_multiplier)

    @property
    def pointwise_kernel_shape(self):
        return (1,) * self.rank + (self.mid_channels, self.out_channels)

    def adjoint(self):
        """The problem whose forward op is this one's adjoint, with the same weights: a
        convolution's transposed convolution (input and output exchanged, the padding becoming
        the crop) and back. No bias, no activation: the adjoint is a linear map."""
        if self.kind not in (CONV, CONV_TRANSPOSE):
            raise NotImplementedError(f"the adjoint of a {self.kind!r} problem is not a problem kind yet")
        return dataclasses.replace(
            self, kind=CONV_TRANSPOSE if self.kind == CONV else CONV,
            in_channels=self.out_channels, out_channels=self.in_channels,
            in_spatial=self.out_spatial, out_spatial=self.in_spatial, activation=None, has_bias=False,
        )

    def as_depthwise(self):
        """A grouped convolution with one input channel per group, as the depthwise problem it
        is (its kernel ``(*k, 1, C*m)`` is the depthwise kernel ``(*k, C, m)`` reshaped)."""
        if self.kind != CONV or self.channels_per_group != 1:
            raise ValueError(f"only a conv with one input channel per group is depthwise; received {self}")
        return dataclasses.replace(self, kind=DEPTHWISE, depth_multiplier=self.out_channels // self.groups,
                                   groups=1)


@dataclasses.dataclass(frozen=True)
class PoolProblem(_SameChannels):
    """Max (padded cells ignored) or average (divided by the real cells) pooling."""

    mode: str = "max"
    pool_size: tuple = ()
    strides: tuple = ()
    pad_before: tuple = ()

    def _window(self):
        return self.in_spatial, self.out_spatial, self.pool_size, self.strides, (1,) * self.rank


@dataclasses.dataclass(frozen=True)
class LocalProblem(_Tensors):
    """Locally connected: one weight matrix per output position, kernel
    ``(positions, prod(kernel_size) * C, F)``, patches flattened ``(*k, C)`` for channels_last
    and ``(C, *k)`` for channels_first, bias ``(*out_spatial, F)``."""

    in_channels: int = 0
    out_channels: int = 0
    kernel_size: tuple = ()
    strides: tuple = ()
    pad_before: tuple = ()
    activation: str = None
    has_bias: bool = False

    def _window(self):
        return self.in_spatial, self.out_spatial, self.kernel_size, self.strides, (1,) * self.rank

    @property
    def patch_size(self):
        return math.prod(self.kernel_size) * self.in_channels

    @property
    def kernel_shape(self):
        return (self.output_positions, self.patch_size, self.out_channels)

    @property
    def bias_shape(self):
        return (*self.out_spatial, self.out_channels)


@dataclasses.dataclass(frozen=True)
class ResampleProblem(_SameChannels):
    """Upsampling by integer ``size`` per spatial dim: 'nearest' repeats; 'bilinear' (2-D) and
    'trilinear' (3-D) interpolate with half-pixel centres and clamp at the edges."""

    size: tuple = ()
    interpolation: str = "nearest"

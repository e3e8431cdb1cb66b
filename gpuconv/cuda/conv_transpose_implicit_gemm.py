"""The transposed convolution on tensor cores: its stride phases, each a convolution run by
``kernels/conv_implicit_gemm.cu``.

``conv_transpose(problem, x, kernel, bias)`` follows the engine contract (kernel
``(*k, F // groups, C)``, channels_last, 16-bit floats, 32-bit indices); ``conv_transpose.py``
calls it where the algorithm table picks ``phase_implicit_gemm``. A convolution's input gradient
is such a transposed convolution (``conv_backward.py``), so training gets the same kernels.

The decomposition, per spatial axis (extent O of the output, k taps, stride s, dilation d, crop
c): output o receives x[i] * w[t] for every i * s + t * d = o + c. Outputs of one residue
r = (o + c) mod s (a *phase*: o = first, first + s, ...) are reached by exactly the taps with
t * d = r (mod s), which are every (s / g)-th tap from the first such one, g = gcd(s, d) (none if
g does not divide r). Over its taps, a phase is a stride-1 convolution of x: output j of the phase
reads x[j + v * (d / g) - pad] with the phase's taps in reverse order (v = 0 is the last tap), for
a leading ``pad`` that may be negative (the phase's first output reads inside x). So each phase
is a problem of the forward kernel, on the kernel's phase taps re-laid to the forward layout
``(*taps, C // groups, F)`` (a small copy of the weights), and it stores its outputs straight
into their pixels of y (``conv_implicit_gemm.OutputPlacement``: every s-th pixel from ``first``):
no inserted zeros multiplied, no phase buffers, no scatter. The phases together write every pixel
of y once; a phase that no tap reaches (k < s / g) is a launch with an empty reduction, which
writes act(bias) (0 without a bias) as the scatter result has there.

The phases are launched one after another on the stream (s_d * s_h * s_w launches; each is a
whole GEMM of ~1 / (s_d s_h s_w) of the work). Each takes the tile the table's predicates give its
own geometry (``algorithms.implicit_gemm_tile``) and split-K where its tiles are few.
"""
import dataclasses
import itertools
import math

from .. import problems
from . import algorithms, conv_implicit_gemm, tensors


@dataclasses.dataclass(frozen=True)
class AxisPhase:
    """One stride phase of one spatial axis: outputs ``first, first + stride, ...`` (``count``
    of them), reached by the taps ``first_tap + v * tap_step`` (``taps`` of them), which read
    the input ``dilation`` apart as a stride-1 convolution with leading padding ``pad``."""

    first: int
    count: int
    first_tap: int
    tap_step: int
    taps: int
    dilation: int
    pad: int

    def tap_index(self):
        """The slice of the kernel's axis that lists the phase's taps in the convolution's
        order (the last tap first)."""
        if self.taps == 0:
            return slice(0, 0)
        last = self.first_tap + (self.taps - 1) * self.tap_step
        stop = self.first_tap - self.tap_step
        return slice(last, stop if stop >= 0 else None, -self.tap_step)


def axis_phases(out_extent, kernel_size, stride, dilation, crop):
    """The ``stride`` phases of one axis, by residue r = (o + crop) mod stride."""
    g = math.gcd(stride, dilation)
    tap_step, phase_dilation = stride // g, dilation // g
    phases = []
    for r in range(stride):
        first = (r - crop) % stride
        count = max(0, -(-(out_extent - first) // stride))
        first_tap = next((t for t in range(tap_step) if (t * dilation - r) % stride == 0), None)
        taps = 0 if first_tap is None else max(0, -(-(kernel_size - first_tap) // tap_step))
        if taps == 0:
            phases.append(AxisPhase(first, count, 0, tap_step, 0, phase_dilation, 0))
            continue
        base = (first + crop - first_tap * dilation) // stride  # exact: both sides are r mod stride
        pad = (taps - 1) * phase_dilation - base
        phases.append(AxisPhase(first, count, first_tap, tap_step, taps, phase_dilation, pad))
    return tuple(phases)


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase of the whole problem (one :class:`AxisPhase` per spatial axis): the forward
    problem that computes it and where its outputs lie in y."""

    axes: tuple
    problem: problems.ConvProblem
    placement: conv_implicit_gemm.OutputPlacement


def phases(problem):
    """Every phase of the transposed convolution ``problem`` with at least one output pixel."""
    if problem.kind != problems.CONV_TRANSPOSE:
        raise ValueError(f"Invalid value for argument `problem`: expected a {problems.CONV_TRANSPOSE!r} problem. "
                         f"Received: kind={problem.kind!r}")
    per_axis = [axis_phases(*args) for args in zip(problem.out_spatial, problem.kernel_size, problem.strides,
                                                   problem.dilation, problem.crop)]
    out = []
    for axes in itertools.product(*per_axis):
        if any(a.count == 0 for a in axes):
            continue
        forward = dataclasses.replace(
            problem, kind=problems.CONV, out_spatial=tuple(a.count for a in axes),
            kernel_size=tuple(a.taps for a in axes), strides=(1,) * problem.rank,
            dilation=tuple(a.dilation for a in axes), pad_before=tuple(a.pad for a in axes))
        out.append(Phase(axes, forward, _placement(problem, axes)))
    return tuple(out)


def _placement(problem, axes):
    od, oh, ow = tensors.as3d(problem.out_spatial, 1)
    sd, sh, sw = tensors.as3d(problem.strides, 1)
    fd, fh, fw = tensors.as3d([a.first for a in axes], 0)
    return conv_implicit_gemm.OutputPlacement(strided=True, pixel_strides=(od * oh * ow, sd * oh * ow, sh * ow, sw),
                                              first_pixel=(fd * oh + fh) * ow + fw)


def phase_kernel(kernel, phase, groups):
    """The forward kernel ``(*taps, C // groups, F)`` of ``phase`` from the transposed one
    ``(*k, F // groups, C)``: its taps, in the convolution's order, with the group's channels
    and filters exchanged (a contiguous device copy)."""
    taps = tensors.view(kernel, tuple(a.tap_index() for a in phase.axes) + (slice(None), slice(None)))
    *shape, fg, c = taps.shape
    rank = len(shape)
    grouped = taps.reshape(*shape, fg, groups, c // groups)  # (*taps, Fg, groups, Cg)
    return tensors.transposed(grouped, (*range(rank), rank + 2, rank + 1, rank)).reshape(*shape, c // groups,
                                                                                          groups * fg)


def conv_transpose(problem, x, kernel, bias):
    (x, kernel, bias), y, width = conv_implicit_gemm.begin_call(problem, x, kernel, bias)
    if y.size == 0:
        return y
    from .conv import active_device_info  # conv imports the table's device lookup: imported here

    device = active_device_info()
    for phase in phases(problem):
        tile = algorithms.implicit_gemm_tile(phase.problem, problem.dtype, device, width)
        # A phase without taps never reads its weights: any valid address of the dtype will do.
        weights = phase_kernel(kernel, phase, problem.groups) if phase.problem.kernel_size.count(0) == 0 else x
        conv_implicit_gemm.run(phase.problem, x, weights, bias, y, tile, phase.placement)
    return y

"""The one contract every engine implements, and how ops finds the engine of a call.

Why a Protocol and not prose: three engines (NumPy, CUDA on CuPy, CUDA on the emulator) and,
with gradients, three entry points per op must stay interchangeable; a test checks that each
engine has every function of :class:`Engine` with exactly its signature, so one engine cannot
quietly take an argument the others do not.

The contract. ``gpuconv.ops`` has validated the arrays and built the problem
(``gpuconv.problems``); an engine gets the problem first, then the arrays, already on its
device, C-contiguous, of the problem's dtype, never empty (ops answers empty inputs without an
engine) and never to be mutated. The output is a fresh C-contiguous array of
``problem.output_shape`` in ``problem.dtype`` (float16 accumulates in float32). The bias is
``None`` exactly when ``problem.has_bias`` is false; the activation named by
``problem.activation`` is applied after the bias and is one of the engine's
``FUSED_ACTIVATIONS`` (ops applies any other itself). Engines decide only *how* to compute, never
*what*: routing one op into another (a grouped convolution with one channel per group is
depthwise) is the planner's (``gpuconv.planning``), so every engine computes the same problem.
"""
from typing import Protocol, runtime_checkable

from . import backend as _backend


@runtime_checkable
class Engine(Protocol):
    NAME: str
    FUSED_ACTIVATIONS: frozenset

    def asarray(self, x):
        """``x`` on this engine's device, C-contiguous (no copy when it already is)."""

    def conv(self, problem, x, kernel, bias):
        """kind 'conv': kernel ``(*k, C // groups, F)``, bias ``(F,)``; output channel block g
        reads input channel block g."""

    def conv_transpose(self, problem, x, kernel, bias):
        """kind 'conv_transpose', the adjoint of ``problem.adjoint()``: kernel
        ``(*k, F // groups, C)``; ``full[i*s + t*d] += W[t] x[i]`` per group, ``y[o] =
        full[o + crop]`` where that index exists, else 0 (then bias)."""

    def depthwise_conv(self, problem, x, kernel, bias):
        """kind 'depthwise': kernel ``(*k, C, dm)``, output channel ``c*dm + m``, bias ``(C*dm,)``."""

    def separable_conv(self, problem, x, depthwise_kernel, pointwise_kernel, bias):
        """kind 'separable': the depthwise step, then the pointwise ``(1,)*rank + (C*dm, F)``."""

    def pool(self, problem, x):
        """'max' ignores padded cells; 'average' divides by the number of real cells."""

    def locally_connected(self, problem, x, kernel, bias):
        """Unshared weights, ``problem.kernel_shape``, bias ``problem.bias_shape``."""

    def upsample(self, problem, x):
        """Nearest repeat or half-pixel linear interpolation with edge clamp."""

    # The backward functions no forward op can stand in for (``gpuconv.gradients`` builds every
    # gradient from these and the forward functions; input gradients of convolutions are the
    # transposed convolutions of ``problem.adjoint()``). Deterministic: a fixed reduction order.
    def conv_backward_weights(self, problem, x, dy):
        """kind 'conv': the kernel gradient ``(*k, C // groups, F)``,
        ``dW[t, c, f] = sum_{n, o} x[n, o*s + t*d - pad_before, c] dy[n, o, f]`` per group."""

    def pool_backward(self, problem, x, dy):
        """dx: max sends each output's gradient to the first maximum of its window (row-major,
        real cells only, a NaN is the maximum); average spreads ``dy / real cells``."""

    def upsample_backward(self, problem, dy):
        """dx: the exact adjoint of ``upsample``."""

    def locally_connected_backward_input(self, problem, dy, kernel):
        """dx of a locally connected op (overlapping patches accumulate)."""

    def locally_connected_backward_weights(self, problem, x, dy):
        """dW ``(positions, prod(k) * C, F)`` of a locally connected op."""

    # Training. The one exception to "never mutate": an optimizer step updates in place.
    def optimizer_update(self, rule, scalars, params, grads, slots, decays):
        """One optimizer step for all variables at once (``gpuconv.optimizers.rules`` states the
        contract): ``rule`` a key of ``RULES``, ``scalars`` {name: float} with exactly its
        scalars; ``params`` (updated IN PLACE), ``grads`` (read only, same shapes and dtypes);
        ``slots[i]`` the state arrays of ``params[i]`` in the rule's slot order (in place);
        before the rule, ``p = p * (1 - decays[i])`` (skipped for 0.0). Returns None."""


# The functions an engine must provide, in Protocol order (the conformance test reads it).
OPERATIONS = ("asarray", "conv", "conv_transpose", "depthwise_conv", "separable_conv", "pool", "locally_connected",
              "upsample", "conv_backward_weights", "pool_backward", "upsample_backward",
              "locally_connected_backward_input", "locally_connected_backward_weights", "optimizer_update")


def resolve(engine=None):
    """The engine of one call: ``None`` is the active backend's; a backend name ('numpy',
    'cuda', 'cuda-emulator', 'auto') that backend's engine, probed as ``set_backend`` would
    (without changing the global choice); anything else must implement :class:`Engine`."""
    if engine is None:
        return _backend.engine()
    if isinstance(engine, str):
        return _backend.engine_named(engine)
    missing = [name for name in OPERATIONS + ("NAME", "FUSED_ACTIVATIONS") if not hasattr(engine, name)]
    if missing:
        raise TypeError(
            f"Argument `engine` must be a backend name or implement gpuconv.engines.Engine; received "
            f"engine={engine!r}, which lacks {missing}"
        )
    return engine

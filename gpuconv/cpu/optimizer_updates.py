"""The optimizer update rules of ``gpuconv.optimizers.rules``, as vectorised array code.

Why here: this is the NumPy engine's ``optimizer_update`` and the oracle the CUDA kernels are
checked against. The functions take the array module ``xp`` so the very same statements also run
on CuPy or emulator arrays, which the optimizers use while a CUDA engine has no fused kernel.
Each statement is one statement of the rule's formula, in its order, computed in the param's dtype
(scalars are cast to it first), with in-place updates of the param and its slots.
"""
import numpy as np

from . import _parallel
from ..optimizers.rules import RULES, check_update


def fma(xp, a, b, c, out):
    """``out = a * b + c`` rounded once to ``out``'s dtype (the rules' ``fma``, torch's
    ``add_(c, a, alpha=b)``): evaluated in float64, where the product of two float32 (or float16)
    values is exact, then rounded; float64 params get the two-rounding form (no wider type)."""
    if out.dtype == xp.float64:
        xp.add(a * b, c, out=out)
        return out
    wide = xp.multiply(a, b, dtype=xp.float64)  # exact: the product of two 24-bit significands fits in 53
    xp.add(wide, c, out=wide)
    xp.copyto(out, wide, casting="same_kind")  # the one rounding, to out's dtype
    return out


def _average(xp, a, x, decay, one_minus_decay):
    """The rules' moving average: ``a = a * decay``, then ``a = fma(x, 1 - decay, a)``."""
    a *= decay
    fma(xp, x, one_minus_decay, a, out=a)


def _sgd(xp, s, p, g, state):
    fma(xp, g, -s["learning_rate"], p, out=p)


def _momentum_buffer(xp, s, g, m):
    """Keras' SGD momentum buffer: ``m = m * momentum``, ``m = fma(g, -learning_rate, m)``."""
    m *= s["momentum"]
    fma(xp, g, -s["learning_rate"], m, out=m)


def _sgd_momentum(xp, s, p, g, state):
    (m,) = state
    _momentum_buffer(xp, s, g, m)
    p += m


def _sgd_nesterov(xp, s, p, g, state):
    (m,) = state
    _momentum_buffer(xp, s, g, m)
    fma(xp, g, -s["learning_rate"], p, out=p)
    fma(xp, m, s["momentum"], p, out=p)


def _adam_moments(xp, s, g, m, v):
    _average(xp, m, g, s["beta_1"], s["one_minus_beta_1"])
    _average(xp, v, g * g, s["beta_2"], s["one_minus_beta_2"])


def _adam(xp, s, p, g, state):
    m, v = state
    _adam_moments(xp, s, g, m, v)
    p -= (m * s["alpha"]) / (xp.sqrt(v) + s["epsilon"])


def _adam_amsgrad(xp, s, p, g, state):
    m, v, v_hat = state
    _adam_moments(xp, s, g, m, v)
    xp.maximum(v_hat, v, out=v_hat)
    p -= (m * s["alpha"]) / (xp.sqrt(v_hat) + s["epsilon"])


def _rmsprop_increment(xp, s, g, v, average=None):
    """The step RMSprop takes before momentum: ``(g * lr) / sqrt(denominator)``."""
    _average(xp, v, g * g, s["rho"], s["one_minus_rho"])
    denominator = v + s["epsilon"]
    if average is not None:
        _average(xp, average, g, s["rho"], s["one_minus_rho"])
        denominator -= average * average
    return (g * s["learning_rate"]) / xp.sqrt(denominator)


def _with_momentum(s, p, increment, momentum):
    momentum *= s["momentum"]
    momentum += increment
    p -= momentum


def _rmsprop(xp, s, p, g, state):
    (v,) = state
    p -= _rmsprop_increment(xp, s, g, v)


def _rmsprop_momentum(xp, s, p, g, state):
    v, momentum = state
    _with_momentum(s, p, _rmsprop_increment(xp, s, g, v), momentum)


def _rmsprop_centered(xp, s, p, g, state):
    v, average = state
    p -= _rmsprop_increment(xp, s, g, v, average)


def _rmsprop_centered_momentum(xp, s, p, g, state):
    v, momentum, average = state
    _with_momentum(s, p, _rmsprop_increment(xp, s, g, v, average), momentum)


def _adagrad(xp, s, p, g, state):
    (accumulator,) = state
    accumulator += g * g
    p -= (g * s["learning_rate"]) / xp.sqrt(accumulator + s["epsilon"])


def _adadelta(xp, s, p, g, state):
    accumulated_grad, accumulated_delta = state
    epsilon = s["epsilon"]
    _average(xp, accumulated_grad, g * g, s["rho"], s["one_minus_rho"])
    delta = -((xp.sqrt(accumulated_delta + epsilon) * g) / xp.sqrt(accumulated_grad + epsilon))
    _average(xp, accumulated_delta, delta * delta, s["rho"], s["one_minus_rho"])
    fma(xp, delta, s["learning_rate"], p, out=p)


def _adamax(xp, s, p, g, state):
    m, norm = state
    _average(xp, m, g, s["beta_1"], s["one_minus_beta_1"])
    norm *= s["beta_2"]
    xp.maximum(norm, xp.abs(g), out=norm)
    p -= (m * s["learning_rate"]) / ((norm + s["epsilon"]) * s["one_minus_beta_1_power"])


def _nadam(xp, s, p, g, state):
    m, v = state
    _adam_moments(xp, s, g, m, v)
    m_hat = (m * s["u_t_1"]) / s["one_minus_u_product_t_1"] + (g * s["one_minus_u_t"]) / s["one_minus_u_product_t"]
    v_hat = v / s["one_minus_beta_2_power"]
    p -= (m_hat * s["learning_rate"]) / (xp.sqrt(v_hat) + s["epsilon"])


def _lion(xp, s, p, g, state):
    (m,) = state
    interpolated = m * s["beta_1"]
    update = xp.sign(fma(xp, g, s["one_minus_beta_1"], interpolated, out=interpolated))
    p -= update * s["learning_rate"]
    _average(xp, m, g, s["beta_2"], s["one_minus_beta_2"])


_UPDATES = {
    "sgd": _sgd, "sgd_momentum": _sgd_momentum, "sgd_nesterov": _sgd_nesterov,
    "adam": _adam, "adam_amsgrad": _adam_amsgrad,
    "rmsprop": _rmsprop, "rmsprop_momentum": _rmsprop_momentum, "rmsprop_centered": _rmsprop_centered,
    "rmsprop_centered_momentum": _rmsprop_centered_momentum,
    "adagrad": _adagrad, "adadelta": _adadelta, "adamax": _adamax, "nadam": _nadam, "lion": _lion,
}
assert set(_UPDATES) == set(RULES), "every rule of gpuconv.optimizers.rules needs its array code"


def _typed(scalars, dtype):
    t = np.dtype(dtype).type
    return {name: t(value) for name, value in scalars.items()}


def _update_one(xp, update, typed, p, g, state, decay):
    if decay:
        t = np.dtype(p.dtype).type
        p *= t(1) - t(decay)  # the rules' weight decay, before the rule
    update(xp, typed, p, g, state)


def apply_rule(xp, rule, scalars, params, grads, slots, decays):
    """``Engine.optimizer_update`` on arrays of module ``xp`` (see ``gpuconv.optimizers.rules``)."""
    check_update(rule, scalars, params, grads, slots, decays)
    update = _UPDATES[rule]
    for p, g, state, decay in zip(params, grads, slots, decays):
        _update_one(xp, update, _typed(scalars, p.dtype), p, g, state, decay)


# Elements of one piece of a host update: its temporaries (float64 products of ``fma`` included,
# up to ~4 arrays of 8 bytes) then stay in a core's L2, so each of a rule's dozen passes reads
# cache rather than memory. Every rule is elementwise, so a piece's results are bitwise those of
# the whole array, whatever the split. (Adam over the seed CNN's 335k params on the 2-core bench
# machine: 3.2 ms whole, 2.3 ms in pieces of 2**16; smaller pieces cost more calls than they save.)
_PIECE_ELEMENTS = 1 << 16


def _pieces(p, g, state):
    """``(p, g, state)`` as flat slices of at most ``_PIECE_ELEMENTS`` (one piece, the arrays
    themselves, unless all are C-contiguous, so that the slices are views written in place)."""
    arrays = (p, g, *state)
    if p.size <= _PIECE_ELEMENTS or not all(a.flags.c_contiguous for a in arrays):
        return [(p, g, state)]
    flat = [a.reshape(-1) for a in arrays]
    return [(flat[0][i:i + _PIECE_ELEMENTS], flat[1][i:i + _PIECE_ELEMENTS], [f[i:i + _PIECE_ELEMENTS] for f in flat[2:]])
            for i in range(0, p.size, _PIECE_ELEMENTS)]


def optimizer_update(rule, scalars, params, grads, slots, decays):
    """The NumPy engine's ``optimizer_update``: host arrays, updated in place, in cache-sized
    pieces spread over the engine's threads (``_parallel``; pieces never overlap)."""
    check_update(rule, scalars, params, grads, slots, decays)
    update = _UPDATES[rule]
    typed = {}
    work = []
    for p, g, state, decay in zip(params, grads, slots, decays):
        t = typed.setdefault(np.dtype(p.dtype), _typed(scalars, p.dtype))
        work.extend((t, piece, decay) for piece in _pieces(p, g, state))
    _parallel.run(lambda job: _update_one(np, update, job[0], *job[1], job[2]), work)

"""The per-element update rules of the optimizers: the contract between the optimizer classes and
the engines that run the arithmetic (``Engine.optimizer_update``).

Why a table and not code: the NumPy engine, the CUDA kernel (one fused launch over all variables
of a step) and the xp-generic fallback must compute the very same thing, in the same order, so
that float32 results agree with Keras 3.15's torch backend (``keras/src/backend/torch/
optimizers``) to rounding. This file is that single statement; keep it stable once written.

The contract of ``engine.optimizer_update(rule, scalars, params, grads, slots, decays)``:

- ``rule`` is a key of :data:`RULES`.
- ``scalars`` is a dict holding exactly ``RULES[rule].scalars``, each a Python float. The host has
  already done every computation that involves scalars only (bias corrections, ``1 - beta``,
  Nadam's momentum-cache products), in the dtype of the first param as Keras' torch backend
  does, so each value is exactly representable in that dtype. The engine converts each scalar
  to the param's dtype ``T`` (exact) and never combines two scalars itself.
- ``params[i]`` is updated in place (the one exception to "an engine never mutates its inputs");
  ``grads[i]`` has the same shape and dtype and is read only; ``slots[i]`` lists the per-variable
  state arrays of ``params[i]`` in ``RULES[rule].slots`` order, all updated in place.
- ``decays[i]`` is a float: before the rule, ``p = p * (1 - decays[i])``, where ``1 - decays[i]``
  is rounded to ``T`` first and the product rounded once (Keras' torch backend,
  ``_foreach_mul_(p, 1 - weight_decay * lr)``; the host passes ``decay = weight_decay * lr``
  computed in float32, or ``0.0`` for a variable excluded from decay: then skip it).
- Returns None.

Reading a formula: statements run top to bottom for each element; ``p`` is the param, ``g`` its
gradient, slot names are the state arrays, other names are scalars. Arithmetic is in ``T``, the
param's dtype (float16 included: Keras computes in the variable's dtype), and every operator
``* / + -`` and ``sqrt`` (correctly rounded) rounds to ``T`` on its own, in the order the
parentheses and the usual precedence give: no contraction into fused multiply-adds (CUDA:
``__fmul_rn``/``__fadd_rn`` or ``--fmad=false``), except where a formula says ``fma(a, b, c)``:
``a * b + c`` rounded once (C's ``fma``, CUDA's ``fmaf``), which is what torch's
``add_(c, a, alpha=b)`` computes on the CPU. ``abs``, ``max`` (NaN-propagating, like
torch.maximum) and ``sign`` (0 -> 0, NaN -> NaN) are elementwise. Where a slot and a scalar share
a name (SGD's and RMSprop's ``momentum``), the formula writes the slot as ``momentum_slot``.
Followed exactly, float32 results equal Keras' bit for bit, except through ``sqrt``: torch's
vectorised float32 sqrt on x86 CPUs is not always correctly rounded (one unit in the last place
on about 0.6% of elements), and gradient clipping's norms depend on the summation order. (The
NumPy engine evaluates ``fma`` in float64 and rounds once: exact for float32 and float16 up to a
double rounding too rare to matter.)
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One update rule: ``slots`` (state array names, in the order the engine receives them),
    ``scalars`` (the host-computed floats it reads) and ``formula`` (the exact element update)."""
    slots: tuple
    scalars: tuple
    formula: str


# Statements several rules share (the formulas below are these strings put together).
_SGD_BUFFER = "momentum_slot = momentum_slot * momentum\nmomentum_slot = fma(g, -learning_rate, momentum_slot)\n"
_FIRST_MOMENT = "momentum = momentum * beta_1\nmomentum = fma(g, one_minus_beta_1, momentum)\n"
_ADAM_MOMENTS = _FIRST_MOMENT + "velocity = velocity * beta_2\nvelocity = fma(g * g, one_minus_beta_2, velocity)\n"
_ADAM_SCALARS = ("alpha", "beta_1", "one_minus_beta_1", "beta_2", "one_minus_beta_2", "epsilon")
_RMS_VELOCITY = "velocity = velocity * rho\nvelocity = fma(g * g, one_minus_rho, velocity)\n"
_RMS_CENTERED = (
    "average_gradient = average_gradient * rho\n"
    "average_gradient = fma(g, one_minus_rho, average_gradient)\n"
    "denominator = (velocity + epsilon) - (average_gradient * average_gradient)\n"
)
_RMS_MOMENTUM = (
    "momentum_slot = momentum_slot * momentum\nmomentum_slot = momentum_slot + increment\np = p - momentum_slot"
)
_RMS_SCALARS = ("learning_rate", "rho", "one_minus_rho", "epsilon")

RULES = {
    "sgd": Rule(slots=(), scalars=("learning_rate",), formula="p = fma(g, -learning_rate, p)"),
    "sgd_momentum": Rule(slots=("momentum",), scalars=("learning_rate", "momentum"),
                         formula=_SGD_BUFFER + "p = p + momentum_slot"),
    "sgd_nesterov": Rule(slots=("momentum",), scalars=("learning_rate", "momentum"),
                         formula=_SGD_BUFFER + "p = fma(g, -learning_rate, p)\np = fma(momentum_slot, momentum, p)"),
    # alpha = learning_rate * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t), t = iterations + 1.
    "adam": Rule(slots=("momentum", "velocity"), scalars=_ADAM_SCALARS,
                 formula=_ADAM_MOMENTS + "p = p - (momentum * alpha) / (sqrt(velocity) + epsilon)"),
    "adam_amsgrad": Rule(slots=("momentum", "velocity", "velocity_hat"), scalars=_ADAM_SCALARS,
                         formula=_ADAM_MOMENTS + "velocity_hat = max(velocity_hat, velocity)\n"
                                                 "p = p - (momentum * alpha) / (sqrt(velocity_hat) + epsilon)"),
    "rmsprop": Rule(slots=("velocity",), scalars=_RMS_SCALARS,
                    formula=_RMS_VELOCITY + "p = p - (g * learning_rate) / sqrt(velocity + epsilon)"),
    "rmsprop_momentum": Rule(slots=("velocity", "momentum"), scalars=_RMS_SCALARS + ("momentum",),
                             formula=_RMS_VELOCITY + "increment = (g * learning_rate) / sqrt(velocity + epsilon)\n"
                                     + _RMS_MOMENTUM),
    "rmsprop_centered": Rule(slots=("velocity", "average_gradient"), scalars=_RMS_SCALARS,
                             formula=_RMS_VELOCITY + _RMS_CENTERED + "p = p - (g * learning_rate) / sqrt(denominator)"),
    "rmsprop_centered_momentum": Rule(
        slots=("velocity", "momentum", "average_gradient"), scalars=_RMS_SCALARS + ("momentum",),
        formula=(_RMS_VELOCITY + _RMS_CENTERED + "increment = (g * learning_rate) / sqrt(denominator)\n"
                 + _RMS_MOMENTUM)),
    "adagrad": Rule(slots=("accumulator",), scalars=("learning_rate", "epsilon"),
                    formula="accumulator = accumulator + (g * g)\n"
                            "p = p - (g * learning_rate) / sqrt(accumulator + epsilon)"),
    "adadelta": Rule(
        slots=("accumulated_grad", "accumulated_delta_var"), scalars=_RMS_SCALARS,
        formula=(
            "accumulated_grad = accumulated_grad * rho\n"
            "accumulated_grad = fma(g * g, one_minus_rho, accumulated_grad)\n"
            "delta = -((sqrt(accumulated_delta_var + epsilon) * g) / sqrt(accumulated_grad + epsilon))\n"
            "accumulated_delta_var = accumulated_delta_var * rho\n"
            "accumulated_delta_var = fma(delta * delta, one_minus_rho, accumulated_delta_var)\n"
            "p = fma(delta, learning_rate, p)"
        ),
    ),
    # one_minus_beta_1_power = 1 - beta_1 ** t, t = iterations + 1.
    "adamax": Rule(
        slots=("momentum", "norm"),
        scalars=("learning_rate", "beta_1", "one_minus_beta_1", "beta_2", "epsilon", "one_minus_beta_1_power"),
        formula=_FIRST_MOMENT + "norm = norm * beta_2\nnorm = max(norm, abs(g))\n"
                                "p = p - (momentum * learning_rate) / ((norm + epsilon) * one_minus_beta_1_power)",
    ),
    # With t = iterations + 1: u_t = beta_1 * (1 - 0.5 * 0.96 ** t), u_t_1 the same at t + 1,
    # u_product_t = (previous u_product) * u_t, u_product_t_1 = u_product_t * u_t_1.
    "nadam": Rule(
        slots=("momentum", "velocity"),
        scalars=("learning_rate", "beta_1", "one_minus_beta_1", "beta_2", "one_minus_beta_2", "epsilon",
                 "u_t_1", "one_minus_u_product_t_1", "one_minus_u_t", "one_minus_u_product_t",
                 "one_minus_beta_2_power"),
        formula=_ADAM_MOMENTS + (
            "m_hat = (momentum * u_t_1) / one_minus_u_product_t_1 + (g * one_minus_u_t) / one_minus_u_product_t\n"
            "v_hat = velocity / one_minus_beta_2_power\n"
            "p = p - (m_hat * learning_rate) / (sqrt(v_hat) + epsilon)"
        ),
    ),
    "lion": Rule(
        slots=("momentum",),
        scalars=("learning_rate", "beta_1", "one_minus_beta_1", "beta_2", "one_minus_beta_2"),
        formula=(
            "update = sign(fma(g, one_minus_beta_1, momentum * beta_1))\n"
            "p = p - (update * learning_rate)\n"
            "momentum = momentum * beta_2\n"
            "momentum = fma(g, one_minus_beta_2, momentum)"
        ),
    ),
}


def check_update(rule, scalars, params, grads, slots, decays):
    """Refuse a malformed ``optimizer_update`` call before any array is touched (every engine
    calls this first, so a half-applied step cannot happen): an unknown rule, scalars that are
    not exactly the rule's, or lists whose lengths, shapes or dtypes disagree."""
    if rule not in RULES:
        raise ValueError(f"Argument `rule` must be one of {sorted(RULES)}. Received: rule={rule!r}")
    expected = RULES[rule]
    if set(scalars) != set(expected.scalars):
        raise ValueError(
            f"Rule {rule!r} takes the scalars {list(expected.scalars)}. Received: scalars={sorted(scalars)}"
        )
    counts = {"grads": len(grads), "slots": len(slots), "decays": len(decays)}
    if any(n != len(params) for n in counts.values()):
        raise ValueError(f"Got {len(params)} params but {counts}: one of each is needed per param.")
    for i, (p, g, state) in enumerate(zip(params, grads, slots)):
        if tuple(g.shape) != tuple(p.shape) or g.dtype != p.dtype:
            raise ValueError(
                f"Gradient {i} has shape {tuple(g.shape)} and dtype {g.dtype}; its param has shape "
                f"{tuple(p.shape)} and dtype {p.dtype}."
            )
        if len(state) != len(expected.slots):
            raise ValueError(
                f"Rule {rule!r} keeps the slots {list(expected.slots)} per param; param {i} got {len(state)}."
            )
        for name, s in zip(expected.slots, state):
            if tuple(s.shape) != tuple(p.shape) or s.dtype != p.dtype:
                raise ValueError(
                    f"Slot {name!r} of param {i} has shape {tuple(s.shape)} and dtype {s.dtype}; the param "
                    f"has shape {tuple(p.shape)} and dtype {p.dtype}."
                )

"""Inputs of optimizer-update tests: plausible scalars and slot states for each rule of
``gpuconv.optimizers.rules``, shared by tests/test_cuda_optimizer_updates.py and the
instantiation sweep (tests/test_cuda_gpu_instantiations.py).

Why a module: the values must respect each rule's domain (a velocity or an accumulator is never
negative, so its square root exists; a centered RMSprop's mean gradient stays below the root of
its velocity) and every scalar must be exactly representable in the param's dtype, as the
contract of ``Engine.optimizer_update`` says the host guarantees.
"""
import numpy as np

from gpuconv.optimizers.rules import RULES

# Typical values of Keras' defaults and of a few steps into training (t = 3).
SCALAR_VALUES = {
    "learning_rate": 0.01, "alpha": 0.003, "momentum": 0.9, "epsilon": 1e-7,
    "beta_1": 0.9, "one_minus_beta_1": 0.1, "beta_2": 0.999, "one_minus_beta_2": 0.001,
    "rho": 0.9, "one_minus_rho": 0.1, "one_minus_beta_1_power": 0.271, "one_minus_beta_2_power": 0.003,
    "u_t_1": 0.4725, "one_minus_u_product_t_1": 0.9, "one_minus_u_t": 0.55, "one_minus_u_product_t": 0.8,
}
# Slots that hold squares or norms (never negative); every other slot is a signed average.
NON_NEGATIVE_SLOTS = ("velocity", "velocity_hat", "accumulator", "accumulated_grad", "accumulated_delta_var", "norm")


def scalars_for(rule, dtype):
    """{name: float} of ``rule``, each value rounded to ``dtype``."""
    t = np.dtype(dtype).type
    return {name: float(t(SCALAR_VALUES[name])) for name in RULES[rule].scalars}


def initial_slots(rule, shape, dtype, rng):
    """Host arrays of ``rule``'s slots for a param of ``shape``: non-negative ones in [0.5, 1.5),
    signed ones small normals (so a centered denominator stays positive)."""
    out = []
    for name in RULES[rule].slots:
        if name in NON_NEGATIVE_SLOTS:
            out.append(rng.uniform(0.5, 1.5, shape).astype(dtype))
        else:
            out.append((0.1 * rng.standard_normal(shape)).astype(dtype))
    return out


def make_case(rule, dtype, rng, sizes):
    """Host (params, grads, slots) of ``rule`` for ``sizes``: params and grads standard normals,
    slots in the rule's domain."""
    params = [rng.standard_normal(n).astype(dtype) for n in sizes]
    grads = [rng.standard_normal(n).astype(dtype) for n in sizes]
    slots = [initial_slots(rule, (n,), dtype, rng) for n in sizes]
    return params, grads, slots


def to_device(xp, params, grads, slots):
    return ([xp.asarray(p) for p in params], [xp.asarray(g) for g in grads],
            [[xp.asarray(s) for s in state] for state in slots])


def copies(params, grads, slots):
    return [p.copy() for p in params], [g.copy() for g in grads], [[s.copy() for s in st] for st in slots]

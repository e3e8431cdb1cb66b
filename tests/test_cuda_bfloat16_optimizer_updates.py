"""The CUDA engine's optimizer step on 16-bit params (bfloat16 and float16) against the NumPy
engine, bit for bit.

Under Keras' pure "bfloat16" (or "float16") policy the variables and their slots are 16-bit, and
Keras and the NumPy engine round each operation of a rule to that dtype (gpuconv/optimizers/
rules.py). The CUDA engine runs such a step on the T = gc::bfloat16 / gc::half instantiation of
kernels/optimizer_updates.cu, which rounds every intermediate the same way; an update computed in
float32 and rounded once (the round trip the other bfloat16 kernel families take) would drift
from them within a few steps. Here: every rule and both dtypes over several params in one call
(sizes with a partial 8-element vector, whole vectors only, a chunk and one element more), with
weight decay on some, three steps with the learning rate changing between them; the optimizer
classes (every one, with its variants, weight decay and a learning-rate schedule) on the CUDA
engine against the same classes on the NumPy engine; the rules' fma on a sum whose float32
rounding is a tie of the dtype; a float32 param beside bfloat16 ones; and the element path of
unaligned views. The tests also assert which kernel ran: the 16-bit one, one launch per step.
"""
import numpy as np
import pytest

from conftest import CUDA_MARKS, gpu_xp
from optimizer_cases import copies, make_case, scalars_for, to_device
from gpuconv import dtypes as gpuconv_dtypes
from gpuconv import optimizers
from gpuconv.cpu import engine as cpu
from gpuconv.cuda import optimizer_updates as ou
from gpuconv.optimizers.rules import RULES
from gpuconv.variables import Variable

DTYPES = ("bfloat16", "float16")
# 1: one element; 7, 13, 1003: a partial vector after none, one and many whole ones; 64: whole
# vectors only; 4097: a chunk (4096) and one element more.
SIZES = (1, 7, 13, 64, 1003, 4097)
DECAYS = (0.0, 0.01, 0.0, 0.004, 0.001, 0.02)
# Learning-rate-like scalars take a new value each step, as under a schedule.
LEARNING_RATES = ("learning_rate", "alpha")
STEP_SCALES = (1.0, 0.75, 0.3)


def gpu(test):
    """The CUDA_MARKS of conftest on one test (the float32 round trip's test needs no device)."""
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


def _dtype(name):
    return gpuconv_dtypes.resolve(name)


def _bits(array):
    """A host array's bit patterns when it is a 16-bit float (so -0.0 and 0.0 differ); NaN by
    position only (cvt.rn gives the canonical NaN, NumPy and ml_dtypes keep the sign), so every
    NaN reads as 0x7fff. Other arrays as they are."""
    array = np.asarray(array)
    if not gpuconv_dtypes.is_16bit_float(array.dtype):
        return array
    bits = array.view(np.uint16).copy()
    bits[np.isnan(array.astype(np.float32))] = 0x7FFF
    return bits


def _assert_same_bits(got, want, what):
    assert np.asarray(got).dtype == np.asarray(want).dtype, what
    np.testing.assert_array_equal(_bits(got), _bits(want), err_msg=what)


def _scalars_at(rule, dtype, step):
    """The rule's scalars at ``step``: the learning rate scaled as a schedule would, rounded to dtype."""
    t = np.dtype(dtype).type
    base = scalars_for(rule, dtype)
    return {k: float(t(v * STEP_SCALES[step])) if k in LEARNING_RATES else v for k, v in base.items()}


def _assert_state(xp, rule, got, want):
    for i, (p, p_ref) in enumerate(zip(got[0], want[0])):
        _assert_same_bits(xp.asnumpy(p), p_ref, f"{rule} param {i}")
    for i, (g, g_ref) in enumerate(zip(got[1], want[1])):
        _assert_same_bits(xp.asnumpy(g), g_ref, f"{rule} grad {i} was modified")
    for i, (state, state_ref) in enumerate(zip(got[2], want[2])):
        for name, s, s_ref in zip(RULES[rule].slots, state, state_ref):
            _assert_same_bits(xp.asnumpy(s), s_ref, f"{rule} slot {name!r} of param {i}")


# ---------------------------------------------------------------------------------------------
# The engine call: every rule, both 16-bit dtypes
# ---------------------------------------------------------------------------------------------
@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_steps_as_the_numpy_engine(rule, dtype, requested):
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    dtype = _dtype(dtype)
    rng = np.random.default_rng(sorted(RULES).index(rule) * 2 + DTYPES.index(dtype.name))
    host = make_case(rule, dtype, rng, SIZES)
    want, got = copies(*host), to_device(xp, *host)
    for step in range(len(STEP_SCALES)):  # later steps start from slots the kernel wrote
        scalars = _scalars_at(rule, dtype, step)
        assert eng.optimizer_update(rule, scalars, *got, list(DECAYS)) is None
        cpu.optimizer_update(rule, scalars, *want, list(DECAYS))
    _assert_state(xp, rule, got, want)
    assert requested == [ou.kernel_name(dtype, "int32", rule)] * len(STEP_SCALES), "one 16-bit launch per step"
    # Not a comparison of untouched arrays: every param's state moved, and params did (a 16-bit
    # param may keep its value where the step is below half its ulp; its slots move then).
    changed = [[not np.array_equal(_bits(xp.asnumpy(a)), _bits(h)) for a, h in zip((p, *st), (hp, *hst))]
               for p, st, hp, hst in zip(got[0], got[2], host[0], host[2])]
    assert all(any(c) for c in changed) and any(c[0] for c in changed), changed


# fma(g, -learning_rate, p) whose float32 sum is exactly halfway between two neighbours of the
# dtype while the exact sum is above it: (g, learning_rate, p, the once-rounded result). bfloat16:
# 77 * 5 = 385 lies between 384 and 386, ties to the even 384; with p = 2**-20 (below half a
# float32 ulp of 385) the exact sum rounds to 386. float16: 683 * 3 = 2049 between 2048 and 2050.
FMA_TIES = {"bfloat16": (-77.0, 5.0, 2.0**-20, 386.0), "float16": (-683.0, 3.0, 2.0**-14, 2050.0)}


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_rules_fma_rounds_once(dtype):
    """A float32 fma rounded to the dtype afterwards rounds twice and lands on the even
    neighbour; the rules' fma (the NumPy engine's float64 sum, rounded once) does not."""
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    g, lr, p, once = FMA_TIES[dtype]
    dtype = _dtype(dtype)
    n = 13  # a whole vector and a partial one: both paths of the kernel
    host = ([np.full(n, p, dtype)], [np.full(n, g, dtype)], [[]])
    got = to_device(xp, *host)
    eng.optimizer_update("sgd", {"learning_rate": lr}, *got, [0.0])
    cpu.optimizer_update("sgd", {"learning_rate": lr}, *host, [0.0])
    assert np.float32(np.float32(g) * np.float32(-lr) + np.float32(p)).astype(dtype) != once, "a double rounding"
    _assert_same_bits(host[0][0], np.full(n, once, dtype), "the NumPy engine")
    _assert_same_bits(xp.asnumpy(got[0][0]), host[0][0], "the CUDA engine")


def test_bfloat16_steps_differ_from_a_float32_update_rounded_once():
    """Why bfloat16 needs its own kernel: three Adam steps computed in float32 and rounded to
    bfloat16 once per step (the old round trip) differ from the rule rounded per operation."""
    bf16 = _dtype("bfloat16")
    rng = np.random.default_rng(11)
    params, grads, slots = make_case("adam", bf16, rng, (4097,))
    per_op = copies(params, grads, slots)
    wide = ([params[0].astype(np.float32)], [grads[0].astype(np.float32)], [[s.astype(np.float32) for s in slots[0]]])
    for step in range(len(STEP_SCALES)):
        scalars = _scalars_at("adam", bf16, step)
        cpu.optimizer_update("adam", scalars, *per_op, [0.004])
        cpu.optimizer_update("adam", scalars, *wide, [0.004])
        wide = ([a.astype(bf16).astype(np.float32) for a in wide[0]], wide[1],
                [[s.astype(bf16).astype(np.float32) for s in st] for st in wide[2]])
    assert not np.array_equal(_bits(wide[0][0].astype(bf16)), _bits(per_op[0][0]))


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_unaligned_views_take_the_element_path(dtype):
    """Views one element into device buffers (2-byte, not 16-byte, aligned) beside an aligned param."""
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    dtype = _dtype(dtype)
    rng = np.random.default_rng(12)
    host = make_case("nadam", dtype, rng, (1031, 1031))
    base = to_device(xp, *host)
    host = copies(*host)
    want = ([host[0][0][1:], host[0][1]], [host[1][0][1:], host[1][1]], [[s[1:] for s in host[2][0]], host[2][1]])
    got = ([base[0][0][1:], base[0][1]], [base[1][0][1:], base[1][1]], [[s[1:] for s in base[2][0]], base[2][1]])
    scalars = scalars_for("nadam", dtype)
    eng.optimizer_update("nadam", scalars, *got, [0.01, 0.0])
    cpu.optimizer_update("nadam", scalars, *want, [0.01, 0.0])
    _assert_state(xp, "nadam", got, want)
    _assert_same_bits(xp.asnumpy(base[0][0][:1]), host[0][0][:1], "outside the view")


@gpu
def test_bfloat16_beside_float32_takes_one_launch_each(requested):
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    bf16 = _dtype("bfloat16")
    rng = np.random.default_rng(13)
    cases = [make_case("rmsprop_centered_momentum", dt, rng, (n,)) for dt, n in ((bf16, 13), (np.float32, 7), (bf16, 1003))]
    host = tuple([case[k][0] for case in cases] for k in range(3))
    want, got = copies(*host), to_device(xp, *host)
    scalars = scalars_for("rmsprop_centered_momentum", bf16)  # representable in both dtypes
    eng.optimizer_update("rmsprop_centered_momentum", scalars, *got, [0.01, 0.01, 0.0])
    cpu.optimizer_update("rmsprop_centered_momentum", scalars, *want, [0.01, 0.01, 0.0])
    assert requested == [ou.kernel_name(bf16, "int32", "rmsprop_centered_momentum"),
                         ou.kernel_name(np.float32, "int32", "rmsprop_centered_momentum")]
    for i in range(3):
        _assert_state(xp, "rmsprop_centered_momentum", *(tuple([part[i]] for part in state) for state in (got, want)))


# ---------------------------------------------------------------------------------------------
# The optimizer classes: the host's scalars, weight decay and schedules, then the engine
# ---------------------------------------------------------------------------------------------
def _schedule():
    return optimizers.schedules.ExponentialDecay(0.01, decay_steps=1, decay_rate=0.5)


# beta_2 = 0.98 where Keras' 0.999 would be 1 in bfloat16 (its spacing below 1 is 2**-8): Adam's
# alpha, lr * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t), would be 0 and no weight would move.
OPTIMIZERS = {
    "sgd": lambda: optimizers.SGD(learning_rate=_schedule()),
    "sgd_momentum": lambda: optimizers.SGD(learning_rate=_schedule(), momentum=0.9, weight_decay=0.1),
    "sgd_nesterov": lambda: optimizers.SGD(learning_rate=_schedule(), momentum=0.9, nesterov=True),
    "adam": lambda: optimizers.Adam(learning_rate=_schedule(), beta_2=0.98, weight_decay=0.1),
    "adam_amsgrad": lambda: optimizers.Adam(learning_rate=_schedule(), beta_2=0.98, amsgrad=True),
    "adamw": lambda: optimizers.AdamW(learning_rate=_schedule(), beta_2=0.98, weight_decay=0.05),
    "rmsprop": lambda: optimizers.RMSprop(learning_rate=_schedule()),
    "rmsprop_momentum": lambda: optimizers.RMSprop(learning_rate=_schedule(), momentum=0.9, weight_decay=0.1),
    "rmsprop_centered": lambda: optimizers.RMSprop(learning_rate=_schedule(), centered=True),
    "rmsprop_centered_momentum": lambda: optimizers.RMSprop(learning_rate=_schedule(), centered=True, momentum=0.5),
    "adagrad": lambda: optimizers.Adagrad(learning_rate=_schedule(), weight_decay=0.1),
    "adadelta": lambda: optimizers.Adadelta(learning_rate=_schedule()),
    "adamax": lambda: optimizers.Adamax(learning_rate=_schedule(), weight_decay=0.1),
    "nadam": lambda: optimizers.Nadam(learning_rate=_schedule(), beta_2=0.98),
    "lion": lambda: optimizers.Lion(learning_rate=_schedule(), weight_decay=0.1),
}
SHAPES = ((3, 5), (7,), (1,), (9, 113))  # 15, 7, 1 and 1017 elements


def _train(make, dtype, steps, xp=None):
    """(variables, optimizer) after ``steps`` steps from fixed weights and gradients; the
    gradients are device arrays when ``xp`` is given (the step then runs on the CUDA engine)."""
    rng = np.random.default_rng(14)
    variables = [Variable(rng.standard_normal(s).astype(dtype), name=f"w{i}", path=f"dense/w{i}")
                 for i, s in enumerate(SHAPES)]
    opt = make()
    for _ in range(steps):
        grads = [rng.standard_normal(v.shape).astype(dtype) for v in variables]
        opt.apply([g if xp is None else xp.asarray(g) for g in grads], variables)
    return variables, opt


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", sorted(OPTIMIZERS))
def test_optimizer_classes_train_as_on_the_numpy_engine(config, dtype, requested, restore_backend):
    import gpuconv
    from conftest import GPU_BACKEND

    dtype, steps = _dtype(dtype), 3
    gpuconv.set_backend("numpy")
    host, host_opt = _train(OPTIMIZERS[config], dtype, steps)
    gpuconv.set_backend(GPU_BACKEND)
    device, device_opt = _train(OPTIMIZERS[config], dtype, steps, xp=gpu_xp())
    start, _ = _train(OPTIMIZERS[config], dtype, 0)
    assert any(not np.array_equal(_bits(v.numpy()), _bits(s.numpy())) for v, s in zip(device, start)), "no step moved"
    rule = device_opt._rule()
    assert requested == [ou.kernel_name(dtype, "int32", rule)] * steps, "the 16-bit kernel, one launch per step"
    for a, b in zip(host, device):
        assert b.dtype == dtype
        _assert_same_bits(b.numpy(), a.numpy(), f"{config} {b.path}")
    for a, b in zip(host_opt.variables, device_opt.variables):
        _assert_same_bits(np.asarray(b.numpy()), np.asarray(a.numpy()), f"{config} optimizer variable {b.path}")

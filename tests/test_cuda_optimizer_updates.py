"""The CUDA engine's optimizer step (kernels/optimizer_updates.cu through
gpuconv/cuda/optimizer_updates.py) against the NumPy engine's rules (gpuconv.cpu.optimizer_updates,
the oracle of gpuconv/optimizers/rules.py).

Every rule x dtype x index width over many tensors of odd sizes in one call (1, 7, 1000 and 65537
elements: a single element, a partial vector, a partial chunk, a tensor over many chunks), with
weight decay on some, two steps: params and slots updated in place, gradients untouched; float32
and float16 bitwise equal to the NumPy rules, float64 within a few ulps (see EXACT_DTYPES). Also:
one launch per call and per dtype, unaligned tensors (the scalar path), NaN / Inf / signed
zeros, the decay factor's rounding, empty tensors, and refusals that leave every array as it
was. The table layout is tested without a device.
"""
import os

import numpy as np
import pytest

from conftest import CUDA_MARKS, ON_EMULATOR, gpu_xp
from optimizer_cases import copies, make_case, scalars_for, to_device
from gpuconv.cpu import engine as cpu
from gpuconv.cuda import indexing
from gpuconv.cuda import optimizer_updates as ou
from gpuconv.optimizers.rules import RULES

DTYPES = ("float32", "float16", "float64")
SIZES = (1, 7, 1000, 65537)
DECAYS = (0.0, 0.01, 0.0, 0.001)
# The kernel rounds every operation as rules.py says (no contraction, fma where it says fma), so
# float32 and float16 equal the NumPy engine bit for bit on a GPU and on the emulator (unless the
# emulator is asked to contract, GPUCONV_EMULATOR_FMA). float64 has no wider type for the rules'
# fma: the NumPy engine rounds its product and its sum separately there, the kernel rounds once,
# so float64 agrees to a few ulps.
EXACT_DTYPES = ("float32", "float16") if os.environ.get("GPUCONV_EMULATOR_FMA", "") in ("", "0") or not ON_EMULATOR \
    else ()
# Elsewhere: a few roundings of values of order one (a difference of one rounding in a sum that
# cancels is many ulps of the small result, so the bound is absolute as well).
CLOSE = {"float64": dict(rtol=1e-14, atol=1e-15), "float32": dict(rtol=2e-6, atol=1e-6),
         "float16": dict(rtol=2e-3, atol=2e-3)}


def gpu(test):
    """The CUDA_MARKS of conftest on one test (the table's tests need no device)."""
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


def assert_matches(actual, expected, dtype, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype == np.dtype(dtype), what
    if np.dtype(dtype).name in EXACT_DTYPES:
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    np.testing.assert_allclose(actual, expected, err_msg=what, **CLOSE[np.dtype(dtype).name])  # NaN and Inf at the same places




def assert_state_matches(xp, rule, dtype, got, want):
    """Params and slots of the device ``got`` equal the host ``want``; grads unchanged."""
    for i, (p, p_ref) in enumerate(zip(got[0], want[0])):
        assert_matches(xp.asnumpy(p), p_ref, dtype, f"{rule} param {i}")
    for i, (g, g_ref) in enumerate(zip(got[1], want[1])):
        np.testing.assert_array_equal(xp.asnumpy(g), g_ref, err_msg=f"{rule} grad {i} was modified")
    for i, (state, state_ref) in enumerate(zip(got[2], want[2])):
        for name, s, s_ref in zip(RULES[rule].slots, state, state_ref):
            assert_matches(xp.asnumpy(s), s_ref, dtype, f"{rule} slot {name!r} of param {i}")


@pytest.fixture
def launches(monkeypatch):
    """The number of kernel launches since the test began."""
    from gpuconv.cuda import launch

    count = [0]
    real = launch.launch

    def counting(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(launch, "launch", counting)
    return lambda: count[0]


# ---------------------------------------------------------------------------------------------
# Every rule x dtype x index width against the NumPy rules
# ---------------------------------------------------------------------------------------------
@gpu
@pytest.mark.parametrize("width", ["int32", "int64"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_matches_the_numpy_rules(rule, dtype, width, monkeypatch, requested, launches):
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    monkeypatch.setenv(indexing.FORCE_ENV, width)
    rng = np.random.default_rng(len(rule) * 31 + DTYPES.index(dtype))
    host = make_case(rule, dtype, rng, SIZES)
    want = copies(*host)
    got = to_device(xp, *host)
    scalars = scalars_for(rule, dtype)
    for step in range(2):  # the second step starts from slots the kernel wrote
        assert eng.optimizer_update(rule, scalars, *got, list(DECAYS)) is None
        cpu.optimizer_update(rule, scalars, *want, list(DECAYS))
    assert_state_matches(xp, rule, dtype, got, want)
    assert launches() == 2, "one launch per step for all tensors"
    assert requested == [ou.kernel_name(dtype, width, rule)] * 2


# ---------------------------------------------------------------------------------------------
# Launch structure
# ---------------------------------------------------------------------------------------------
@gpu
def test_many_tensors_one_launch(launches):
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    rng = np.random.default_rng(1)
    sizes = [1, 2, 3, 7, 8, 9, 4095, 4096, 4097, 1000] * 5  # 50 tensors, chunk boundaries on both sides
    host = make_case("adam", "float32", rng, sizes)
    want, got = copies(*host), to_device(xp, *host)
    decays = [0.001 * (i % 3) for i in range(len(sizes))]
    eng.optimizer_update("adam", scalars_for("adam", "float32"), *got, decays)
    cpu.optimizer_update("adam", scalars_for("adam", "float32"), *want, decays)
    assert launches() == 1
    assert_state_matches(xp, "adam", "float32", got, want)


@gpu
def test_mixed_dtypes_take_one_launch_each(launches, requested):
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    rng = np.random.default_rng(2)
    dtypes = ["float32", "float16", "float32", "float64", "float16"]
    sizes = [7, 1000, 65537, 3, 9]
    host = [make_case("rmsprop_momentum", dt, rng, (n,)) for dt, n in zip(dtypes, sizes)]
    params, grads, slots = ([case[k][0] for case in host] for k in range(3))
    want, got = copies(params, grads, slots), to_device(xp, params, grads, slots)
    scalars = scalars_for("rmsprop_momentum", "float16")  # representable in every dtype
    eng.optimizer_update("rmsprop_momentum", scalars, *got, [0.0] * 5)
    cpu.optimizer_update("rmsprop_momentum", scalars, *want, [0.0] * 5)
    assert launches() == 3
    assert [name.split(",")[0] for name in requested] == [f"gc::optimizer_update<{t}" for t in
                                                          ("float", "gc::half", "double")]
    for i, dt in enumerate(dtypes):
        assert_state_matches(xp, "rmsprop_momentum", dt, *([[part[i]] for part in state] for state in (got, want)))


@gpu
def test_empty_tensors_are_skipped(launches):
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    rng = np.random.default_rng(3)
    host = make_case("sgd_momentum", "float32", rng, (0, 5, 0))
    want, got = copies(*host), to_device(xp, *host)
    eng.optimizer_update("sgd_momentum", scalars_for("sgd_momentum", "float32"), *got, [0.1, 0.1, 0.1])
    cpu.optimizer_update("sgd_momentum", scalars_for("sgd_momentum", "float32"), *want, [0.1, 0.1, 0.1])
    assert launches() == 1
    assert_state_matches(xp, "sgd_momentum", "float32", got, want)
    empty = to_device(xp, *make_case("sgd", "float32", rng, (0,)))
    eng.optimizer_update("sgd", {"learning_rate": 0.1}, *empty, [0.0])
    assert launches() == 1, "nothing to update: no launch"


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_unaligned_tensors_take_the_scalar_path(dtype):
    """Views one element into a device buffer (not 16-byte aligned) next to aligned tensors."""
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    rng = np.random.default_rng(4)
    n = 1030
    host = make_case("nadam", dtype, rng, (n + 1, n + 1))
    want = copies(*host)
    base = to_device(xp, *host)
    got = ([base[0][0][1:], base[0][1]], [base[1][0][1:], base[1][1]],
           [[s[1:] for s in base[2][0]], base[2][1]])
    want = ([want[0][0][1:], want[0][1]], [want[1][0][1:], want[1][1]],
            [[s[1:] for s in want[2][0]], want[2][1]])
    scalars = scalars_for("nadam", dtype)
    eng.optimizer_update("nadam", scalars, *got, [0.01, 0.0])
    cpu.optimizer_update("nadam", scalars, *want, [0.01, 0.0])
    assert_state_matches(xp, "nadam", dtype, got, want)
    np.testing.assert_array_equal(xp.asnumpy(base[0][0][:1]), host[0][0][:1], err_msg="outside the view")


@gpu
@pytest.mark.parametrize("rule", ["sgd", "adam_amsgrad", "adamax", "lion", "adagrad"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_inf_and_signed_zeros(rule, dtype):
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    rng = np.random.default_rng(5)
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30, -6e4, 3.0, -2.0, 0.5, np.nan, 0.0], dtype=dtype)
    host = make_case(rule, dtype, rng, (special.size,) * 3)
    host[1][0][:] = special                 # special gradients
    host[0][1][:] = special                 # special params
    host[1][2][:] = special[::-1]           # and both at once, with a decay
    host[0][2][:] = special
    want, got = copies(*host), to_device(xp, *host)
    eng.optimizer_update(rule, scalars_for(rule, dtype), *got, [0.0, 0.0, 0.125])
    cpu.optimizer_update(rule, scalars_for(rule, dtype), *want, [0.0, 0.0, 0.125])
    assert_state_matches(xp, rule, dtype, got, want)


@gpu
def test_the_decay_factor_is_computed_in_the_param_dtype():
    """p * (1 - decay) with 1 - decay rounded to T: a decay of 1 zeroes p (an infinite p becomes
    NaN), float16 has no 1 - 1e-4 (it is 1: p unchanged), 0.0 skips the decay."""
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    special = np.array([np.inf, 1.5, -np.inf, -0.25], np.float16)
    host = ([special.copy() for _ in range(3)], [np.zeros(4, np.float16) for _ in range(3)], [[], [], []])
    want, got = copies(*host), to_device(xp, *host)
    eng.optimizer_update("sgd", {"learning_rate": 0.5}, *got, [1.0, 1e-4, 0.0])
    cpu.optimizer_update("sgd", {"learning_rate": 0.5}, *want, [1.0, 1e-4, 0.0])
    assert np.isnan(want[0][0][0]) and want[0][0][1] == 0
    np.testing.assert_array_equal(want[0][1], special)
    assert_state_matches(xp, "sgd", "float16", got, want)


@gpu
def test_bound_engine_of_the_device_runs_it():
    from conftest import GPU_BACKEND
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    bound = eng.on_device(GPU_BACKEND)
    host = make_case("adadelta", "float64", np.random.default_rng(6), (33,))
    want, got = copies(*host), to_device(xp, *host)
    bound.optimizer_update("adadelta", scalars_for("adadelta", "float64"), *got, [0.0])
    cpu.optimizer_update("adadelta", scalars_for("adadelta", "float64"), *want, [0.0])
    assert_state_matches(xp, "adadelta", "float64", got, want)


# ---------------------------------------------------------------------------------------------
# Refusals: a clear error, and no array touched
# ---------------------------------------------------------------------------------------------
def _bad_calls(xp):
    """(description, call arguments, exception, message pattern) of malformed calls."""
    rng = np.random.default_rng(7)
    params, grads, slots = to_device(xp, *make_case("adam", "float32", rng, (5, 6)))
    s = scalars_for("adam", "float32")
    fresh_slots = [xp.asarray(np.zeros(5, np.float32)) for _ in RULES["adam"].slots]
    strided = xp.asarray(np.zeros(10, np.float32))[::2]
    return [
        ("unknown rule", ("adamw", s, params, grads, slots, [0.0, 0.0]), ValueError, "adamw"),
        ("missing scalar", ("adam", {"alpha": 0.1}, params, grads, slots, [0.0, 0.0]), ValueError, "scalars"),
        ("fewer grads", ("adam", s, params, grads[:1], slots, [0.0, 0.0]), ValueError, "params"),
        ("fewer decays", ("adam", s, params, grads, slots, [0.0]), ValueError, "params"),
        ("grad shape", ("adam", s, params, [grads[1], grads[1]], slots, [0.0, 0.0]), ValueError, "Gradient 0"),
        ("grad dtype", ("adam", s, params, [grads[0], grads[1].astype(np.float64)], slots, [0.0, 0.0]),
         ValueError, "Gradient 1"),
        ("slot count", ("adam", s, params, grads, [slots[0][:1], slots[1]], [0.0, 0.0]), ValueError, "slots"),
        ("slot dtype", ("adam", s, params, grads, [slots[0], [slots[1][0], slots[1][1].astype(np.float16)]],
                        [0.0, 0.0]), ValueError, "Slot 'velocity' of param 1"),
        ("host param", ("adam", s, [params[0], np.zeros(6, np.float32)], grads, slots, [0.0, 0.0]),
         ValueError, "Param 1 is updated in place"),
        ("strided slot", ("adam", s, [params[0]], [grads[0]], [[slots[0][0], strided]], [0.0]),
         ValueError, "Slot 'velocity' of param 0 is updated in place"),
        ("aliased params", ("adam", s, [params[0], params[0]], [grads[0], grads[0]], [slots[0], fresh_slots],
                            [0.0, 0.0]), ValueError, "share memory"),
        ("slot is its param", ("adam", s, [params[0]], [grads[0]], [[params[0], slots[0][1]]], [0.0]),
         ValueError, "share memory"),
        ("decay type", ("adam", s, params, grads, slots, [0.0, "0.1"]), TypeError, "decays\\[1\\]"),
        ("integer params", ("sgd", {"learning_rate": 1.0}, [xp.asarray(np.zeros(3, np.int32))],
                            [xp.asarray(np.zeros(3, np.int32))], [[]], [0.0]), TypeError, "float16, float32"),
    ]


@gpu
def test_bad_calls_raise_and_touch_nothing():
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    for what, args, error, pattern in _bad_calls(xp):
        arrays = [a for a in (*args[2], *args[3], *[s for st in args[4] for s in st])]
        before = [xp.asnumpy(a).copy() for a in arrays]
        with pytest.raises(error, match=pattern):
            eng.optimizer_update(*args)
        for a, b in zip(arrays, before):
            np.testing.assert_array_equal(xp.asnumpy(a), b, err_msg=f"{what}: an array changed")


# ---------------------------------------------------------------------------------------------
# The table (no device)
# ---------------------------------------------------------------------------------------------
def test_every_rule_has_a_functor_and_every_instantiation_is_registered():
    from gpuconv.cuda import registry

    assert set(ou.FUNCTORS) == set(RULES)
    names = registry.registered(ou.FILE)
    assert len(names) == len(RULES) * 4 * 2 == len(set(names))  # float32, float16, float64, bfloat16
    assert "gc::optimizer_update<gc::half, long long, gc::LionRule>" in names
    assert "gc::optimizer_update<gc::bfloat16, int, gc::AdamRule>" in names


def test_table_layout():
    scalars = scalars_for("adam", "float16")
    sizes = [1, ou.CHUNK, ou.CHUNK + 1, 3]
    pointers = [[1000 * i + k for k in range(4)] for i in range(len(sizes))]  # param, grad, m, v
    table, chunks = ou.build_table("adam", scalars, np.float16, sizes, [0.0, 0.1, -0.0, 1e-9], pointers)
    ns = len(RULES["adam"].scalars)
    assert table.dtype == np.uint64 and table.size == ns + len(sizes) * (ou.RECORD_HEADER + 2)
    np.testing.assert_array_equal(table[:ns].view(np.float64), [scalars[k] for k in RULES["adam"].scalars])
    records = table[ns:].reshape(len(sizes), -1)
    assert chunks == 1 + 1 + 2 + 1
    np.testing.assert_array_equal(records[:, 0], sizes)
    np.testing.assert_array_equal(records[:, 1], [0, 1, 2, 4])
    factor = records[:, 2].view(np.float64)
    assert records[0, 2] == records[2, 2] == ou.NO_DECAY, "0.0 and -0.0 mean no decay"
    assert factor[1] == np.float64(np.float16(1) - np.float16(0.1)), "1 - decay, computed in float16"
    assert factor[3] == 1.0, "1 - 1e-9 is 1 in float16"
    np.testing.assert_array_equal(records[:, 3:], pointers)


def test_scalars_are_rounded_to_the_param_dtype():
    bits = ou.in_dtype_bits([0.1, 1e-7], np.float32)
    np.testing.assert_array_equal(bits.view(np.float64), [np.float64(np.float32(0.1)), np.float64(np.float32(1e-7))])


def test_by_dtype_groups_non_empty_params_in_first_seen_order():
    params = [np.zeros(2, np.float16), np.zeros(0, np.float32), np.zeros(3, np.float64), np.zeros(1, np.float16)]
    assert ou.by_dtype(params) == {np.dtype(np.float16): [0, 3], np.dtype(np.float64): [2]}

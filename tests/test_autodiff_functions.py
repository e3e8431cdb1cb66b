"""Gradients of the recorded array functions (``gpuconv.ops.add`` ...) and of every built-in
activation: central finite differences in float64 over random configurations (hypothesis),
PyTorch autograd in float32 (relative L2 <= 1e-5), the documented choices at kinks checked at
exactly the kink (activations: against keras.activations on its torch backend, whose autograd
is Keras' choice there), determinism."""
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuconv
from gpuconv import activations, ops

from conftest import relative_l2_error

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported anywhere in this process
torch = pytest.importorskip("torch")

# derandomize: the same configurations every run, so a result never depends on the draw.
SETTINGS = settings(max_examples=8, deadline=None, derandomize=True)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def tape_gradient(fn, args, v):
    with gpuconv.GradientTape() as tape:
        tape.watch(list(args))
        y = fn(*args)
    return y, tape.gradient(y, list(args), output_gradients=v)


def fd_gradient(fn, args, v, eps=1e-6):
    """Central differences of sum(fn(*args) * v) with respect to each argument."""
    grads = []
    for i, a in enumerate(args):
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            plus = [b.copy() for b in args]
            minus = [b.copy() for b in args]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            g[idx] = (np.sum(np.asarray(fn(*plus)) * v) - np.sum(np.asarray(fn(*minus)) * v)) / (2 * eps)
        grads.append(g)
    return grads


def check_fd(fn, args, rng, tol=1e-6):
    y0 = np.asarray(fn(*[a.copy() for a in args]))
    v = rng.standard_normal(y0.shape)
    y, grads = tape_gradient(fn, args, v)
    expected = fd_gradient(fn, args, v)
    for g, e in zip(grads, expected):
        assert g is not None
        # Central differences carry an absolute error ~ ulp(f) / eps ~ 1e-10 per entry (f of
        # order 1): the floor 1e-8 * sqrt(n) keeps tiny gradients (a saturated softmax) testable.
        err = np.linalg.norm((np.asarray(g, dtype=np.float64) - e).ravel())
        assert err <= tol * np.linalg.norm(e.ravel()) + 1e-8 * np.sqrt(e.size), (err, g, e)


def assert_matches_torch(ours, theirs, fn, args, v, index=0):
    """Relative L2 <= 1e-5 against torch's float32 gradient, except where the float32 derivative
    itself cancels (1 - tanh^2, y (g - <g, y>) of a saturated softmax, the tanh-form gelu's
    s + x s (1 - s) 2u', as torch forms them): there torch's float32 result is off the float64
    gradient (checked by finite differences) by more than 1e-6 too, and ours must be no further
    from that gradient than 1e-5 or twice torch's own error (two roundings)."""
    if relative_l2_error(ours, theirs) <= 1e-5:
        return
    _, truth = tape_gradient(fn, [a.astype(np.float64) for a in args], v.astype(np.float64))
    torch_err = relative_l2_error(theirs, truth[index])
    assert torch_err > 1e-6, "a float32-accurate torch gradient must be matched to 1e-5"
    assert relative_l2_error(ours, truth[index]) <= max(1e-5, 2 * torch_err)


def away_from(x, points, gap=1e-2):
    """``x`` with entries within ``gap`` of a kink moved off it (finite differences need that)."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, gap, -gap) * 2
    return x


# --------------------------------------------------------------------------------------------
# The array functions: (generator of float64 arguments, gpuconv function, torch function)
# --------------------------------------------------------------------------------------------
def _pair_broadcast(rng, shape):
    other = list(shape)
    for i in range(len(other)):
        if rng.random() < 0.4:
            other[i] = 1
    if other and rng.random() < 0.3:
        other = other[1:]
    return [rng.standard_normal(shape), rng.standard_normal(tuple(other))]


def _positive(rng, shape):
    return [rng.uniform(0.2, 3.0, shape)]


def _normal(rng, shape):
    return [rng.standard_normal(shape)]


def _axis(shape, rng):
    return int(rng.integers(0, len(shape)))


CASES = {
    "add": (_pair_broadcast, lambda a, b: ops.add(a, b), lambda a, b: a + b),
    "subtract": (_pair_broadcast, lambda a, b: ops.subtract(a, b), lambda a, b: a - b),
    "multiply": (_pair_broadcast, lambda a, b: ops.multiply(a, b), lambda a, b: a * b),
    "divide": (lambda r, s: [r.standard_normal(s), r.uniform(0.5, 2.0, s) * r.choice([-1, 1], s)],
               lambda a, b: ops.divide(a, b), lambda a, b: a / b),
    "add_scalar": (_normal, lambda a: ops.add(2.5, ops.multiply(a, -1.5)), lambda a: 2.5 + a * -1.5),
    "divide_scalar": (_positive, lambda a: ops.divide(3.0, a), lambda a: 3.0 / a),
    "negative": (_normal, lambda a: ops.negative(a), lambda a: -a),
    "square": (_normal, lambda a: ops.square(a), lambda a: a * a),
    "sqrt": (_positive, lambda a: ops.sqrt(a), torch.sqrt),
    "exp": (_normal, lambda a: ops.exp(a), torch.exp),
    "log": (_positive, lambda a: ops.log(a), torch.log),
    "log1p": (_positive, lambda a: ops.log1p(a), torch.log1p),
    "abs": (lambda r, s: [away_from(r.standard_normal(s), [0.0])], lambda a: ops.abs(a), torch.abs),
    "maximum": (_pair_broadcast, lambda a, b: ops.maximum(a, b), torch.maximum),
    "minimum": (_pair_broadcast, lambda a, b: ops.minimum(a, b), torch.minimum),
    "clip": (lambda r, s: [away_from(r.standard_normal(s), [-0.5, 0.7])], lambda a: ops.clip(a, -0.5, 0.7),
             lambda a: torch.clamp(a, -0.5, 0.7)),
    "where": (_pair_broadcast,
              lambda a, b: ops.where(np.arange(a.size).reshape(a.shape) % 3 == 0, a, b),
              lambda a, b: torch.where(torch.from_numpy(np.arange(a.numel()).reshape(tuple(a.shape)) % 3 == 0), a, b)),
    "sum": (_normal, lambda a: ops.sum(a, axis=-1), lambda a: torch.sum(a, dim=-1)),
    "sum_all_keepdims": (_normal, lambda a: ops.sum(a, axis=None, keepdims=True),
                         lambda a: torch.sum(a).reshape((1,) * a.ndim)),
    "mean": (_normal, lambda a: ops.mean(a, axis=0, keepdims=True), lambda a: torch.mean(a, dim=0, keepdim=True)),
    "max": (_normal, lambda a: ops.max(a, axis=-1), lambda a: torch.amax(a, dim=-1)),
    "max_all": (_normal, lambda a: ops.max(a), lambda a: torch.amax(a)),
    "min": (_normal, lambda a: ops.min(a, axis=0, keepdims=True), lambda a: torch.amin(a, dim=0, keepdim=True)),
    "matmul": (lambda r, s: [r.standard_normal(s[:-1] + (3,)), r.standard_normal((3, 4))],
               lambda a, b: ops.matmul(a, b), torch.matmul),
    "matmul_batched": (lambda r, s: [r.standard_normal((2, 1, 3, 4)), r.standard_normal((3, 4, 2))],
                       lambda a, b: ops.matmul(a, b), torch.matmul),
    "matmul_vector": (lambda r, s: [r.standard_normal((4,)), r.standard_normal((2, 4, 3))],
                      lambda a, b: ops.matmul(a, b), torch.matmul),
    "reshape": (_normal, lambda a: ops.reshape(a, (-1,)), lambda a: a.reshape(-1)),
    "transpose": (_normal, lambda a: ops.transpose(a), lambda a: a.permute(*reversed(range(a.ndim)))),
    "concatenate": (lambda r, s: [r.standard_normal(s), r.standard_normal(s)],
                    lambda a, b: ops.concatenate([a, b, a], axis=-1), lambda a, b: torch.cat([a, b, a], dim=-1)),
    "stack": (lambda r, s: [r.standard_normal(s), r.standard_normal(s)],
              lambda a, b: ops.stack([a, b], axis=1), lambda a, b: torch.stack([a, b], dim=1)),
    "squeeze": (lambda r, s: [r.standard_normal((1,) + s + (1,))], lambda a: ops.squeeze(a), torch.squeeze),
    "expand_dims": (_normal, lambda a: ops.expand_dims(a, 1), lambda a: a.unsqueeze(1)),
    "take": (_normal, lambda a: ops.take(a, np.array([0, -1, 0, 0]), axis=0),
             lambda a: a.index_select(0, torch.tensor([0, a.shape[0] - 1, 0, 0]))),
    "take_flat": (_normal, lambda a: ops.take(a, np.array([[1, 0], [1, 1]]) % a.size),
                  lambda a: torch.take(a, torch.tensor([[1, 0], [1, 1]]) % a.numel())),
    "take_along_axis": (_normal, lambda a: ops.take_along_axis(a, np.zeros(a.shape[:-1] + (3,), dtype=int), axis=-1),
                        lambda a: torch.take_along_dim(a, torch.zeros(a.shape[:-1] + (3,), dtype=torch.long), dim=-1)),
    "softmax": (_normal, lambda a: ops.softmax(a, axis=0), lambda a: torch.softmax(a, dim=0)),
    "log_softmax": (_normal, lambda a: ops.log_softmax(a, axis=-1), lambda a: torch.log_softmax(a, dim=-1)),
    "logsumexp": (_normal, lambda a: ops.logsumexp(a, axis=-1), lambda a: torch.logsumexp(a, dim=-1)),
    "logsumexp_all": (_normal, lambda a: ops.logsumexp(a), lambda a: torch.logsumexp(a, dim=tuple(range(a.ndim)))),
    "cast": (_normal, lambda a: ops.multiply(ops.cast(a, "float32"), np.float32(2.0)),
             lambda a: (a.to(torch.float32) * 2.0)),
    "power": (lambda r, s: [r.uniform(0.2, 3.0, s), r.standard_normal(s)], lambda a, b: ops.power(a, b), torch.pow),
    "power_scalar": (_normal, lambda a: ops.power(a, 2.0), lambda a: torch.pow(a, 2.0)),
    "normalize": (_normal, lambda a: ops.normalize(a, axis=-1),
                  lambda a: torch.nn.functional.normalize(a, p=2.0, dim=-1, eps=1e-7)),
    "normalize_order3": (lambda r, s: [away_from(r.standard_normal(s), [0.0])], lambda a: ops.normalize(a, axis=0, order=3),
                         lambda a: torch.nn.functional.normalize(a, p=3.0, dim=0, eps=1e-7)),
}

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)
configs = given(shape=shapes, seed=st.integers(0, 2**31 - 1))


def test_every_function_is_exported_by_ops_without_collisions():
    from gpuconv.autodiff import functions

    assert set(functions.__all__) == {
        "add", "subtract", "multiply", "divide", "negative", "square", "sqrt", "exp", "log", "log1p", "abs",
        "maximum", "minimum", "clip", "where", "sum", "mean", "max", "min", "matmul", "reshape", "transpose",
        "concatenate", "stack", "squeeze", "expand_dims", "take", "take_along_axis", "one_hot", "softmax",
        "log_softmax", "logsumexp", "cast", "power", "normalize"}
    for name in functions.__all__:
        assert getattr(ops, name) is getattr(functions, name)
    for name in ("conv", "conv_transpose", "depthwise_conv", "separable_conv", "max_pool", "average_pool"):
        assert getattr(ops, name).__module__ == "gpuconv.ops"


@pytest.mark.parametrize("name", sorted(CASES))
@SETTINGS
@configs
def test_finite_differences_float64(name, shape, seed):
    rng = np.random.default_rng(seed)
    make, fn, _ = CASES[name]
    if name == "cast":  # cast to float32 is not differentiable to 1e-6 by float64 differences
        fn = lambda a: ops.multiply(ops.cast(a, "float64"), 2.0)  # noqa: E731
    check_fd(fn, make(rng, shape), rng)


@pytest.mark.parametrize("name", sorted(CASES))
@SETTINGS
@configs
def test_matches_torch_autograd_float32(name, shape, seed):
    make, fn, torch_fn = CASES[name]
    rng = np.random.default_rng(seed)
    args = [a.astype("float32") for a in make(rng, shape)]
    y = np.asarray(fn(*[a.copy() for a in args]))
    v = rng.standard_normal(y.shape).astype("float32")
    _, ours = tape_gradient(fn, args, v)
    ts = [torch.tensor(a, requires_grad=True) for a in args]
    out = torch_fn(*ts)
    out.backward(torch.from_numpy(v).reshape(out.shape))
    for i, (g, t) in enumerate(zip(ours, ts)):
        assert g.dtype == np.float32
        assert_matches_torch(g, t.grad.numpy(), fn, args, v, index=i)


def test_gradients_keep_shape_dtype_and_module_float16():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype("float16")
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = ops.sum(ops.matmul(x, ops.transpose(x)))
    g = tape.gradient(y, x)
    assert g.dtype == np.float16 and g.shape == x.shape and type(g) is np.ndarray
    expected = 2 * x.astype(np.float64).sum(axis=0)[None, :].repeat(3, axis=0)
    assert relative_l2_error(g, expected) <= 2e-3


# ---- documented choices at exactly the kink -------------------------------------------------
def _grad(fn, *args):
    _, g = tape_gradient(fn, list(args), None)
    return g


def test_maximum_minimum_split_ties_evenly():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 5.0])
    ga, gb = _grad(lambda a, b: ops.maximum(a, b), a, b)
    np.testing.assert_array_equal(ga, [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(gb, [0.5, 0.0, 1.0])
    ga, gb = _grad(lambda a, b: ops.minimum(a, b), a, b)
    np.testing.assert_array_equal(ga, [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(gb, [0.5, 1.0, 0.0])


def test_clip_passes_at_the_bounds_abs_zero_at_zero():
    x = np.array([-1.0, -0.5, 0.0, 0.7, 1.0])
    (g,) = _grad(lambda x: ops.clip(x, -0.5, 0.7), x)
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0, 1.0, 0.0])
    (g,) = _grad(lambda x: ops.abs(x), np.array([-2.0, 0.0, 3.0]))
    np.testing.assert_array_equal(g, [-1.0, 0.0, 1.0])


def test_max_min_gradient_goes_to_the_first_extreme():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    (g,) = _grad(lambda x: ops.max(x, axis=1), x)
    np.testing.assert_array_equal(g, [[0, 1, 0], [1, 0, 0]])
    (g,) = _grad(lambda x: ops.max(x), x)
    np.testing.assert_array_equal(g, [[0, 1, 0], [0, 0, 0]])
    (g,) = _grad(lambda x: ops.min(x, axis=0), np.array([[1.0, 2.0], [1.0, 0.0]]))
    np.testing.assert_array_equal(g, [[1, 0], [0, 1]])
    (g,) = _grad(lambda x: ops.max(x, axis=(0, 1)), np.array([[1.0, np.nan], [np.nan, 0.0]]))
    np.testing.assert_array_equal(g, [[0, 1], [0, 0]])  # NaN is the maximum, the first one gets it


def test_take_sums_repeated_indices_and_one_hot_is_constant():
    x = np.array([1.0, 2.0, 3.0])
    (g,) = _grad(lambda x: ops.take(x, np.array([2, 2, -3, 2])), x)
    np.testing.assert_array_equal(g, [1.0, 0.0, 3.0])
    labels = np.array([0, 2, 1])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        hot = ops.one_hot(labels, 3)
        assert not gpuconv.autodiff.recording(hot)
        loss = ops.sum(ops.multiply(ops.log_softmax(ops.reshape(ops.stack([x, x, x]), (3, 3))), hot))
    np.testing.assert_array_equal(ops.one_hot(labels, 3), np.eye(3, dtype="float32")[labels])
    g = tape.gradient(loss, x)
    assert g.shape == (3,)


def test_where_condition_is_constant_and_scalars_allowed():
    x = np.array([1.0, -2.0, 3.0])
    (g,) = _grad(lambda x: ops.where(x > 0, x, 0.0), x)
    np.testing.assert_array_equal(g, [1.0, 0.0, 1.0])


def test_functions_run_on_the_emulator_arrays():
    from conftest import EMULATOR_AVAILABLE

    if not EMULATOR_AVAILABLE:
        pytest.skip("cuda-emulator unavailable")
    from gpuconv.emulator import xp
    from gpuconv.emulator.runtime import DeviceArray

    host = np.random.default_rng(1).standard_normal((3, 4))
    x = xp.asarray(host)
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = ops.logsumexp(ops.take_along_axis(ops.multiply(x, x), np.array([[0], [3], [1]]), axis=1))
    g = tape.gradient(y, x)
    with gpuconv.GradientTape() as tape:
        tape.watch(host)
        y = ops.logsumexp(ops.take_along_axis(ops.multiply(host, host), np.array([[0], [3], [1]]), axis=1))
    assert isinstance(g, DeviceArray)
    np.testing.assert_array_equal(np.asarray(g), tape.gradient(y, host))


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------
# (name, kwargs, kinks): kinks are kept away from in finite differences and tested exactly.
ACTIVATIONS = [
    ("relu", {}, [0.0]),
    ("relu", {"negative_slope": 0.1}, [0.0]),
    ("relu", {"threshold": 0.5}, [0.5]),
    ("relu", {"max_value": 6.0}, [0.0, 6.0]),
    ("relu", {"max_value": 1.0}, [0.0, 1.0]),
    ("relu", {"negative_slope": 0.1, "max_value": 1.0, "threshold": 0.5}, [0.5, 1.0]),
    ("relu", {"negative_slope": 0.1, "max_value": 1.0}, [0.0, 1.0]),
    ("leaky_relu", {}, [0.0]),
    ("leaky_relu", {"negative_slope": 0.3}, [0.0]),
    ("relu6", {}, [0.0, 6.0]),
    ("softmax", {}, []),
    ("softmax", {"axis": 0}, []),
    ("log_softmax", {"axis": 0}, []),
    ("elu", {}, [0.0]),
    ("elu", {"alpha": 0.5}, [0.0]),
    ("selu", {}, [0.0]),
    ("celu", {"alpha": 2.0}, [0.0]),
    ("softplus", {}, []),
    ("softsign", {}, [0.0]),
    ("squareplus", {}, []),
    ("soft_shrink", {}, [-0.5, 0.5]),
    ("sparse_plus", {}, [-1.0, 1.0]),
    ("silu", {}, []),
    ("gelu", {}, []),
    ("gelu", {"approximate": True}, []),
    ("glu", {}, []),
    ("tanh", {}, []),
    ("tanh_shrink", {}, []),
    ("threshold", {"threshold": 0.5, "default_value": -1.0}, [0.5]),
    ("sigmoid", {}, []),
    ("sparse_sigmoid", {}, [-1.0, 1.0]),
    ("exponential", {}, []),
    ("hard_sigmoid", {}, [-3.0, 3.0]),
    ("hard_silu", {}, [-3.0, 3.0]),
    ("hard_tanh", {}, [-1.0, 1.0]),
    ("hard_shrink", {}, [-0.5, 0.5]),
    ("mish", {}, []),
    ("log_sigmoid", {}, []),
    ("sparsemax", {}, []),
    ("sparsemax", {"axis": 0}, []),
]
_IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, _ in ACTIVATIONS]


def _activation(name, kwargs):
    fn = getattr(activations, name)
    return lambda x: fn(x, **kwargs)


def _activation_input(rng, shape, kinks, name):
    x = rng.uniform(-7, 7, shape) if name not in ("exponential",) else rng.uniform(-3, 3, shape)
    if name == "glu":
        x = np.concatenate([x, x[..., ::-1] * 0.5], axis=-1)
    if name == "sparsemax":
        x = x * 0.3  # several entries on the support
    return away_from(x, kinks)


def test_every_builtin_activation_is_covered():
    covered = {name for name, _, _ in ACTIVATIONS} | {"linear"}
    builtin = {fn.__name__ for fn in activations.ALL_OBJECTS_DICT.values()}
    assert builtin <= covered


@pytest.mark.parametrize("name,kwargs,kinks", ACTIVATIONS, ids=_IDS)
@SETTINGS
@configs
def test_activation_finite_differences_float64(name, kwargs, kinks, shape, seed):
    rng = np.random.default_rng(seed)
    x = _activation_input(rng, shape, kinks, name)
    fn = _activation(name, kwargs)
    if name == "sparsemax":  # away from the support's edges (where the Jacobian jumps)
        y = np.asarray(fn(x))
        if np.any((y > 0) & (y < 1e-3)) or np.any((y == 0) & (np.abs(x) < 1e-12)):
            return
    check_fd(fn, [x], rng, tol=1e-6)


@pytest.fixture(scope="module")
def keras_activations():
    keras = pytest.importorskip("keras", reason="Keras' choices at kinks come from keras>=3.15 on torch")
    return keras.activations


def _torch_sparsemax(z, axis):
    """The Martins & Astudillo projection, written with torch ops (autograd gives its Jacobian)."""
    z = z.movedim(axis, -1)
    zs, _ = torch.sort(z, dim=-1, descending=True)
    ranks = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cs = torch.cumsum(zs, dim=-1)
    support = (zs - (cs - 1) / ranks > 0).to(z.dtype)
    k = support.sum(dim=-1, keepdim=True)
    tau = ((zs * support).sum(dim=-1, keepdim=True) - 1) / k
    return torch.clamp(z - tau, min=0).movedim(-1, axis)


def _keras_fn(keras_activations, name, kwargs):
    if name == "sparsemax":  # Keras <= 3.15's sparsemax has the wrong threshold (module docstring)
        return lambda t: _torch_sparsemax(t, kwargs.get("axis", -1))
    fn = getattr(keras_activations, name)
    return lambda t: fn(t, **kwargs)


@pytest.mark.parametrize("name,kwargs,kinks", ACTIVATIONS, ids=_IDS)
@SETTINGS
@configs
def test_activation_matches_torch_autograd_float32(keras_activations, name, kwargs, kinks, shape, seed):
    rng = np.random.default_rng(seed)
    x = _activation_input(rng, shape, kinks, name).astype("float32")
    fn = _activation(name, kwargs)
    v = rng.standard_normal(np.asarray(fn(x)).shape).astype("float32")
    _, (ours,) = tape_gradient(fn, [x], v)
    t = torch.tensor(x, requires_grad=True)
    out = _keras_fn(keras_activations, name, kwargs)(t)
    out.backward(torch.from_numpy(v))
    assert ours.dtype == np.float32
    assert_matches_torch(ours, t.grad.numpy(), fn, [x], v)


@pytest.mark.parametrize("name,kwargs,kinks", [a for a in ACTIVATIONS if a[2]],
                         ids=[i for i, a in zip(_IDS, ACTIVATIONS) if a[2]])
def test_activation_at_exactly_the_kink_is_keras_choice(keras_activations, name, kwargs, kinks):
    x = np.array(kinks, dtype="float64")
    _, (ours,) = tape_gradient(_activation(name, kwargs), [x], None)
    t = torch.tensor(x, requires_grad=True)
    _keras_fn(keras_activations, name, kwargs)(t).sum().backward()
    np.testing.assert_array_equal(ours, t.grad.numpy())


def test_documented_kink_values():
    def d(name, x, **kw):
        return tape_gradient(_activation(name, kw), [np.array(x, dtype="float64")], None)[1][0]

    np.testing.assert_array_equal(d("relu", [0.0]), [0.0])
    np.testing.assert_array_equal(d("leaky_relu", [0.0]), [0.2])
    np.testing.assert_array_equal(d("relu6", [0.0, 6.0]), [0.0, 0.0])
    np.testing.assert_array_equal(d("hard_tanh", [-1.0, 1.0]), [0.0, 0.0])
    np.testing.assert_array_equal(d("hard_silu", [-3.0, 3.0]), [0.0, 1.0])
    np.testing.assert_array_equal(d("relu", [1.0], max_value=1.0), [1.0])  # clamp's rule at max_value


def test_linear_returns_input_and_integer_inputs_get_no_gradient():
    x = np.array([1, 2, 3])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = activations.relu(x)
    assert y.dtype == np.float32
    assert tape.gradient(y, x) is None


def test_activation_gradient_is_deterministic():
    x = np.random.default_rng(5).standard_normal((6, 7)).astype("float32")
    out = []
    for _ in range(2):
        with gpuconv.GradientTape() as tape:
            tape.watch(x)
            y = ops.sum(activations.gelu(activations.softmax(x)))
        out.append(tape.gradient(y, x).tobytes())
    assert out[0] == out[1]

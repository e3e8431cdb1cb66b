"""GradientTape semantics (TensorFlow's): watching, auto-watched trainable variables, nesting,
persistence, source structures, unconnected gradients, output gradients, the error for an
unrecorded target, references released, float16 accumulation, determinism."""
import gc
import weakref

import numpy as np
import pytest

import gpuconv
from gpuconv import autodiff, ops
from gpuconv.variables import Variable


def _var(value, trainable=True, name="w"):
    return Variable(np.asarray(value, dtype="float64"), name=name, path=f"t/{name}", trainable=trainable)


def test_watched_array_gets_its_gradient():
    x = np.array([1.0, 2.0, 3.0])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = ops.sum(ops.square(x))
    np.testing.assert_array_equal(tape.gradient(y, x), 2 * x)


def test_unwatched_array_is_not_recorded_and_gets_no_gradient():
    x, z = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        assert not autodiff.recording(z)
        y = ops.sum(ops.multiply(x, z))
    gx, gz = tape.gradient(y, [x, z])
    np.testing.assert_array_equal(gx, z)
    assert gz is None


def test_trainable_variables_are_watched_automatically_non_trainable_are_not():
    w, c = _var([1.0, 2.0]), _var([5.0, 7.0], trainable=False, name="c")
    with gpuconv.GradientTape() as tape:
        y = ops.sum(ops.multiply(w.value, c.value))
    assert tape.watched_variables() == [w]
    gw, gc_ = tape.gradient(y, [w, c])
    np.testing.assert_array_equal(gw, [5.0, 7.0])
    assert gc_ is None


def test_non_trainable_variable_watched_explicitly():
    c = _var([5.0, 7.0], trainable=False)
    with gpuconv.GradientTape() as tape:
        tape.watch(c)
        y = ops.sum(ops.square(c.value))
    np.testing.assert_array_equal(tape.gradient(y, c), [10.0, 14.0])


def test_watch_accessed_variables_false_needs_explicit_watch():
    w = _var([1.0, 2.0])
    with gpuconv.GradientTape(watch_accessed_variables=False) as tape:
        v = w.value
        assert not autodiff.recording(v)
    with gpuconv.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(w)
        y = ops.sum(ops.multiply(w.value, 3.0))
    np.testing.assert_array_equal(tape.gradient(y, w), [3.0, 3.0])


def test_repeated_reads_of_a_variable_sum():
    w = _var([1.0, 2.0])
    x = np.ones((2,))
    with gpuconv.GradientTape() as tape:
        a = ops.multiply(w.array_like(x), 2.0)
        b = ops.multiply(w.array_like(x), 3.0)  # the same cached object again
        y = ops.sum(ops.add(a, b))
    np.testing.assert_array_equal(tape.gradient(y, w), [5.0, 5.0])


def test_nested_tapes_each_record():
    x = np.array([2.0, 3.0])
    with gpuconv.GradientTape() as outer:
        outer.watch(x)
        with gpuconv.GradientTape() as inner:
            inner.watch(x)
            y = ops.sum(ops.exp(x))
        z = ops.sum(ops.square(x))
    np.testing.assert_allclose(inner.gradient(y, x), np.exp(x))
    np.testing.assert_array_equal(outer.gradient(z, x), 2 * x)


def test_inner_tape_does_not_see_what_only_the_outer_watches():
    x = np.array([2.0, 3.0])
    with gpuconv.GradientTape() as outer:
        outer.watch(x)
        with gpuconv.GradientTape() as inner:
            y = ops.sum(ops.exp(x))
    with pytest.raises(ValueError, match="not recorded"):
        inner.gradient(y, x)
    np.testing.assert_allclose(outer.gradient(y, x), np.exp(x))


def test_non_persistent_tape_allows_one_gradient():
    x = np.array([1.0])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = ops.square(x)
    tape.gradient(y, x)
    with pytest.raises(RuntimeError, match="A non-persistent GradientTape can only be used to compute one set of "
                                           r"gradients \(or jacobians\)"):
        tape.gradient(y, x)


def test_persistent_tape_allows_several_gradients_and_reset():
    x = np.array([1.0, 2.0])
    with gpuconv.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = ops.square(x)
        z = ops.exp(x)
    np.testing.assert_array_equal(tape.gradient(y, x), 2 * x)
    np.testing.assert_allclose(tape.gradient(z, x), np.exp(x))
    np.testing.assert_array_equal(tape.gradient(y, x), 2 * x)
    tape.reset()
    with pytest.raises(ValueError):
        tape.gradient(y, x)


def test_sources_structure_is_kept():
    a, b, c = np.array([1.0]), np.array([2.0]), np.array([3.0])
    with gpuconv.GradientTape() as tape:
        tape.watch({"a": a, "rest": [b, (c,)]})
        y = ops.multiply(ops.multiply(a, b), c)
    g = tape.gradient(y, {"a": a, "rest": [b, (c,)]})
    assert set(g) == {"a", "rest"} and isinstance(g["rest"], list) and isinstance(g["rest"][1], tuple)
    np.testing.assert_array_equal(g["a"], [6.0])
    np.testing.assert_array_equal(g["rest"][0], [3.0])
    np.testing.assert_array_equal(g["rest"][1][0], [2.0])


def test_single_source_gives_single_gradient_and_targets_list_sums():
    x = np.array([1.0, 2.0])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y1, y2 = ops.square(x), ops.multiply(x, 3.0)
    g = tape.gradient([y1, y2], x)
    assert isinstance(g, np.ndarray)
    np.testing.assert_array_equal(g, 2 * x + 3)


@pytest.mark.parametrize("mode", ["none", "zero"])
def test_unconnected_gradients(mode):
    x = np.array([1.0, 2.0])
    u = np.zeros((2, 3), dtype="float32")
    w = _var([[1.0]])
    with gpuconv.GradientTape() as tape:
        tape.watch([x, u])
        y = ops.sum(x)
    gu, gw = tape.gradient(y, [u, w], unconnected_gradients=mode)
    if mode == "none":
        assert gu is None and gw is None
    else:
        assert gu.shape == (2, 3) and gu.dtype == np.float32 and not gu.any()
        assert gw.shape == (1, 1) and gw.dtype == np.float64 and not gw.any()


def test_unconnected_gradients_bad_value_names_the_argument():
    x = np.array([1.0])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = ops.square(x)
    with pytest.raises(ValueError, match="unconnected_gradients"):
        tape.gradient(y, x, unconnected_gradients="zeros")


def test_output_gradients_weight_the_target():
    x = np.array([1.0, 2.0, 3.0])
    v = np.array([0.5, -1.0, 2.0])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = ops.square(x)
    np.testing.assert_array_equal(tape.gradient(y, x, output_gradients=v), 2 * x * v)


def test_plain_numpy_target_raises_a_clear_error():
    x = np.array([1.0, 2.0])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = ops.square(x)
        loss = y.sum()  # plain NumPy: not recorded
    with pytest.raises(ValueError, match=r"plain NumPy/CuPy operators.*gpuconv\.ops\.add"):
        tape.gradient(loss, x)


def test_gradient_of_a_watched_source_itself_is_ones():
    x = np.array([1.0, 2.0])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
    np.testing.assert_array_equal(tape.gradient(x, x), [1.0, 1.0])


def test_an_op_returning_its_input_does_not_loop():
    x = np.array([1.0, 2.0])
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = ops.cast(x, "float64")  # the very same object
        z = ops.multiply(y, 4.0)
    assert y is x
    np.testing.assert_array_equal(tape.gradient(z, x), [4.0, 4.0])


@pytest.mark.parametrize("persistent", [False, True])
def test_references_released_after_gradient_or_with_the_tape(persistent):
    big = np.ones((256, 256))
    with gpuconv.GradientTape(persistent=persistent) as tape:
        tape.watch(big)
        y = ops.sum(ops.exp(big))
    ref = weakref.ref(big)
    tape.gradient(y, big)
    del big, y
    gc.collect()
    # A non-persistent tape lets go after its one gradient(); a persistent one when deleted.
    assert (ref() is not None) == persistent
    del tape
    gc.collect()
    assert ref() is None


def test_recording_is_false_without_a_tape_and_after_exit():
    x = np.ones(3)
    assert not autodiff.recording(x, None)
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        assert autodiff.recording(None, x)
        y = ops.exp(x)
        assert autodiff.recording(y)
    assert not autodiff.recording(x)


def test_stop_recording():
    x = np.ones(3)
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        with tape.stop_recording():
            y = ops.exp(x)
        assert not autodiff.recording(y)


def test_record_identity_moves_and_casts_back():
    x = np.array([1.0, 2.0], dtype="float64")
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        y = x.astype("float32")
        autodiff.record_identity(x, y)
        z = ops.sum(ops.multiply(y, np.float32(2.0)))
    g = tape.gradient(z, x)
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, [2.0, 2.0])


def test_record_backward_gets_zeros_for_outputs_without_gradient():
    x = np.array([1.0, 2.0])
    seen = []

    def backward(g1, g2):
        seen.append((g1.copy(), g2.copy()))
        return (g1 + 10 * g2,)

    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        a, b = x * 1.0, x * 2.0
        autodiff.record((x,), (a, b), backward)
        y = ops.sum(a)
    np.testing.assert_array_equal(tape.gradient(y, x), [1.0, 1.0])
    np.testing.assert_array_equal(seen[0][1], [0.0, 0.0])
    assert len(seen) == 1


def test_float16_gradients_accumulate_in_float32():
    # 4000 contributions of float16(0.1) to one element: float16 partial sums would stall near
    # 256 (spacing 0.25); the float32 sum is rounded to float16 once, at the end.
    x = np.ones((1,), dtype="float16")
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        parts = [ops.multiply(x, np.float16(0.1)) for _ in range(4000)]
        total = ops.sum(ops.concatenate(parts, axis=0))
    g = tape.gradient(total, x)
    acc = np.float32(0.0)
    for _ in range(4000):
        acc = np.float32(acc + np.float32(np.float16(0.1)))
    assert g.dtype == np.float16
    assert g[0] == np.float16(acc)
    assert abs(float(g[0]) - 400.0) < 1.0


def test_same_gradient_twice_is_bitwise_identical():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((5, 7)), rng.standard_normal((7, 3))

    def run():
        with gpuconv.GradientTape() as tape:
            tape.watch([x, w])
            y = ops.logsumexp(ops.matmul(ops.exp(ops.multiply(x, 0.3)), w), axis=1)
            loss = ops.mean(ops.square(y))
        return tape.gradient(loss, [x, w])

    first, second = run(), run()
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()


def test_watch_refuses_non_arrays():
    with gpuconv.GradientTape() as tape:
        with pytest.raises(TypeError, match="tensor"):
            tape.watch("x")


def test_layer_trainable_weights_gradient():
    layer = gpuconv.layers.Dense(3, dtype="float64")
    x = np.random.default_rng(0).standard_normal((4, 5))
    layer(x)
    with gpuconv.GradientTape() as tape:
        loss = ops.sum(layer(x))
    gk, gb = tape.gradient(loss, layer.trainable_weights)
    np.testing.assert_allclose(gk, np.broadcast_to(x.sum(axis=0)[:, None], (5, 3)))
    np.testing.assert_array_equal(gb, [4.0, 4.0, 4.0])


def test_a_backward_skips_gradients_no_source_needs(monkeypatch):
    """The batch fed to a first convolution is not watched: its input gradient (a transposed
    convolution) is never computed; a watched one is, and the kernel gradient is the same."""
    from gpuconv.cpu import engine as cpu

    calls = []
    real = cpu.conv_transpose
    monkeypatch.setattr(cpu, "conv_transpose", lambda *a: calls.append(1) or real(*a))
    layer = gpuconv.layers.Conv2D(2, 3)
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 1)).astype("float32")
    with gpuconv.GradientTape() as tape:
        loss = gpuconv.ops.sum(layer(x))
    (dw_only,) = tape.gradient(loss, [layer.kernel])
    assert calls == []
    with gpuconv.GradientTape() as tape:
        tape.watch(x)
        loss = gpuconv.ops.sum(layer(x))
    dw, dx = tape.gradient(loss, [layer.kernel, x])
    assert calls == [1] and dx.shape == x.shape
    np.testing.assert_array_equal(dw, dw_only)


@pytest.mark.parametrize("activation", ["relu", "relu6"])
@pytest.mark.parametrize("layer_class,kwargs", [
    (gpuconv.layers.Conv2D, {"filters": 3, "kernel_size": 3}),
    (gpuconv.layers.Conv2DTranspose, {"filters": 3, "kernel_size": 3, "strides": 2}),
    (gpuconv.layers.DepthwiseConv2D, {"kernel_size": 3}),
    (gpuconv.layers.LocallyConnected2D, {"filters": 3, "kernel_size": 3}),
])
def test_a_fused_relu_differentiates_like_a_separate_one(layer_class, kwargs, activation, backend_name):
    """Under a tape a convolution keeps relu / relu6 fused (one record, the derivative taken
    from its output); the gradients equal the unfused layer followed by the recorded
    activation, bit for bit (y > 0 exactly where the pre-activation is > 0)."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 7, 7, 2)) * 4).astype("float32")  # relu6 clips some outputs
    fused = layer_class(activation=activation, **kwargs)
    plain = layer_class(**kwargs)
    fused.build(x.shape)
    plain.build(x.shape)
    plain.set_weights(fused.get_weights())
    act = getattr(gpuconv.activations, activation)
    grads, records = [], []
    for layer, after in ((fused, None), (plain, act)):
        with gpuconv.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            if after is not None:
                y = after(y)
            loss = ops.sum(ops.multiply(y, y))
        records.append(len(tape._records))
        grads.append([gpuconv.to_numpy(g) for g in tape.gradient(loss, [x] + layer.trainable_weights)])
    fused_here = activation in gpuconv.backend.engine().FUSED_ACTIVATIONS  # the NumPy engine has no relu6
    assert records[0] == records[1] - fused_here  # a fused activation is not recorded on its own
    for got, want in zip(*grads):
        np.testing.assert_array_equal(got, want)

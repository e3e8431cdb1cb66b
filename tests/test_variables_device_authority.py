"""Device-resident training weights: after an optimizer updates ``Variable.array_for_update(x)``
in place on a device (the cuda-emulator here, or a GPU), the device copy is the authority and
every host read sees the update (``numpy()``, ``value``, ``np.asarray``, ``array_like`` on the host
and on the device, a layer's and a model's ``get_weights``, a deep copy); the same device array is
handed out on the next step (weights never move between host and device during training); and a
later ``assign`` wins over the device copy.
"""
import copy

import numpy as np

from conftest import CUDA_MARKS, gpu_xp
from optimizer_cases import initial_slots, scalars_for
from gpuconv.variables import Variable

pytestmark = CUDA_MARKS

START = np.arange(6, dtype=np.float32).reshape(2, 3)


def _variable():
    return Variable(START, name="kernel", path="dense/kernel")


def _device_like(xp):
    """A device array: what the optimizer passes to say where the update happens."""
    return xp.zeros((1,), dtype=np.float32)


def _updated_once():
    """(xp, the variable, a device array of its device, the array updated): after one step that
    added 1 in place on the device."""
    xp = gpu_xp()
    v = _variable()
    like = _device_like(xp)
    a = v.array_for_update(like)
    a += 1
    return xp, v, like, a


def _host_views(v, xp, like):
    """Every way to read the value, as host arrays."""
    return {"numpy()": v.numpy(), "value": np.array(v.value), "__array__": np.asarray(v),
            "array_like(host)": np.array(v.array_like(np.zeros(1))), "array_like(device)": xp.asnumpy(v.array_like(like))}


def test_an_update_on_the_device_is_seen_by_every_read():
    xp, v, like, a = _updated_once()
    assert type(a) is not np.ndarray, "the array to update lives on the device"
    for what, seen in _host_views(v, xp, like).items():
        np.testing.assert_array_equal(seen, START + 1, err_msg=what)
    assert v.array_like(like) is a, "the device copy is reused, not uploaded again"


def test_each_step_updates_the_same_device_array():
    xp, v, like, first = _updated_once()
    np.testing.assert_array_equal(v.numpy(), START + 1)  # a host read between two steps
    second = v.array_for_update(like)
    assert second is first
    second *= 2
    np.testing.assert_array_equal(v.numpy(), (START + 1) * 2)
    np.testing.assert_array_equal(np.array(v.value), (START + 1) * 2)


def test_a_later_assign_wins_over_the_device_copy():
    xp, v, like, stale = _updated_once()
    new = np.full((2, 3), -5.0, np.float32)
    v.assign(new)
    stale += 100  # the old device array is no longer the variable's
    for what, seen in _host_views(v, xp, like).items():
        np.testing.assert_array_equal(seen, new, err_msg=what)
    assert v.array_like(like) is not stale


def test_an_assign_then_an_update_again():
    xp = gpu_xp()
    v = _variable()
    like = _device_like(xp)
    v.array_for_update(like)[...] = 7
    v.assign(START)
    a = v.array_for_update(like)
    np.testing.assert_array_equal(xp.asnumpy(a), START, err_msg="the update starts from the assigned value")
    a += 3
    np.testing.assert_array_equal(v.numpy(), START + 3)


def test_a_host_update_after_device_updates_starts_from_the_device_value():
    xp, v, like, _ = _updated_once()
    host = v.array_for_update(np.zeros(1))
    assert type(host) is np.ndarray
    np.testing.assert_array_equal(host, START + 1)
    host += 1
    np.testing.assert_array_equal(xp.asnumpy(v.array_like(like)), START + 2, err_msg="a fresh upload, not the old copy")


def test_a_deep_copy_and_a_layer_see_the_device_value():
    import gpuconv

    xp = gpu_xp()
    layer = gpuconv.layers.Dense(3)
    layer.build((None, 2))
    like = _device_like(xp)
    before = layer.get_weights()
    for w in layer.weights:
        w.array_for_update(like)[...] += 0.5
    for got, old in zip(layer.get_weights(), before):
        np.testing.assert_array_equal(got, old + np.float32(0.5))
    clone = copy.deepcopy(layer.weights[0])
    np.testing.assert_array_equal(clone.numpy(), before[0] + np.float32(0.5))


def test_a_model_reads_weights_an_optimizer_step_wrote():
    """The whole path: the CUDA engine's optimizer step on the arrays of array_for_update, then the
    model's get_weights equals the NumPy engine's step on host copies."""
    import gpuconv
    from gpuconv.cpu import engine as cpu
    from gpuconv.cuda import engine as eng

    xp = gpu_xp()
    model = gpuconv.Sequential([gpuconv.layers.Dense(4), gpuconv.layers.Dense(2)])
    model.build((None, 3))
    rng = np.random.default_rng(0)
    like = _device_like(xp)
    host_params = model.get_weights()
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in host_params]
    host_slots = [initial_slots("adam", p.shape, p.dtype, rng) for p in host_params]
    scalars = scalars_for("adam", "float32")
    params = [w.array_for_update(like) for w in model.weights]
    eng.optimizer_update("adam", scalars, params, [xp.asarray(g) for g in grads],
                         [[xp.asarray(s) for s in st] for st in host_slots], [0.001] * len(params))
    cpu.optimizer_update("adam", scalars, host_params, grads, host_slots, [0.001] * len(params))
    for got, want in zip(model.get_weights(), host_params):
        np.testing.assert_array_equal(got, want)
    assert all(w.array_for_update(like) is p for w, p in zip(model.weights, params))

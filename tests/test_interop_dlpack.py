"""Arrays from other libraries (issue 15): torch tensors, DLPack producers and ``__array__``
objects go into layers, ops and ``fit``/``predict`` through ``gpuconv.arrays.as_array``, and
gpuconv's outputs go back out through DLPack (``torch.from_dlpack``).

What is checked here, with torch's CPU tensors (JAX takes the same protocol path):
- a tensor gives exactly the output of the NumPy array it views (float16/32/64, contiguous and
  strided views), in layers and ops, on the NumPy engine and on the CUDA engine;
- the NumPy path takes the tensor's memory without a copy, and leaves the tensor as it was;
- a tensor that requires grad is refused with a TypeError that names the argument, the type
  and says to detach; odd dtypes get the errors NumPy input gets;
- an object that speaks only ``__array__``, or only ``__dlpack__``, is taken;
- ``torch.from_dlpack`` of an output (NumPy engine, cuda-emulator device arrays) views it;
- on a real GPU, a CUDA producer is taken as a CuPy view of the same device pointer.
"""
import numpy as np
import pytest

import gpuconv
from gpuconv import arrays, backend, ops
from gpuconv import layers as L

from conftest import assert_close, gpu_xp, requires_real_gpu

torch = pytest.importorskip("torch", reason="the interop tests use torch tensors as the foreign arrays")

DTYPES = ("float32", "float16", "float64")
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "float64": torch.float64}

# Layer factories, each with the NHWC (or 2-D for Dense) input shape it takes.
LAYERS = {
    "Conv2D": (lambda dtype: L.Conv2D(4, 3, padding="same", activation="relu", dtype=dtype), (2, 7, 6, 3)),
    "DepthwiseConv2D": (lambda dtype: L.DepthwiseConv2D(3, depth_multiplier=2, dtype=dtype), (2, 7, 6, 3)),
    "Dense": (lambda dtype: L.Dense(5, dtype=dtype), (4, 6)),
    "MaxPooling2D": (lambda dtype: L.MaxPooling2D(2, dtype=dtype), (2, 7, 6, 3)),
}


class ArrayOnly:
    """A foreign array that speaks only ``__array__`` (NumPy's oldest protocol)."""

    def __init__(self, values):
        self._values = values

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._values, dtype=dtype)


class DLPackOnly:
    """A foreign array that speaks only DLPack (as a JAX array or any array-API library does)."""

    def __init__(self, tensor):
        self._tensor = tensor

    def __dlpack__(self, **kwargs):
        return self._tensor.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._tensor.__dlpack_device__()


def tensor(rng, shape, dtype, view):
    """A torch tensor of ``shape``: 'contiguous', or 'strided' (a ``permute`` view of a tensor
    stored with its axes reversed: the same values, other strides)."""
    values = rng.standard_normal(shape).astype(dtype)
    if view == "contiguous":
        return torch.from_numpy(values.copy())
    reverse = tuple(reversed(range(len(shape))))  # its own inverse
    t = torch.from_numpy(np.ascontiguousarray(values.transpose(reverse))).permute(*reverse)
    assert not t.is_contiguous() and tuple(t.shape) == shape
    return t


class numpy_backend:
    """The NumPy backend for the duration of a ``with`` block (the previous choice restored)."""

    def __enter__(self):
        self._previous = backend.requested_backend()
        gpuconv.set_backend("numpy")

    def __exit__(self, *exc):
        backend.reset()
        gpuconv.set_backend(self._previous)


def snapshot(t):
    return t.clone(), t.stride(), t.dtype, t.requires_grad


def assert_unchanged(t, before):
    values, stride, dtype, requires_grad = before
    assert torch.equal(t, values) and t.stride() == stride and t.dtype == dtype and t.requires_grad == requires_grad


# ---- as_array: the one conversion --------------------------------------------------------------
@pytest.mark.parametrize("view", ["contiguous", "strided"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_cpu_tensor_becomes_a_numpy_view_of_its_memory(rng, dtype, view):
    t = tensor(rng, (2, 5, 4, 3), dtype, view)
    a = arrays.as_array(t, "x")
    assert type(a) is np.ndarray and a.dtype == np.dtype(dtype) and a.shape == tuple(t.shape)
    assert np.shares_memory(a, t.numpy())
    assert a.strides == t.numpy().strides
    np.testing.assert_array_equal(a, t.numpy())


def test_a_dlpack_only_object_is_taken_without_a_copy(rng):
    t = tensor(rng, (3, 4), "float32", "contiguous")
    a = arrays.as_array(DLPackOnly(t), "x")
    assert type(a) is np.ndarray and np.shares_memory(a, t.numpy())


def test_numpy_arrays_pass_unchanged_and_lists_are_converted(rng):
    x = rng.standard_normal((2, 3))
    assert arrays.as_array(x, "x") is x
    np.testing.assert_array_equal(arrays.as_array([[1.0, 2.0]], "x"), np.array([[1.0, 2.0]]))


@pytest.mark.parametrize("value", [torch.ones(2), DLPackOnly(torch.ones(2)), ArrayOnly([1.0]), np.ones(2)])
def test_is_array_like_sees_every_protocol(value):
    assert arrays.is_array_like(value)


@pytest.mark.parametrize("value", [1.0, "text", object(), None])
def test_is_array_like_refuses_what_speaks_no_protocol(value):
    assert not arrays.is_array_like(value)


def test_none_is_refused_naming_the_argument():
    with pytest.raises(TypeError, match=r"Argument `kernel` must be an array. Received: kernel=None"):
        arrays.as_array(None, "kernel")


def test_a_tensor_that_requires_grad_is_refused_with_the_way_out():
    t = torch.ones(2, 3, requires_grad=True)
    with pytest.raises(TypeError) as info:
        arrays.as_array(t, "inputs", 'layer "conv2d"')
    message = str(info.value)
    assert 'Argument `inputs` of layer "conv2d"' in message and "torch.Tensor" in message
    assert "call `.detach()` on it first (gpuconv does not take part in torch's autograd)" in message
    assert t.requires_grad and t.grad is None  # the caller's tensor is left as it was


def test_a_dtype_no_protocol_carries_is_refused_naming_the_argument():
    # (bfloat16 is carried: read as its bits, tests/test_bfloat16.py; float8 is not)
    with pytest.raises(TypeError, match=r"Argument `x` must be an array. Received: x of type torch.Tensor .*Float8"):
        arrays.as_array(torch.ones(2, dtype=torch.float8_e4m3fn), "x")


def test_a_cuda_producer_without_cupy_is_refused_with_the_reason(monkeypatch):
    class CudaOnly:  # says it lives on CUDA device 0 (DLPack kDLCUDA == 2)
        def __dlpack__(self, **kwargs):
            raise AssertionError("never exported: CuPy is missing")

        def __dlpack_device__(self):
            return (2, 0)

    import builtins

    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    with pytest.raises(TypeError, match=r"Argument `x` is a CUDA array .*CuPy, which is not installed"):
        arrays.as_array(CudaOnly(), "x")


# ---- layers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("view", ["contiguous", "strided"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer_name", sorted(LAYERS))
def test_a_tensor_into_a_layer_gives_the_numpy_arrays_output(rng, layer_name, dtype, view):
    make, shape = LAYERS[layer_name]
    layer = make(dtype)
    t = tensor(rng, shape, dtype, view)
    before = snapshot(t)
    y = layer(t)
    assert type(y) is np.ndarray
    np.testing.assert_array_equal(y, layer(t.numpy()))
    assert_unchanged(t, before)


def test_a_tensor_of_another_dtype_is_cast_as_a_numpy_array_is(rng):
    layer = L.Conv2D(2, 3)  # float32 policy
    t = tensor(rng, (1, 5, 5, 2), "float64", "contiguous")
    np.testing.assert_array_equal(layer(t), layer(t.numpy()))
    ints = torch.arange(50, dtype=torch.int32).reshape(1, 5, 5, 2)
    np.testing.assert_array_equal(layer(ints), layer(ints.numpy()))


@pytest.mark.parametrize("make", [ArrayOnly, lambda values: DLPackOnly(torch.from_numpy(values))],
                         ids=["__array__ only", "__dlpack__ only"])
def test_an_object_speaking_one_protocol_into_a_layer(rng, make):
    layer = L.DepthwiseConv2D(3)
    values = rng.standard_normal((2, 6, 6, 3)).astype("float32")
    np.testing.assert_array_equal(layer(make(values)), layer(values))


def test_a_tensor_that_requires_grad_into_a_layer_names_the_layer(rng):
    layer = L.Conv2D(2, 3)
    t = tensor(rng, (1, 5, 5, 2), "float32", "contiguous").requires_grad_(True)
    with pytest.raises(TypeError, match=r'Argument `inputs` of layer "conv2d\S*" is a torch.Tensor that requires '
                                        r"grad.*detach"):
        layer(t)
    assert t.grad is None


def test_a_sequential_model_takes_a_tensor(rng):
    model = gpuconv.Sequential([L.Input((6, 6, 2)), L.Conv2D(3, 3), L.Flatten(), L.Dense(2)])
    bare = gpuconv.Sequential([L.Conv2D(3, 3), L.Flatten(), L.Dense(2)])
    t = tensor(rng, (2, 6, 6, 2), "float32", "strided")
    np.testing.assert_array_equal(model(t), model(t.numpy()))
    np.testing.assert_array_equal(bare(t), bare(t.numpy()))
    with pytest.raises(TypeError, match=r"detach"):
        bare(t.clone().requires_grad_(True))


@pytest.mark.parametrize("dtype,kind", [("bool", "b"), ("complex64", "c")])
def test_odd_dtypes_get_the_errors_numpy_input_gets(dtype, kind):
    """A bool tensor is cast like a bool array; a complex one is refused with the same words."""
    values = (np.arange(5 * 5 * 2).reshape(1, 5, 5, 2) % 3 == 0).astype(dtype)
    layer = L.Conv2D(2, 3)
    t = torch.from_numpy(values)
    if kind == "b":
        np.testing.assert_array_equal(layer(t), layer(values))
    else:
        with pytest.raises(TypeError) as from_numpy:
            layer(values)
        with pytest.raises(TypeError) as from_torch:
            layer(t)
        assert str(from_torch.value) == str(from_numpy.value)


# ---- ops ----------------------------------------------------------------------------------------
OPS = {
    "conv": lambda x, k, dk, pk: ops.conv(x, k, padding="same"),
    "depthwise_conv": lambda x, k, dk, pk: ops.depthwise_conv(x, dk, strides=2),
    "separable_conv": lambda x, k, dk, pk: ops.separable_conv(x, dk, pk),
    "max_pool": lambda x, k, dk, pk: ops.max_pool(x, 2),
    "average_pool": lambda x, k, dk, pk: ops.average_pool(x, 3, strides=1, padding="same"),
}


@pytest.mark.parametrize("view", ["contiguous", "strided"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", sorted(OPS))
def test_tensors_into_an_op_give_the_numpy_arrays_output(rng, op, dtype, view):
    x = tensor(rng, (2, 7, 6, 3), dtype, view)
    kernels = [torch.from_numpy(rng.standard_normal(s).astype(dtype)) for s in ((3, 3, 3, 4), (3, 3, 3, 2), (1, 1, 6, 5))]
    before = [snapshot(a) for a in [x, *kernels]]
    y = OPS[op](x, *kernels)
    assert type(y) is np.ndarray
    np.testing.assert_array_equal(y, OPS[op](x.numpy(), *(k.numpy() for k in kernels)))
    for a, b in zip([x, *kernels], before):
        assert_unchanged(a, b)


def test_an_op_names_the_argument_that_requires_grad(rng):
    x = tensor(rng, (1, 5, 5, 2), "float32", "contiguous")
    kernel = torch.ones(3, 3, 2, 2, requires_grad=True)
    with pytest.raises(TypeError, match=r"Argument `kernel` is a torch.Tensor that requires grad.*detach"):
        ops.conv(x, kernel)


def test_an_op_refuses_a_bool_tensor_as_it_refuses_a_bool_array():
    values = np.ones((1, 5, 5, 2), dtype=bool)
    with pytest.raises(TypeError) as from_numpy:
        ops.max_pool(values, 2)
    with pytest.raises(TypeError) as from_torch:
        ops.max_pool(torch.from_numpy(values), 2)
    assert str(from_torch.value) == str(from_numpy.value) and "bool" in str(from_torch.value)


# ---- outputs out through DLPack -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_from_dlpack_views_a_numpy_engine_output(rng, dtype):
    y = L.Conv2D(3, 3, dtype=dtype)(tensor(rng, (2, 6, 6, 2), dtype, "contiguous"))
    back = torch.from_dlpack(y)
    assert back.dtype == TORCH_DTYPES[dtype] and tuple(back.shape) == y.shape
    assert np.shares_memory(back.numpy(), y)
    np.testing.assert_array_equal(back.numpy(), y)


# ---- fit / predict / evaluate -------------------------------------------------------------------
def regression_model():
    model = gpuconv.Sequential([L.Input((5, 5, 2)), L.Conv2D(2, 3, activation="relu"), L.Flatten(), L.Dense(1)])
    model.compile(optimizer=gpuconv.optimizers.SGD(learning_rate=0.05), loss="mse")
    return model


def twin(model):
    other = gpuconv.Sequential.from_config(model.get_config())
    other.set_weights(model.get_weights())
    other.compile(optimizer=gpuconv.optimizers.SGD(learning_rate=0.05), loss="mse")
    return other


def test_fit_evaluate_predict_on_tensors_equal_numpy(rng):
    x = tensor(rng, (8, 5, 5, 2), "float32", "strided")
    y = torch.from_numpy(rng.standard_normal((8, 1)).astype("float32"))
    before = [snapshot(x), snapshot(y)]
    on_tensors = regression_model()
    on_arrays = twin(on_tensors)
    history_t = on_tensors.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    history_a = on_arrays.fit(x.numpy(), y.numpy(), batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert history_t.history["loss"] == history_a.history["loss"]
    for wt, wa in zip(on_tensors.get_weights(), on_arrays.get_weights()):
        np.testing.assert_array_equal(wt, wa)
    assert on_tensors.evaluate(x, y, verbose=0) == on_arrays.evaluate(x.numpy(), y.numpy(), verbose=0)
    np.testing.assert_array_equal(on_tensors.predict(x, verbose=0), on_arrays.predict(x.numpy(), verbose=0))
    np.testing.assert_array_equal(on_tensors.predict_on_batch(x), on_arrays.predict_on_batch(x.numpy()))
    for t, b in zip((x, y), before):
        assert_unchanged(t, b)


def test_predict_checks_a_tensor_as_the_array_it_views():
    model = regression_model()
    empty = torch.zeros(0, 5, 5, 2)
    assert model.predict(empty, verbose=0).shape == model.predict(empty.numpy(), verbose=0).shape == (0, 1)
    with pytest.raises(ValueError, match=r"`predict` expects an array with a batch axis. Received: x of shape \(\)"):
        model.predict(torch.tensor(1.0), verbose=0)


def test_train_on_batch_takes_dlpack_only_objects(rng):
    x = rng.standard_normal((4, 5, 5, 2)).astype("float32")
    y = rng.standard_normal((4, 1)).astype("float32")
    on_objects = regression_model()
    on_arrays = twin(on_objects)
    loss_o = on_objects.train_on_batch(DLPackOnly(torch.from_numpy(x)), DLPackOnly(torch.from_numpy(y)))
    assert loss_o == on_arrays.train_on_batch(x, y)
    for wo, wa in zip(on_objects.get_weights(), on_arrays.get_weights()):
        np.testing.assert_array_equal(wo, wa)


def test_fit_refuses_targets_that_require_grad_naming_them(rng):
    model = regression_model()
    x = torch.from_numpy(rng.standard_normal((4, 5, 5, 2)).astype("float32"))
    y = torch.zeros(4, 1, requires_grad=True)
    with pytest.raises(TypeError, match=r"Argument `y` is a torch.Tensor that requires grad.*detach"):
        model.fit(x, y, epochs=1, verbose=0)
    assert y.grad is None


# ---- the CUDA engine ----------------------------------------------------------------------------
@pytest.mark.parametrize("layer_name", ["Conv2D", "MaxPooling2D"])
def test_a_cpu_tensor_on_the_cuda_engine_gives_the_numpy_engines_result(rng, backend_name, layer_name):
    """On the cuda backend (a real GPU, or the cuda-emulator) a CPU tensor is uploaded as a NumPy
    array is; the result is the NumPy engine's."""
    make, shape = LAYERS[layer_name]
    layer = make("float32")
    t = tensor(rng, shape, "float32", "strided")
    before = snapshot(t)
    y = layer(t)
    if backend_name == "cuda":
        assert type(y) is gpu_xp().ndarray  # a plain device array: CuPy's, or the emulator's DeviceArray
    with numpy_backend():
        expected = layer(t.numpy())
    assert_close(y, expected, "float32")
    assert_unchanged(t, before)


def test_torch_from_dlpack_views_an_output_of_either_engine(rng, backend_name):
    """The emulator's device arrays are host memory (an ndarray subclass): DLPack exports them as
    CPU tensors over the same buffer; on a real GPU the output is a CuPy array torch reads as a
    CUDA tensor."""
    y = L.Conv2D(3, 3)(tensor(rng, (2, 6, 6, 2), "float32", "contiguous"))
    if arrays.is_cupy_array(y) and not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} has no CUDA here: it cannot import a CUDA DLPack capsule")
    back = torch.from_dlpack(y)
    assert tuple(back.shape) == tuple(y.shape) and back.dtype == torch.float32
    if arrays.is_cupy_array(y):
        assert back.device.type == "cuda" and back.data_ptr() == y.data.ptr
    else:
        assert back.device.type == "cpu" and np.shares_memory(back.numpy(), np.asarray(y))
        assert np.shares_memory(np.from_dlpack(y), np.asarray(y))
    np.testing.assert_array_equal(back.cpu().numpy(), gpuconv.to_numpy(y))


@requires_real_gpu
def test_a_cuda_producer_is_taken_without_a_copy_and_read_back_without_one(rng, restore_backend):
    """A CUDA DLPack producer (wrapped so only the protocol is seen) becomes a CuPy view of the
    same device pointer; the layer's output is a plain cupy.ndarray that torch views in place."""
    import cupy

    gpuconv.set_backend("cuda")
    values = rng.standard_normal((2, 7, 6, 3)).astype("float32")
    device_values = cupy.asarray(values)
    producer = DLPackOnly(device_values)
    view = arrays.as_array(producer, "inputs")
    assert type(view) is cupy.ndarray and view.data.ptr == device_values.data.ptr
    layer = L.Conv2D(4, 3)
    y = layer(producer)
    assert type(y) is cupy.ndarray
    with numpy_backend():
        assert_close(y, layer(values), "float32")
    if torch.cuda.is_available():
        t = torch.from_numpy(values).cuda()
        assert arrays.as_array(t, "inputs").data.ptr == t.data_ptr()
        back = torch.from_dlpack(layer(t))
        assert back.is_cuda
        assert_close(back.cpu().numpy(), gpuconv.to_numpy(y), "float32")

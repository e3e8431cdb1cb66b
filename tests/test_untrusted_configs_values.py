"""Issue 8, section 5: values that used to be accepted and silently wrong.

- A negative ZeroPadding (any rank, any form: int, per-axis int, pair) raises ValueError naming
  `padding` and echoing the value, at construction and so from a config too. Keras 3.15 accepts a
  negative *int* for ZeroPadding2D/3D and then reports negative sizes (ZeroPadding2D(-3) on 4x4:
  compute_output_shape (1, -2, -2, 1), while the call fails in torch's narrow()); we refuse it with
  the text Keras uses for a negative int cropping. compute_output_shape never returns a negative size.
- set_weights refuses complex values (NumPy drops the imaginary part with only a warning; Keras
  3.15 does the same on the torch backend) and object, string and bytes arrays with a TypeError
  naming the weight, before assigning anything.
"""
import itertools
import warnings

import numpy as np
import pytest

from gpuconv import Sequential
from gpuconv import initializers
from gpuconv import layers as L

ZERO_PADDINGS = {1: L.ZeroPadding1D, 2: L.ZeroPadding2D, 3: L.ZeroPadding3D}

NEGATIVE_PADDINGS = [
    (2, -3, "`padding` cannot be negative. Received: padding=-3."),
    (3, -1, "`padding` cannot be negative. Received: padding=-1."),
    (1, -2, "Received padding=-2, including values {-2} that do not satisfy `value >= 0`"),
    (1, (2, -1), "Received padding=(2, -1), including values {-1} that do not satisfy `value >= 0`"),
    (2, (1, -1), "Received 2nd entry of padding=-1, including values {-1} that do not satisfy `value >= 0`"),
    (2, ((0, 0), (-1, 2)), "Received 2nd entry of padding=(-1, 2), including values {-1}"),
    (3, (0, (1, -2), 3), "Received 2nd entry of padding=(1, -2), including values {-2}"),
]


@pytest.mark.parametrize("rank, padding, text", NEGATIVE_PADDINGS, ids=[str(p) for _, p, _ in NEGATIVE_PADDINGS])
def test_negative_zero_padding_is_refused_at_construction(rank, padding, text):
    with pytest.raises(ValueError, match="padding") as info:
        ZERO_PADDINGS[rank](padding)
    assert text in str(info.value)


def test_negative_zero_padding_in_a_config_is_refused():
    config = L.ZeroPadding2D(1).get_config()
    config["padding"] = [[-3, -3], [-3, -3]]
    with pytest.raises(ValueError, match=r"entry of padding.*\{-3\}"):
        L.ZeroPadding2D.from_config(config)


def test_issue_example_zero_padding2d_minus_3():
    with pytest.raises(ValueError, match=r"`padding` cannot be negative. Received: padding=-3\."):
        L.ZeroPadding2D(-3)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_zero_padding_output_shape_is_never_negative(rank):
    cls = ZERO_PADDINGS[rank]
    for pads in itertools.product(range(3), repeat=2):
        layer = cls(pads if rank == 1 else (pads,) * rank)
        for size in (0, 1, 4):
            shape = (2,) + (size,) * rank + (3,)
            out = layer.compute_output_shape(shape)
            assert all(d >= 0 for d in out) and out[1:-1] == (size + sum(pads),) * rank
            y = layer(np.ones(shape, np.float32))
            assert y.shape == out
    with pytest.raises(ValueError, match="Negative dimensions are not allowed"):
        cls().compute_output_shape((1,) + (-5,) * rank + (1,))


# --------------------------------------------------------------------------------------------
# set_weights
# --------------------------------------------------------------------------------------------
def _dense():
    layer = L.Dense(2, name="dense_w")
    layer.build((None, 3))
    return layer


BAD_VALUES = {
    "complex": lambda shape: np.ones(shape) * (1 + 2j),
    "complex64 zero imaginary": lambda shape: np.ones(shape, np.complex64),
    "object": lambda shape: np.ones(shape).astype(object),
    "str": lambda shape: np.full(shape, "1.0"),
    "bytes": lambda shape: np.full(shape, b"1"),
}


@pytest.mark.parametrize("bad", list(BAD_VALUES))
def test_set_weights_refuses_non_real_values(bad):
    layer = _dense()
    before = layer.get_weights()
    value = BAD_VALUES[bad]((2,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning may be the only trace any more
        with pytest.raises(TypeError, match=r"weight 'dense_w/bias'") as info:
            layer.set_weights([before[0] + 1, value])
    assert str(value.dtype) in str(info.value)
    for old, now in zip(before, layer.get_weights()):  # nothing assigned, not even the valid kernel
        np.testing.assert_array_equal(old, now)


def test_set_weights_complex_message_says_why():
    layer = _dense()
    with pytest.raises(TypeError, match="complex values would lose their imaginary part"):
        layer.set_weights([np.ones((3, 2), np.complex128), np.zeros(2)])
    with pytest.raises(TypeError, match="weight 'dense_w/kernel'"):
        layer.kernel.assign(np.ones((3, 2), object))


def test_sequential_set_weights_refuses_complex_and_objects():
    model = Sequential([L.Input((3,)), L.Dense(2, name="d1")])
    weights = model.get_weights()
    with pytest.raises(TypeError, match="weight 'd1/kernel'"):
        model.set_weights([weights[0] * 1j, weights[1]])
    with pytest.raises(TypeError, match="weight 'd1/bias'"):
        model.set_weights([weights[0], [None, None]])


def test_set_weights_still_casts_real_numbers_as_keras():
    layer = _dense()
    layer.set_weights([np.ones((3, 2), np.int64), np.array([True, False])])
    assert [w.dtype for w in layer.get_weights()] == [np.float32, np.float32]
    np.testing.assert_array_equal(layer.get_weights()[1], [1.0, 0.0])


def test_initializer_returning_complex_values_is_refused():
    def complex_init(shape, dtype=None):
        return np.ones(shape) * 1j

    with pytest.raises(TypeError, match="weight 'cplx/kernel'"):
        L.Dense(2, kernel_initializer=complex_init, name="cplx").build((None, 3))
    assert initializers.get(complex_init) is complex_init  # the function itself is still accepted

"""gpuconv.geometry against values computed by hand from keras_spec.md (sections 1.1, 1.4, 1.5,
2.5, 2.9). Every expected number below was worked out on paper from the spec's formulas and is
written with its derivation, so a wrong formula in geometry.py cannot also be "the expectation"."""
import re

import numpy as np
import pytest

from gpuconv import geometry as g


# --------------------------------------------------------------------------------------------
# Forward conv (spec 1.4)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "L, k, s, d, padding, out, pads",
    [
        # valid: floor((L - k_eff)/s) + 1, no padding
        (7, 3, 1, 1, "valid", 5, (0, 0)),
        (7, 3, 2, 1, "valid", 3, (0, 0)),  # (7-3)//2+1
        (8, 3, 2, 1, "valid", 3, (0, 0)),  # (8-3)//2+1 = 3 (floor)
        (9, 3, 1, 3, "valid", 3, (0, 0)),  # k_eff 7: 9-7+1
        (3, 3, 1, 1, "valid", 1, (0, 0)),  # exact fit
        # same: ceil(L/s); total = max((out-1)s + k_eff - L, 0); left = total//2
        (5, 3, 1, 1, "same", 5, (1, 1)),  # total 2
        (5, 2, 1, 1, "same", 5, (0, 1)),  # total 1 (odd): the extra pad goes after
        (5, 4, 1, 1, "same", 5, (1, 2)),  # total 3
        (7, 4, 2, 1, "same", 4, (1, 2)),  # out 4, total 3*2+4-7 = 3
        (8, 3, 2, 1, "same", 4, (0, 1)),  # out 4, total 3*2+3-8 = 1
        (7, 3, 2, 1, "same", 4, (1, 1)),  # out 4, total 6+3-7 = 2
        (6, 1, 3, 1, "same", 2, (0, 0)),  # total max(3+1-6, 0) = 0
        (5, 3, 1, 2, "same", 5, (2, 2)),  # k_eff 5: total 4
        (6, 2, 1, 3, "same", 6, (1, 2)),  # k_eff 4: total 5+4-6 = 3
        (1, 5, 1, 1, "same", 1, (2, 2)),
        # causal: left = k_eff - 1, right 0, out ceil(L/s)
        (6, 3, 1, 1, "causal", 6, (2, 0)),
        (6, 3, 1, 2, "causal", 6, (4, 0)),  # k_eff 5
        (7, 2, 2, 1, "causal", 4, (1, 0)),
    ],
)
def test_conv_length_and_padding(L, k, s, d, padding, out, pads):
    assert g.conv_output_length(L, k, s, d, padding) == out
    assert g.conv_padding_pair(L, k, s, d, padding) == pads
    # Padding the input by the pair then running 'valid' gives the same length: the definition.
    assert g.conv_output_length(L + sum(pads), k, s, d, "valid") == out


def test_conv_unknown_length_stays_unknown():
    assert g.conv_output_length(None, 3, 1, 1, "same") is None
    assert g.conv_output_shape((None, None, 5, 3), 4, (3, 3), (1, 1), "valid", "channels_last", (1, 1)) == (
        None, None, 3, 4)


@pytest.mark.parametrize(
    "input_shape, data_format, expected",
    [
        # kernel (3, 2), strides 2, valid: H (9-3)//2+1 = 4, W (7-2)//2+1 = 3
        ((2, 9, 7, 3), "channels_last", (2, 4, 3, 6)),
        ((2, 3, 9, 7), "channels_first", (2, 6, 4, 3)),
    ],
)
def test_conv_output_shape_layout(input_shape, data_format, expected):
    assert g.conv_output_shape(input_shape, 6, (3, 2), (2, 2), "valid", data_format, (1, 1)) == expected


def test_conv_output_shape_errors():
    with pytest.raises(ValueError, match=re.escape(
            "Computed output size would be zero or negative. Received `inputs shape=(None, 4, 4, 3)`, "
            "`kernel shape=(5, 5, 3, 4)`, `dilation_rate=[1 1]`, `strides=(1, 1)`, `padding=valid`.")):
        g.conv_output_shape((None, 4, 4, 3), 4, (5, 5), (1, 1), "valid", "channels_last", (1, 1))
    with pytest.raises(ValueError, match="Kernel shape must have the same length as input"):
        g.conv_output_shape((2, 3, 8, 8, 4), 2, (3, 3), (1, 1), "valid", "channels_last", (1, 1))
    # dilation makes the kernel too large: k_eff = (3-1)*3+1 = 7 > 6
    with pytest.raises(ValueError, match="zero or negative"):
        g.conv_output_shape((1, 6, 1), 1, (3,), (1,), "valid", "channels_last", (3,))


def test_effective_kernel():
    assert g.effective_kernel(3, 1) == 3
    assert g.effective_kernel(3, 2) == 5
    assert g.effective_kernel(1, 7) == 1
    assert g.effective_kernel(4, 3) == 10


# --------------------------------------------------------------------------------------------
# Transposed conv (spec 1.5): O and the left crop of full = (I-1)*s + k_eff
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "I, k, s, d, padding, op, out, crop",
    [
        # valid, op None: (I-1)s + max(k_eff, s); crop 0 (full never exceeds O)
        (3, 3, 2, 1, "valid", None, 7, 0),  # full 7
        (3, 2, 3, 1, "valid", None, 9, 0),  # max(2, 3) = 3: 6+3, full 8 -> one zero tail cell
        (4, 3, 1, 2, "valid", None, 8, 0),  # k_eff 5: 3+5
        (1, 1, 1, 1, "valid", None, 1, 0),
        # valid with op: (I-1)s + k_eff + op
        (3, 3, 2, 1, "valid", 1, 8, 0),
        (3, 3, 2, 1, "valid", 0, 7, 0),
        (2, 2, 3, 1, "valid", 2, 7, 0),  # 3 + 2 + 2
        # same, op None: I*s; crop = (full - O)//2
        (3, 3, 2, 1, "same", None, 6, 0),  # full 7: (7-6)//2 = 0
        (3, 4, 2, 1, "same", None, 6, 1),  # full 8: 1
        (3, 5, 2, 1, "same", None, 6, 1),  # full 9: 3//2 = 1
        (4, 3, 1, 1, "same", None, 4, 1),  # full 6: 1
        (4, 4, 1, 1, "same", None, 4, 1),  # full 7: 3//2 = 1 (the extra crop goes right)
        (3, 2, 3, 1, "same", None, 9, 0),  # full 8 < O: nothing cropped, one zero tail cell
        (4, 3, 1, 2, "same", None, 4, 2),  # k_eff 5, full 8: 4//2
        # same with op: (I-1)s + k_eff%2 + op
        (3, 3, 2, 1, "same", 1, 6, 0),  # 4+1+1, full 7
        (3, 3, 2, 1, "same", 0, 5, 1),  # 4+1+0, full 7: 2//2
        (3, 5, 2, 1, "same", 1, 6, 1),  # 4+1+1, full 9: 3//2
        (3, 4, 2, 1, "same", 1, 5, 1),  # 4+0+1, full 8: 3//2
        (3, 3, 3, 1, "same", 2, 9, 0),  # 6+1+2, full 9
        # The TF edge case: same, k_eff even, op 0 -> O = (I-1)s; TF raises, Keras' formula (JAX) holds
        (3, 2, 2, 1, "same", 0, 4, 1),  # full 6: 2//2
        (3, 2, 1, 1, "same", 0, 2, 1),  # 2+0+0, full 4: 2//2
        # degenerate: I = 1, k_eff even, op 0 -> O = 0
        (1, 2, 1, 1, "same", 0, 0, 1),  # full 2: 2//2
    ],
)
def test_conv_transpose_length_and_crop(I, k, s, d, padding, op, out, crop):
    assert g.conv_transpose_output_length(I, k, s, d, padding, op) == out
    assert g.conv_transpose_crop(I, k, s, d, out) == crop


def test_conv_transpose_geometry_per_dim():
    # dim 0: I 3, k 4, s 2, same, op None -> O 6, full 8, crop 1
    # dim 1: I 2, k 3, s 1, same, op None -> O 2, full 4, crop 1
    out, crop = g.conv_transpose_geometry((3, 2), (4, 3), (2, 1), (1, 1), "same", None)
    assert out == (6, 2) and crop == (1, 1)
    # explicit output_padding per dim: dim 0 valid-style numbers for 'same' with op 1: 4+0+1 = 5
    out, crop = g.conv_transpose_geometry((3, 2), (4, 3), (2, 1), (1, 1), "same", (1, 0))
    assert out == (5, 2) and crop == (1, 1)
    out, crop = g.conv_transpose_geometry((None, 2), (4, 3), (2, 1), (1, 1), "valid", None)
    assert out == (None, 4) and crop == (None, 0)


# --------------------------------------------------------------------------------------------
# Pooling (spec 2.5)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "L, p, s, padding, out, pads",
    [
        (5, 2, 1, "same", 5, (0, 1)),  # the spec's [1..5] example: total 1, after
        (7, 3, 2, "valid", 3, (0, 0)),  # (7-3)//2+1
        (7, 3, 2, "same", 4, (1, 1)),  # total 3*2+3-7 = 2
        (6, 2, 3, "valid", 2, (0, 0)),  # strides > pool: (6-2)//3+1
        (6, 2, 3, "same", 2, (0, 0)),  # total max(3+2-6, 0) = 0
        (4, 3, 3, "same", 2, (1, 1)),  # total 3+3-4 = 2
        (5, 3, 3, "same", 2, (0, 1)),  # total 3+3-5 = 1
        (2, 2, 2, "valid", 1, (0, 0)),  # exact fit
    ],
)
def test_pool_length_and_padding(L, p, s, padding, out, pads):
    assert g.pool_output_length(L, p, s, padding) == out
    assert g.pool_padding((L,), (p,), (s,), padding) == (pads,)


def test_pool_output_shape():
    assert g.pool_output_shape((2, 7, 5, 3), (3, 2), (2, 2), "valid", "channels_last") == (2, 3, 2, 3)
    assert g.pool_output_shape((2, 3, 7, 5), (3, 2), (2, 2), "same", "channels_first") == (2, 3, 4, 3)
    assert g.pool_output_shape((None, None, 5, 3), (2, 2), (1, 1), "valid", "channels_last") == (None, None, 4, 3)


def test_pool_output_shape_errors():
    with pytest.raises(ValueError, match=re.escape(
            "Computed output size would be zero or negative. Received: `inputs.shape=[None 2 2 3]`, "
            "`pool_size=[3 3]`, `strides=(3, 3)`, `padding=valid`.")):
        g.pool_output_shape((None, 2, 2, 3), (3, 3), (3, 3), "valid", "channels_last")
    with pytest.raises(ValueError, match=re.escape(
            "Argument `padding` must be either 'valid' or 'same'. Received: padding=SAME")):
        g.pool_output_shape((1, 4, 4, 1), (2, 2), (2, 2), "SAME", "channels_last")
    with pytest.raises(ValueError, match="strides"):
        g.pool_output_shape((1, 4, 4, 1), (2, 2), (0, 1), "valid", "channels_last")


# --------------------------------------------------------------------------------------------
# Locally connected (spec 2.9)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "L, k, s, padding, out, pads",
    [
        (7, 3, 2, "valid", 3, (0, 0)),  # ceil((7-3+1)/2) = ceil(2.5)
        (6, 3, 1, "valid", 4, (0, 0)),
        (5, 2, 3, "valid", 2, (0, 0)),  # ceil(4/3)
        # same: ceil(L/s); window p covers [p*s - k//2, p*s - k//2 + k)
        (6, 2, 1, "same", 6, (1, 0)),  # even k: left 1 (conv 'same' would be (0, 1)); last window [4, 6)
        (5, 4, 2, "same", 3, (2, 1)),  # last window [4-2, 4+2) = [2, 6): one cell past 5
        (5, 3, 1, "same", 5, (1, 1)),  # last window [3, 6)
        (4, 2, 2, "same", 2, (1, 0)),  # last window [1, 3)
    ],
)
def test_locally_connected_length_and_padding(L, k, s, padding, out, pads):
    assert g.locally_connected_output_length(L, k, s, padding) == out
    assert g.locally_connected_padding_pair(L, k, s, padding) == pads


def test_locally_connected_same_differs_from_conv_same_for_even_k():
    assert g.locally_connected_padding_pair(6, 2, 1, "same") == (1, 0)
    assert g.conv_padding_pair(6, 2, 1, 1, "same") == (0, 1)
    assert g.locally_connected_output_length(None, 3, 1, "same") is None


# --------------------------------------------------------------------------------------------
# Argument normalisation and Keras' error texts (spec 1.1)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, n, expected",
    [(3, 2, (3, 3)), ((1, 2), 2, (1, 2)), ([4, 5, 6], 3, (4, 5, 6)), (np.int64(2), 1, (2,)),
     ((np.int32(1), 2), 2, (1, 2))],
)
def test_standardize_tuple_accepts(value, n, expected):
    got = g.standardize_tuple(value, n, "kernel_size")
    assert got == expected
    assert all(type(v) is int for v in got)


def test_standardize_tuple_error_texts():
    with pytest.raises(ValueError, match=re.escape(
            "The `strides` argument must be a tuple of 2 integers. Received strides=0, "
            "including values {0} that do not satisfy `value > 0`")):
        g.standardize_tuple(0, 2, "strides")
    with pytest.raises(ValueError, match=re.escape(
            "The `kernel_size` argument must be a tuple of 2 integers. Received kernel_size=(1, 2, 3)")):
        g.standardize_tuple((1, 2, 3), 2, "kernel_size")
    # Keras appends the element clause with NO separator
    with pytest.raises(ValueError, match=re.escape(
            "The `kernel_size` argument must be a tuple of 2 integers. Received kernel_size=('a', 3)"
            "including element a of type <class 'str'>")):
        g.standardize_tuple(("a", 3), 2, "kernel_size")
    with pytest.raises(ValueError, match=re.escape(
            "Received dilation_rate=(1, -2), including values {-2} that do not satisfy `value > 0`")):
        g.standardize_tuple((1, -2), 2, "dilation_rate")


def test_standardize_tuple_allow_zero():
    assert g.standardize_tuple(0, 2, "output_padding", allow_zero=True) == (0, 0)
    with pytest.raises(ValueError, match=re.escape(
            "The `output_padding` argument must be a tuple of 2 integers. Received output_padding=(-1, 0), "
            "including values {-1} that do not satisfy `value >= 0`")):
        g.standardize_tuple((-1, 0), 2, "output_padding", allow_zero=True)


@pytest.mark.parametrize("value", ["ab", None, 2.5, True, (1.5, 1), object()])
def test_standardize_tuple_rejects_non_integers(value):
    with pytest.raises(ValueError, match=re.escape("The `strides` argument must be a tuple of 2 integers. Received strides=")):
        g.standardize_tuple(value, 2, "strides")


@pytest.mark.parametrize("value, allow_causal, expected",
                         [("valid", False, "valid"), ("SAME", False, "same"), ("Valid", True, "valid"),
                          ("causal", True, "causal"), ("CAUSAL", True, "causal")])
def test_standardize_padding_accepts(value, allow_causal, expected):
    assert g.standardize_padding(value, allow_causal=allow_causal) == expected


@pytest.mark.parametrize("value, allow_causal, shown", [("causal", False, "causal"), ("FULL", True, "full"),
                                                        ("", False, "")])
def test_standardize_padding_rejects(value, allow_causal, shown):
    with pytest.raises(ValueError) as info:
        g.standardize_padding(value, allow_causal=allow_causal)
    message = str(info.value)
    m = re.fullmatch(r"The `padding` argument must be a list/tuple or one of (\{.*\})\. Received: (.*)", message)
    assert m, message
    allowed = eval(m.group(1))  # a Python set literal; its order is set order (spec: do not depend on it)
    assert allowed == ({"valid", "same", "causal"} if allow_causal else {"valid", "same"})
    assert m.group(2) == shown


def test_standardize_padding_explicit_tuple_uses_build_time_text():
    with pytest.raises(ValueError, match=re.escape(
            "`padding` must be either `'valid'` or `'same'`. Received ((1, 1), (1, 1)).")):
        g.standardize_padding(((1, 1), (1, 1)))


@pytest.fixture
def restore_image_data_format():
    previous = g.image_data_format()
    yield
    g.set_image_data_format(previous)


def test_standardize_data_format(restore_image_data_format):
    assert g.image_data_format() == "channels_last"  # Keras' default
    assert g.standardize_data_format(None) == "channels_last"
    assert g.standardize_data_format("CHANNELS_FIRST") == "channels_first"
    g.set_image_data_format("channels_first")
    assert g.standardize_data_format(None) == "channels_first"
    with pytest.raises(ValueError, match=re.escape(
            "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
            "Received: data_format=nhwc")):
        g.standardize_data_format("NHWC")
    with pytest.raises(ValueError, match="data_format"):
        g.set_image_data_format("channels_middle")
    assert g.image_data_format() == "channels_first"  # a failed set changes nothing


def test_check_output_padding():
    g.check_output_padding(None, (1, 1))
    g.check_output_padding((0, 1), (1, 2))
    with pytest.raises(ValueError, match=re.escape(
            "`output_padding` must be strictly less than `strides` for all dimensions. "
            "At dimension 1, `output_padding` is 2 but `strides` is 2. "
            "Received: output_padding=(0, 2), strides=(1, 2)")):
        g.check_output_padding((0, 2), (1, 2))


def test_check_strides_dilation():
    g.check_strides_dilation((2, 2), (1, 1))
    g.check_strides_dilation((1, 1), (3, 2))
    # the check spans all dims: stride in one, dilation in the other is still refused, with no period
    with pytest.raises(ValueError, match=re.escape(
            "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
            "Received: strides=(2, 1) and dilation_rate=(1, 2)") + "$"):
        g.check_strides_dilation((2, 1), (1, 2))


def test_check_positive_int():
    assert g.check_positive_int(3, "filters") == 3
    with pytest.raises(ValueError, match=re.escape(
            "Invalid value for argument `filters`. Expected a strictly positive value. Received filters=0.")):
        g.check_positive_int(0, "filters")
    with pytest.raises(ValueError, match="depth_multiplier"):
        g.check_positive_int(-1, "depth_multiplier")
    with pytest.raises(TypeError, match="groups"):
        g.check_positive_int("2", "groups")


def test_layout_helpers():
    assert g.channel_axis("channels_last") == -1 and g.channel_axis("channels_first") == 1
    assert g.spatial_dims((2, 5, 6, 3), "channels_last") == (5, 6)
    assert g.spatial_dims((2, 3, 5, 6), "channels_first") == (5, 6)
    assert g.make_shape(2, 3, (5, 6), "channels_last") == (2, 5, 6, 3)
    assert g.make_shape(2, 3, (5, 6), "channels_first") == (2, 3, 5, 6)

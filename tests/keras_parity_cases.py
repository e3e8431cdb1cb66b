"""Seeded layer configurations for the Keras-parity tests (tests/test_keras_parity.py).

Every case is a pure function of (family, index): ``make_cases(family)[i]`` rebuilds case i,
so a failing test id such as ``conv2d-07`` is reproducible without running anything else.
The generators only produce argument combinations Keras 3.15 accepts (keras_spec.md sections
1-2), chosen to hit the places where implementations diverge: odd sizes that make 'same'
asymmetric, strides that do not divide the input, dilation, groups, causal padding,
output_padding, channels_first, upper-case padding strings, int-vs-tuple argument forms.
Rejected arguments live in ERROR_CASES at the bottom.
"""
import dataclasses
import zlib

import numpy as np

# A spread of built-in activations: the common ones, aliases Keras renames when serializing
# ("swish" -> "silu"), and ones with non-obvious definitions (gelu exact, selu, hard_sigmoid).
ACTIVATIONS = (None, "relu", "linear", "tanh", "sigmoid", "swish", "gelu", "elu", "selu", "softplus",
               "relu6", "leaky_relu", "hard_sigmoid", "softmax", "silu", "softsign", "exponential")


# Weight arguments in the forms Keras' *.get() accepts: snake_case and class names, and dicts.
INITIALIZERS = ("he_normal", "he_uniform", "lecun_normal", "lecun_uniform", "glorot_normal", "GlorotUniform",
                "zeros", "ones", "random_normal", "random_uniform", "truncated_normal", "orthogonal",
                {"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_out", "distribution": "uniform"}},
                {"class_name": "RandomNormal", "config": {"mean": 0.1, "stddev": 0.3, "seed": 3}})
REGULARIZERS = ("l1", "l2", "l1l2", "L1L2", "L1", {"class_name": "L2", "config": {"l2": 0.1}})
CONSTRAINTS = ("non_neg", "max_norm", "unit_norm", "min_max_norm", {"class_name": "MaxNorm", "config": {"max_value": 1.5}})


def _weight_arguments(rng, kwargs, roles):
    """Sometimes non-default initializer / regularizer / constraint per weight role
    ('kernel', 'bias', 'depthwise', 'pointwise'), and an activity regularizer."""
    for role in roles:
        if rng.random() < 0.25:
            # Keras' Orthogonal refuses rank-1 shapes (biases)
            choices = [i for i in INITIALIZERS if role != "bias" or i != "orthogonal"]
            kwargs[f"{role}_initializer"] = _pick(rng, choices)
        if rng.random() < 0.12:
            kwargs[f"{role}_regularizer"] = _pick(rng, REGULARIZERS)
        if rng.random() < 0.08:
            kwargs[f"{role}_constraint"] = _pick(rng, CONSTRAINTS)
    if rng.random() < 0.08:
        kwargs["activity_regularizer"] = _pick(rng, REGULARIZERS)


_ROLES = {"conv": ("kernel", "bias"), "transpose": ("kernel", "bias"), "depthwise": ("depthwise", "bias"),
          "separable": ("depthwise", "pointwise", "bias")}


@dataclasses.dataclass(frozen=True)
class Case:
    family: str        # row of the summary table
    layer: str         # class name, identical in keras.layers and gpuconv.layers
    kwargs: dict       # constructor arguments, identical for both libraries
    input_shape: tuple # concrete input shape (batch first)
    id: str

    def __repr__(self):
        return f"{self.id}: layers.{self.layer}(**{self.kwargs!r}) on input {self.input_shape}"


def _rng(family, index):
    # crc32, not hash(): Python string hashing is randomized per process.
    return np.random.default_rng((zlib.crc32(family.encode()), index))


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _ints(rng, low, high, n):
    """n ints in [low, high]."""
    return tuple(int(v) for v in rng.integers(low, high + 1, size=n))


def _maybe_scalar(rng, values):
    """An int when all entries agree and the coin says so, else the tuple: both forms are legal."""
    if len(set(values)) == 1 and rng.random() < 0.5:
        return values[0]
    return tuple(values) if rng.random() < 0.7 else list(values)


def _data_format(rng, kwargs):
    fmt = _pick(rng, ("channels_last", "channels_first", None))
    if fmt is not None:
        kwargs["data_format"] = fmt
    return fmt or "channels_last"


def _shape(batch, channels, spatial, data_format):
    if data_format == "channels_first":
        return (batch, channels) + tuple(spatial)
    return (batch,) + tuple(spatial) + (channels,)


def _padding(rng, choices):
    pad = _pick(rng, choices)
    # Keras lowercases conv padding; an upper-case spelling must behave identically.
    return pad.upper() if rng.random() < 0.15 else pad


def _spatial_for(rng, rank, k_eff, strides, padding, max_len):
    """Input lengths: for 'valid' at least k_eff (sometimes exactly k_eff: output length 1)."""
    out = []
    for i in range(rank):
        if padding == "valid":
            extra = 0 if rng.random() < 0.2 else int(rng.integers(0, max_len // 2 + 1)) + int(rng.integers(0, strides[i] + 1))
            out.append(k_eff[i] + extra)
        else:
            out.append(int(rng.integers(1, max_len + 1)))
    return tuple(out)


_MAX_K = {1: 5, 2: 4, 3: 3}
_MAX_LEN = {1: 17, 2: 10, 3: 6}


def _strides_dilation(rng, rank, allow_both):
    """(strides, dilation). Keras forbids s>1 with d>1 for Conv/Transpose, allows it for
    depthwise/separable since v3.15 (allow_both)."""
    mode = _pick(rng, ("plain", "strided", "dilated", "both") if allow_both else ("plain", "strided", "dilated"))
    ones = (1,) * rank
    strides = _above_one(rng, rank) if mode in ("strided", "both") else ones
    dilation = _above_one(rng, rank) if mode in ("dilated", "both") else ones
    return strides, dilation


def _above_one(rng, rank):
    """Values in 1..3 with at least one > 1 (so the mode it was drawn for really happens)."""
    values = list(_ints(rng, 1, 3, rank))
    values[int(rng.integers(rank))] = int(rng.integers(2, 4))
    return tuple(values)


_MAX_LEN_LARGE = {1: 64, 2: 24, 3: 10}


def _conv_like(family, layer, rank, kind, index, large=False):
    """kind: 'conv' | 'transpose' | 'depthwise' | 'separable'. `large` scales channels and sizes
    up (8-40 channels, up to 64/24/10 long) so engines' blocked/chunked paths run too."""
    rng = _rng(family, index)
    width = 8 if large else 1  # channel/filter multiplier
    max_len = (_MAX_LEN_LARGE if large else _MAX_LEN)[rank]
    kwargs = {}
    kernel = _ints(rng, 1, _MAX_K[rank], rank)
    strides, dilation = _strides_dilation(rng, rank, allow_both=kind in ("depthwise", "separable"))
    paddings = ("valid", "same", "causal") if (kind == "conv" and rank == 1) else ("valid", "same")
    padding = _padding(rng, paddings)
    if padding.lower() == "causal" and max(strides) > 1:
        dilation = (1,) * rank  # causal allows strides or dilation, never both (Conv rule)
    channels = width * int(rng.integers(1, 5))
    if kind in ("conv", "transpose", "separable"):
        kwargs["filters"] = width * int(rng.integers(1, 6))
    if kind == "conv" and rng.random() < 0.35:
        groups = int(rng.integers(2, 4))
        channels = groups * width * int(rng.integers(1, 3))
        kwargs["filters"] = groups * width * int(rng.integers(1, 3))
        kwargs["groups"] = groups
    kwargs["kernel_size"] = _maybe_scalar(rng, kernel)
    if strides != (1,) * rank or rng.random() < 0.2:
        kwargs["strides"] = _maybe_scalar(rng, strides)
    kwargs["padding"] = padding
    if dilation != (1,) * rank or rng.random() < 0.2:
        kwargs["dilation_rate"] = _maybe_scalar(rng, dilation)
    if kind == "transpose" and rng.random() < 0.6:
        op = tuple(int(rng.integers(0, s)) for s in strides)
        kwargs["output_padding"] = _maybe_scalar(rng, op)
    if kind in ("depthwise", "separable") and rng.random() < 0.7:
        kwargs["depth_multiplier"] = int(rng.integers(1, 4))
    data_format = _data_format(rng, kwargs)
    activation = _pick(rng, ACTIVATIONS)
    if activation is not None:
        kwargs["activation"] = activation
    if rng.random() < 0.25:
        kwargs["use_bias"] = False
    _weight_arguments(rng, kwargs, _ROLES[kind])
    k_eff = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    if kind == "transpose":
        spatial = tuple(int(rng.integers(1, max_len // 2 + 2)) for _ in range(rank))
        if "output_padding" in kwargs and padding.lower() == "same":
            # O = (L-1)*s + k_eff%2 + op is 0 for L=1, even k_eff, op=0: Keras returns an empty output,
            # gpuconv refuses it since issue 8 (tests/test_limits_sizes.py); one more cell instead.
            spatial = tuple(2 if (n == 1 and k % 2 == 0 and o == 0) else n for n, k, o in zip(spatial, k_eff, op))
    else:
        spatial = _spatial_for(rng, rank, k_eff, strides, padding.lower(), max_len)
    batch = int(rng.integers(1, 4))
    shape = _shape(batch, channels, spatial, data_format)
    return Case(family, layer, kwargs, shape, f"{family}-{index:02d}")


def _pooling(family, layer, rank, index):
    rng = _rng(family, index)
    kwargs = {}
    pool = _ints(rng, 1, 4 if rank < 3 else 3, rank)
    if layer.startswith("Average") or rng.random() < 0.8:  # AveragePooling has no default pool_size
        kwargs["pool_size"] = _maybe_scalar(rng, pool)
    else:
        pool = (2,) * rank
    strides = pool
    if rng.random() < 0.6:
        strides = _ints(rng, 1, 3, rank)
        kwargs["strides"] = _maybe_scalar(rng, strides)
    padding = _pick(rng, ("valid", "same"))
    kwargs["padding"] = padding
    data_format = _data_format(rng, kwargs)
    spatial = _spatial_for(rng, rank, pool, strides, padding, _MAX_LEN[rank])
    shape = _shape(int(rng.integers(1, 4)), int(rng.integers(1, 5)), spatial, data_format)
    return Case(family, layer, kwargs, shape, f"{family}-{index:02d}")


def _global_pooling(family, layer, rank, index):
    rng = _rng(family, index)
    kwargs = {}
    data_format = _data_format(rng, kwargs)
    if rng.random() < 0.6:
        kwargs["keepdims"] = bool(rng.random() < 0.5)
    spatial = _ints(rng, 1, _MAX_LEN[rank], rank)
    shape = _shape(int(rng.integers(1, 4)), int(rng.integers(1, 5)), spatial, data_format)
    return Case(family, layer, kwargs, shape, f"{family}-{index:02d}")


def _pairs_arg(rng, rank, low, high):
    """Cropping/ZeroPadding argument in one of Keras' accepted forms, plus the resolved pairs."""
    form = _pick(rng, ("int", "symmetric", "pairs") if rank > 1 else ("int", "pairs"))
    if form == "int":
        v = int(rng.integers(low, high + 1))
        return v, ((v, v),) * rank
    if form == "symmetric":
        vals = _ints(rng, low, high, rank)
        return tuple(vals), tuple((v, v) for v in vals)
    pairs = tuple(_ints(rng, low, high, 2) for _ in range(rank))
    if rank == 1:
        return pairs[0], pairs
    return pairs, pairs


def _cropping(family, layer, rank, index):
    rng = _rng(family, index)
    kwargs = {}
    if rng.random() < 0.85:
        arg, pairs = _pairs_arg(rng, rank, 0, 3)
        kwargs["cropping"] = arg
    else:  # Keras defaults: (1,1) for 1D, zeros for 2D, ones for 3D
        pairs = {1: ((1, 1),), 2: ((0, 0), (0, 0)), 3: ((1, 1),) * 3}[rank]
    data_format = "channels_last" if rank == 1 else _data_format(rng, kwargs)
    spatial = tuple(a + b + int(rng.integers(1, 5)) for a, b in pairs)
    shape = _shape(int(rng.integers(1, 4)), int(rng.integers(1, 4)), spatial, data_format)
    return Case(family, layer, kwargs, shape, f"{family}-{index:02d}")


def _zero_padding(family, layer, rank, index):
    rng = _rng(family, index)
    kwargs = {}
    if rng.random() < 0.85:
        kwargs["padding"], _ = _pairs_arg(rng, rank, 0, 3)
    data_format = _data_format(rng, kwargs)  # ZeroPadding1D has data_format in Keras 3
    spatial = _ints(rng, 1, _MAX_LEN[rank] // 2 + 1, rank)
    shape = _shape(int(rng.integers(1, 4)), int(rng.integers(1, 4)), spatial, data_format)
    return Case(family, layer, kwargs, shape, f"{family}-{index:02d}")


def _upsampling(family, layer, rank, index):
    rng = _rng(family, index)
    kwargs = {}
    if rank == 1:
        if rng.random() < 0.8:
            kwargs["size"] = int(rng.integers(1, 5))
        data_format = "channels_last"
    else:
        if rng.random() < 0.8:
            kwargs["size"] = _maybe_scalar(rng, _ints(rng, 1, 3, rank))
        data_format = _data_format(rng, kwargs)
        if rank == 2 and rng.random() < 0.7:
            kwargs["interpolation"] = _pick(rng, ("nearest", "bilinear"))
    spatial = _ints(rng, 1, _MAX_LEN[rank] // 2 + 1, rank)
    shape = _shape(int(rng.integers(1, 4)), int(rng.integers(1, 4)), spatial, data_format)
    return Case(family, layer, kwargs, shape, f"{family}-{index:02d}")


def _dense(family, layer, index):
    rng = _rng(family, index)
    kwargs = {"units": int(rng.integers(1, 9))}
    activation = _pick(rng, ACTIVATIONS)
    if activation is not None:
        kwargs["activation"] = activation
    if rng.random() < 0.25:
        kwargs["use_bias"] = False
    _weight_arguments(rng, kwargs, ("kernel", "bias"))
    shape = (int(rng.integers(1, 5)),) + _ints(rng, 1, 4, int(rng.integers(0, 3))) + (int(rng.integers(1, 9)),)
    return Case(family, layer, kwargs, shape, f"{family}-{index:02d}")


def _flatten(family, layer, index):
    rng = _rng(family, index)
    kwargs = {}
    data_format = _data_format(rng, kwargs)
    ndim = int(rng.integers(0, 4))
    shape = _shape(int(rng.integers(1, 4)), int(rng.integers(1, 5)), _ints(rng, 1, 5, ndim), data_format)
    return Case(family, layer, kwargs, shape, f"{family}-{index:02d}")


def _activation(family, layer, index):
    rng = _rng(family, index)
    name = _pick(rng, ACTIVATIONS[1:])
    shape = (int(rng.integers(1, 4)),) + _ints(rng, 1, 6, int(rng.integers(1, 4)))
    return Case(family, layer, {"activation": name}, shape, f"{family}-{index:02d}")


def _dropout(family, layer, index):
    rng = _rng(family, index)
    kwargs = {"rate": float(np.round(rng.uniform(0.0, 0.9), 2))}
    if rng.random() < 0.3:
        kwargs["seed"] = int(rng.integers(0, 100))
    shape = (int(rng.integers(1, 4)),) + _ints(rng, 1, 6, int(rng.integers(1, 4)))
    return Case(family, layer, kwargs, shape, f"{family}-{index:02d}")


def _family_table():
    """family -> (layer class names, generator(family, layer, index), configs per layer)."""
    table = {}
    for rank in (1, 2, 3):
        n = 24 if rank < 3 else 16
        table[f"conv{rank}d"] = ((f"Conv{rank}D",), lambda f, l, i, r=rank: _conv_like(f, l, r, "conv", i), n)
        table[f"conv{rank}d_transpose"] = (
            (f"Conv{rank}DTranspose",), lambda f, l, i, r=rank: _conv_like(f, l, r, "transpose", i), n)
        table[f"pooling{rank}d"] = (
            (f"MaxPooling{rank}D", f"AveragePooling{rank}D"), lambda f, l, i, r=rank: _pooling(f, l, r, i), n // 2 + 4)
        table[f"global_pooling{rank}d"] = (
            (f"GlobalMaxPooling{rank}D", f"GlobalAveragePooling{rank}D"),
            lambda f, l, i, r=rank: _global_pooling(f, l, r, i), 6)
        table[f"cropping{rank}d"] = ((f"Cropping{rank}D",), lambda f, l, i, r=rank: _cropping(f, l, r, i), 10)
        table[f"zero_padding{rank}d"] = (
            (f"ZeroPadding{rank}D",), lambda f, l, i, r=rank: _zero_padding(f, l, r, i), 10)
        table[f"upsampling{rank}d"] = (
            (f"UpSampling{rank}D",), lambda f, l, i, r=rank: _upsampling(f, l, r, i), 16 if rank == 2 else 10)
    for rank in (1, 2):
        table[f"depthwise{rank}d"] = (
            (f"DepthwiseConv{rank}D",), lambda f, l, i, r=rank: _conv_like(f, l, r, "depthwise", i), 20)
        table[f"separable{rank}d"] = (
            (f"SeparableConv{rank}D",), lambda f, l, i, r=rank: _conv_like(f, l, r, "separable", i), 20)
    kinds = (("Conv1D", 1, "conv"), ("Conv2D", 2, "conv"), ("Conv3D", 3, "conv"), ("Conv2DTranspose", 2, "transpose"),
             ("Conv1DTranspose", 1, "transpose"), ("DepthwiseConv2D", 2, "depthwise"), ("SeparableConv2D", 2, "separable"),
             ("Conv3DTranspose", 3, "transpose"), ("DepthwiseConv1D", 1, "depthwise"), ("SeparableConv1D", 1, "separable"))
    table["larger conv"] = (
        tuple(k[0] for k in kinds),
        lambda f, l, i, kinds=kinds: _conv_like(f, l, *next((r, kd) for n, r, kd in kinds if n == l), i, large=True),
        20)
    table["dense"] = (("Dense",), lambda f, l, i: _dense(f, l, i), 16)
    table["flatten"] = (("Flatten",), lambda f, l, i: _flatten(f, l, i), 10)
    table["activation"] = (("Activation",), lambda f, l, i: _activation(f, l, i), 12)
    table["dropout"] = (("Dropout",), lambda f, l, i: _dropout(f, l, i), 6)
    return table


FAMILIES = _family_table()


# Hand-picked configurations that keras_spec.md singles out; they go through every parity check.
_EDGE = [
    # transposed: the TF-backend edge case ('same', even k_eff, op=0: O=(I-1)*s; follow the formula)
    ("Conv1DTranspose", dict(filters=2, kernel_size=2, padding="same", output_padding=0), (1, 3, 2)),
    # (its degenerate I=1 form, O=0, where Keras returns an empty output, is refused by gpuconv
    # since issue 8, as conv and pooling refuse theirs: see tests/test_limits_sizes.py)
    # s > k_eff: untouched gaps and, for valid with op None, the s-k_eff tail (0 + bias)
    ("Conv1DTranspose", dict(filters=1, kernel_size=2, strides=3), (2, 3, 1)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=2, strides=3, padding="same", output_padding=2), (1, 2, 3, 2)),
    ("Conv3DTranspose", dict(filters=2, kernel_size=3, strides=2, padding="same", data_format="channels_first"),
     (1, 2, 3, 2, 3)),
    # 'same' asymmetric: even kernel at s=1, and L mod s at s>1
    ("Conv1D", dict(filters=2, kernel_size=4, padding="same"), (1, 5, 1)),
    ("Conv2D", dict(filters=4, kernel_size=3, strides=2, padding="same"), (1, 6, 7, 2)),
    # causal with strides and with dilation, channels_first
    ("Conv1D", dict(filters=2, kernel_size=3, strides=2, padding="causal", data_format="channels_first"), (2, 3, 9)),
    ("Conv1D", dict(filters=2, kernel_size=3, dilation_rate=3, padding="causal"), (2, 4, 3)),
    # strides > 1 with dilation > 1, allowed for depthwise/separable since v3.15
    ("DepthwiseConv2D", dict(kernel_size=3, strides=2, dilation_rate=2, padding="same", depth_multiplier=2),
     (1, 9, 8, 2)),
    ("SeparableConv1D", dict(filters=3, kernel_size=2, strides=3, dilation_rate=2), (1, 11, 2)),
    # exact fit: output size 1
    ("Conv3D", dict(filters=2, kernel_size=3), (1, 3, 3, 3, 2)),
    ("Conv2D", dict(filters=2, kernel_size=(2, 3), dilation_rate=(3, 2), groups=2), (1, 4, 5, 4)),
    # average pooling divides by real cells (spec example x=[1..5], pool 2, s=1, same)
    ("AveragePooling1D", dict(pool_size=2, strides=1, padding="same"), (1, 5, 1)),
    ("AveragePooling2D", dict(pool_size=3, strides=2, padding="same"), (1, 4, 5, 1)),
    # window larger than the input under 'same'
    ("MaxPooling2D", dict(pool_size=3, strides=1, padding="same"), (1, 1, 2, 2)),
    # pooling padding is stored as given; eager call lowercases it, shape inference refuses it
    ("MaxPooling1D", dict(pool_size=2, padding="SAME"), (1, 5, 1)),
    # bilinear half-pixel centres with edge clamp, channels_first
    ("UpSampling2D", dict(size=(3, 2), interpolation="bilinear", data_format="channels_first"), (1, 2, 2, 3)),
    ("Flatten", dict(data_format="channels_first"), (2, 3, 2, 2)),
    # (a negative int ZeroPadding2D/3D padding, which Keras accepts and turns into negative output
    # sizes, is refused by gpuconv at construction since issue 8: see tests/test_untrusted_configs_values.py)
]


def _edge_cases():
    return [Case("spec edge cases", layer, kwargs, shape, f"edge-{i:02d}") for i, (layer, kwargs, shape) in enumerate(_EDGE)]


def make_cases(family):
    """All cases of one family; layer classes of the family alternate by index."""
    layers_, generator, n = FAMILIES[family]
    cases = []
    for i in range(n):
        layer = layers_[i % len(layers_)]
        cases.append(generator(family, layer, i))
    return cases


def all_cases():
    return [c for family in FAMILIES for c in make_cases(family)] + _edge_cases()


# ------------------------------------------------------------------------------------------
# Rejected arguments (keras_spec.md section 3).
# stage: 'init' (constructor), 'call' (construct, then call on zeros of `shape`),
#        'shape' (construct, then compute_output_shape(shape)), 'recall' (build on `shape`,
#        then call again on `shape2`), 'set_weights' (build on `shape`, then set_weights with
#        zeros of the shapes in `shape2`), 'count_params' (on the unbuilt layer).
# Both libraries may raise at construction or later inside the stage (gpuconv rejects an
# explicit padding tuple at __init__ where Keras waits for build); what must agree is the
# exception class and the text.
# match: 'exact' (gpuconv's text == Keras'), or a tuple of phrases both texts must contain
# (used where Keras' text embeds Python set order or backend-specific wording).
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ErrorCase:
    layer: str
    kwargs: dict
    stage: str = "init"
    shape: tuple = None
    shape2: tuple = None
    match: object = "exact"
    id: str = ""


def _e(layer, kwargs, stage="init", shape=None, shape2=None, match="exact"):
    return ErrorCase(layer, kwargs, stage, shape, shape2, match)


_PADDING_PHRASES = ("The `padding` argument must be a list/tuple or one of {", "Received: ")
_FORMAT_PHRASES = ("The `data_format` argument must be one of {", "Received: data_format=nchw")

_ERRORS = [
    # filters / depth_multiplier / groups
    _e("Conv2D", dict(filters=0, kernel_size=3)),
    _e("Conv1D", dict(filters=-2, kernel_size=3)),
    _e("Conv3DTranspose", dict(filters=0, kernel_size=3)),
    _e("SeparableConv2D", dict(filters=0, kernel_size=3)),
    _e("DepthwiseConv2D", dict(kernel_size=3, depth_multiplier=0)),
    _e("SeparableConv1D", dict(filters=2, kernel_size=3, depth_multiplier=-1)),
    _e("Conv2D", dict(filters=4, kernel_size=3, groups=0)),
    _e("Conv1D", dict(filters=5, kernel_size=3, groups=2)),
    _e("Conv2D", dict(filters=4, kernel_size=3, groups=2), "call", (1, 5, 5, 3)),
    _e("Conv3D", dict(filters=6, kernel_size=1, groups=3, data_format="channels_first"), "call", (1, 4, 3, 3, 3)),
    # padding strings / tuples
    _e("Conv2D", dict(filters=4, kernel_size=3, padding="causal"), match=_PADDING_PHRASES + ("causal",)),
    _e("Conv1D", dict(filters=4, kernel_size=3, padding="full"), match=_PADDING_PHRASES + ("full",)),
    _e("SeparableConv2D", dict(filters=2, kernel_size=3, padding="causal"), match=_PADDING_PHRASES + ("causal",)),
    _e("DepthwiseConv2D", dict(kernel_size=3, padding="causal"), match=_PADDING_PHRASES + ("causal",)),
    _e("Conv3D", dict(filters=2, kernel_size=3, padding="causal"), match=_PADDING_PHRASES + ("causal",)),
    _e("Conv1DTranspose", dict(filters=2, kernel_size=3, padding="causal"), match=_PADDING_PHRASES + ("causal",)),
    _e("Conv2D", dict(filters=4, kernel_size=3, padding=((1, 1), (1, 1))), "call", (1, 5, 5, 2)),
    # standardize_tuple
    _e("Conv2D", dict(filters=4, kernel_size=(3, 0))),
    _e("Conv2D", dict(filters=4, kernel_size=(3, 3, 3))),
    _e("Conv2D", dict(filters=4, kernel_size=("a", 3))),
    _e("Conv1D", dict(filters=4, kernel_size=3, strides=0)),
    _e("Conv3D", dict(filters=4, kernel_size=3, dilation_rate=(1, -1, 1))),
    _e("MaxPooling2D", dict(pool_size=(2, 0))),
    _e("UpSampling2D", dict(size=0)),
    _e("UpSampling3D", dict(size=(2, 2))),
    # strides with dilation
    _e("Conv2D", dict(filters=4, kernel_size=3, strides=2, dilation_rate=2)),
    _e("Conv2D", dict(filters=4, kernel_size=3, strides=(2, 1), dilation_rate=(1, 2))),
    _e("Conv1DTranspose", dict(filters=4, kernel_size=3, strides=2, dilation_rate=2)),
    # output_padding
    _e("Conv2DTranspose", dict(filters=4, kernel_size=3, strides=2, output_padding=2)),
    _e("Conv3DTranspose", dict(filters=4, kernel_size=3, strides=(2, 3, 2), output_padding=(1, 1, 2))),
    _e("Conv1DTranspose", dict(filters=4, kernel_size=3, output_padding=1)),
    _e("Conv2DTranspose", dict(filters=4, kernel_size=3, output_padding=-1)),
    _e("Conv2DTranspose", dict(filters=4, kernel_size=3, strides=3, output_padding=(1, 1, 1))),
    # unknown kwargs
    _e("Conv2DTranspose", dict(filters=4, kernel_size=3, lora_rank=2)),
    _e("DepthwiseConv2D", dict(kernel_size=3, groups=2)),
    _e("SeparableConv2D", dict(filters=2, kernel_size=3, groups=2)),
    _e("UpSampling1D", dict(size=2, data_format="channels_first")),
    _e("Cropping1D", dict(cropping=1, data_format="channels_last")),
    _e("Conv2D", dict(filters=4, kernel_size=3, foo=1)),
    # data_format / activation
    _e("Conv2D", dict(filters=4, kernel_size=3, data_format="nchw"), match=_FORMAT_PHRASES),
    _e("MaxPooling1D", dict(data_format="nchw"), match=_FORMAT_PHRASES),
    _e("UpSampling2D", dict(data_format="nchw"), match=_FORMAT_PHRASES),
    _e("Conv2D", dict(filters=4, kernel_size=3, activation="ReLU")),
    _e("Dense", dict(units=3, activation="nope")),
    _e("Activation", dict(activation="nope")),
    # output size zero or negative
    _e("Conv2D", dict(filters=4, kernel_size=5), "call", (1, 4, 4, 3)),
    _e("Conv1D", dict(filters=4, kernel_size=3, dilation_rate=3), "call", (2, 6, 3)),
    _e("DepthwiseConv2D", dict(kernel_size=5), "call", (1, 4, 4, 3)),
    _e("SeparableConv1D", dict(filters=2, kernel_size=4, data_format="channels_first"), "call", (1, 2, 3)),
    _e("MaxPooling2D", dict(pool_size=3), "shape", (None, 2, 2, 3)),
    _e("AveragePooling1D", dict(pool_size=4, strides=2), "shape", (None, 3, 3)),
    # pooling padding is validated at shape inference, raw (not lowercased)
    _e("MaxPooling2D", dict(pool_size=2, padding="SAME"), "shape", (None, 4, 4, 3)),
    _e("AveragePooling2D", dict(pool_size=2, padding="foo"), "shape", (None, 4, 4, 3)),
    _e("AveragePooling2D", dict(), match=("missing 1 required positional argument: 'pool_size'",)),
    # input rank / channels
    _e("Conv2D", dict(filters=4, kernel_size=3, name="rank_check"), "call", (8, 4),
       match=("of layer 'rank_check' is incompatible with the layer: expected min_ndim=4, found ndim=2. "
              "Full shape received: (8, 4)",)),
    _e("Conv1D", dict(filters=3, kernel_size=2, name="channel_check"), "recall", (1, 5, 3), (1, 5, 4),
       match=("of layer 'channel_check' is incompatible with the layer: expected axis -1 of input shape to have "
              "value 3, but received input with shape (1, 5, 4)",)),
    _e("Conv2D", dict(filters=4, kernel_size=3), "call", (1, 5, 5, 3, 2)),
    # cropping / zero padding / upsampling
    _e("Cropping1D", dict(cropping=(2, 3)), "shape", (None, 5, 2)),
    _e("Cropping2D", dict(cropping=((2, 3), (0, 0))), "shape", (None, 5, 6, 2)),
    _e("Cropping3D", dict(cropping=1, data_format="channels_first"), "shape", (None, 2, 3, 2, 4)),
    _e("Cropping2D", dict(cropping=-1)),
    _e("Cropping2D", dict(cropping=(1, 2, 3))),
    _e("Cropping3D", dict(cropping=(1, 2))),
    _e("Cropping1D", dict(cropping=(1, -1))),
    _e("ZeroPadding2D", dict(padding=(1, 2, 3))),
    _e("ZeroPadding3D", dict(padding=(1, 2))),
    _e("ZeroPadding2D", dict(padding=((1, 2), (1, -1)))),
    _e("UpSampling1D", dict(size=2.0)),
    _e("UpSampling1D", dict(size=0)),
    _e("UpSampling2D", dict(interpolation="foo"), "call", (1, 3, 3, 1),
       match=("Invalid value for argument `interpolation`. Expected of one ", "Received: interpolation=foo")),
    # weights
    _e("Conv2D", dict(filters=4, kernel_size=3, name="cw"), "set_weights", (1, 5, 5, 3), ((3, 3, 3, 4),)),
    _e("Conv2D", dict(filters=4, kernel_size=3, name="cw"), "set_weights", (1, 5, 5, 3), ((3, 3, 3, 4), (5,))),
    _e("SeparableConv1D", dict(filters=4, kernel_size=3, name="sw"), "set_weights", (1, 5, 2),
       ((3, 2, 1), (1, 2, 4), (4,), (4,))),
    _e("Conv1DTranspose", dict(filters=4, kernel_size=3, name="tw"), "set_weights", (1, 5, 2), ((3, 2, 4), (4,))),
    _e("Conv2D", dict(filters=4, kernel_size=3, name="unbuilt"), "count_params"),
    # core layers
    _e("Dense", dict(units=0)),
    _e("Dropout", dict(rate=1.5)),
]

ERROR_CASES = [dataclasses.replace(c, id=f"{c.layer}-{i:02d}") for i, c in enumerate(_ERRORS)]


# ------------------------------------------------------------------------------------------
# Documented gpuconv extensions (module docstrings of gpuconv/layers/*, motivated by the user
# requests in keras_spec.md section 6). Keras rejects these arguments; gpuconv accepts them, which
# keeps it a drop-in (every Keras-valid call means the same) as long as (a) the extra constructor
# parameters come after all of Keras' and have defaults, (b) get_config is unchanged at their
# defaults, and (c) their results equal a composition of real Keras layers. The parity tests
# check (a)-(c) instead of expecting Keras' rejection for exactly these, and nothing else.
# ------------------------------------------------------------------------------------------
EXTENSION_PARAMS = {
    "Conv1DTranspose": ("groups",),
    "Conv2DTranspose": ("groups",),
    "Conv3DTranspose": ("groups",),
    "UpSampling3D": ("interpolation",),
}
# padding='causal' on these (Keras 3 accepts it only on Conv1D)
CAUSAL_EXTENSION_LAYERS = ("DepthwiseConv1D", "SeparableConv1D")


def extension_cases(kind, n):
    """Seeded configurations for the extension-vs-Keras-composition tests."""
    out = []
    for i in range(n):
        rng = _rng("extension-" + kind, i)
        if kind == "grouped_transpose":
            rank = 1 + i % 2
            groups = int(rng.integers(2, 4))
            kernel = _ints(rng, 1, 4, rank)
            strides, dilation = _strides_dilation(rng, rank, allow_both=False)
            kwargs = dict(filters=groups * int(rng.integers(1, 3)), kernel_size=kernel, strides=strides,
                          padding=_pick(rng, ("valid", "same")), dilation_rate=dilation, groups=groups)
            if rng.random() < 0.5:
                kwargs["output_padding"] = tuple(int(rng.integers(0, s)) for s in strides)
            data_format = _data_format(rng, kwargs)
            spatial = _ints(rng, 1, 5, rank)
            shape = _shape(int(rng.integers(1, 3)), groups * int(rng.integers(1, 3)), spatial, data_format)
            layer = f"Conv{rank}DTranspose"
        elif kind == "causal":
            layer = CAUSAL_EXTENSION_LAYERS[i % 2]
            k = int(rng.integers(1, 5))
            strides, dilation = _strides_dilation(rng, 1, allow_both=True)
            kwargs = dict(kernel_size=k, strides=strides[0], dilation_rate=dilation[0], padding="causal")
            if layer == "SeparableConv1D":
                kwargs["filters"] = int(rng.integers(1, 5))
            if rng.random() < 0.6:
                kwargs["depth_multiplier"] = int(rng.integers(1, 3))
            data_format = _data_format(rng, kwargs)
            shape = _shape(int(rng.integers(1, 3)), int(rng.integers(1, 4)), (int(rng.integers(1, 12)),), data_format)
        else:
            raise ValueError(kind)
        out.append(Case("extension " + kind, layer, kwargs, shape, f"ext-{kind}-{i:02d}"))
    return out

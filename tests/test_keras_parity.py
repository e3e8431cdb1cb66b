"""Parity against real Keras 3 (torch backend): ``from gpuconv import layers`` must be a drop-in
for ``keras.layers``.

For every seeded configuration in keras_parity_cases.py both libraries build the same layer from
the same constructor arguments, and we check: weight shapes/names/order, outputs with Keras'
weights copied into gpuconv and gpuconv's weights copied into Keras (relative L2 error <= 1e-5,
float32), compute_output_shape (None batch, None spatial dims, list-vs-tuple type),
count_params, get_config (same keys, same values, also after build), configs crossing
libraries through from_config, regularization losses, weight attributes. Besides: constructor
signatures, aliases and default names, error classes and texts for rejected arguments,
initializer scales (fans), dtype policies, Dropout in training, the seed CNN end to end
(predictions, predict(), config, summary, rebuild from the other library's config), and
gpuconv's documented extensions (grouped transposed conv, causal DepthwiseConv1D /
SeparableConv1D, DepthwiseConv3D, trilinear UpSampling3D) against compositions of Keras layers.

Reference rule: Keras' eager output, except where keras_spec.md calls the behaviour
backend-specific (see _keras_reference: asymmetric 'same' average pooling on the torch backend).
A summary table (family, configs tried, failed, max relative error) is printed at the end of the
module, also without ``-s``.

Reproduce one case: ``pytest tests/test_keras_parity.py -k conv2d-07`` or, in Python,
``keras_parity_cases.make_cases("conv2d")[7]``.
"""
import copy
import inspect
import os
import zlib

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process
# exc_type=ImportError: also skip when keras is present but its backend (torch) cannot load.
keras = pytest.importorskip("keras", reason="real-Keras parity needs keras>=3.15 with the torch backend "
                            "(pip install .[parity])", exc_type=ImportError)

import gpuconv  # noqa: E402
from gpuconv import layers as glayers  # noqa: E402

from keras_parity_cases import (  # noqa: E402
    ERROR_CASES, EXTENSION_PARAMS, FAMILIES, all_cases, extension_cases,
)

pytestmark = [
    pytest.mark.parity,
    # Keras' own variables/tensors (torch backend) trip NumPy 2's __array__(copy=) deprecation.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

RTOL = 1e-5  # DESIGN.md: float32 relative L2 error
CASES = all_cases()

# Config keys whose values are plain Python data and must be equal as values (the brief's list
# plus the core layers'); every other key except `name` is compared too (initializer dicts,
# regularizers, constraints, dtype policy), so this list only decides the failure wording.
PLAIN_KEYS = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
              "activation", "use_bias", "output_padding", "depth_multiplier", "pool_size", "cropping", "size",
              "interpolation", "keepdims", "units", "rate", "noise_shape", "seed")


# ------------------------------------------------------------------------------------------
# Summary table
# ------------------------------------------------------------------------------------------
_SUMMARY = {}  # family -> {"tried": int, "failed": int, "max_err": float}


def _record(family, err=None, failed=False):
    row = _SUMMARY.setdefault(family, {"tried": 0, "failed": 0, "max_err": 0.0})
    row["tried"] += 1
    row["failed"] += int(failed)
    if err is not None and np.isfinite(err):
        row["max_err"] = max(row["max_err"], float(err))
    elif err is not None:
        row["max_err"] = float("inf")


def _summary_lines():
    lines = [f"keras parity (keras {keras.__version__}, backend {keras.backend.backend()}, "
             f"gpuconv engine {gpuconv.get_backend()}); tolerance rel L2 <= {RTOL:g}",
             f"{'family':<30}{'configs':>8}{'failed':>8}{'max rel err':>14}"]
    for family, row in _SUMMARY.items():
        lines.append(f"{family:<30}{row['tried']:>8}{row['failed']:>8}{row['max_err']:>14.2e}")
    return lines


@pytest.fixture(autouse=True)
def _same_name_counters():
    """Both libraries number default layer names per process (conv2d, conv2d_1, ...); start each
    test from zero in both so auto-names compare equal whatever ran before."""
    keras.backend.clear_session(free_memory=False)
    gpuconv.clear_session()


@pytest.fixture(scope="module", autouse=True)
def _print_summary(request):
    yield
    if not _SUMMARY:
        return
    lines = _summary_lines()
    plugins = request.config.pluginmanager
    reporter, capman = plugins.getplugin("terminalreporter"), plugins.getplugin("capturemanager")
    if reporter is None or capman is None:
        print("\n".join(lines))
        return
    with capman.global_and_fixture_disabled():  # visible without -s
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------
def _classes(name):
    return getattr(keras.layers, name), getattr(glayers, name)


def _k_np(y):
    return np.asarray(keras.ops.convert_to_numpy(y))


def _g_np(y):
    return np.asarray(gpuconv.to_numpy(y))


def _rng(case_id, salt):
    return np.random.default_rng((zlib.crc32(case_id.encode()), salt))


def rel_l2(actual, reference):
    actual = np.asarray(actual, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    ref = np.linalg.norm(reference)
    diff = np.linalg.norm(actual - reference)
    return float(diff / ref) if ref > 0 else float(diff)


def _build_pair(case):
    """Both layers from the same constructor arguments (each gets its own copy: a layer that
    mutated its arguments must not leak into the other library)."""
    kcls, gcls = _classes(case.layer)
    return kcls(**copy.deepcopy(case.kwargs)), gcls(**copy.deepcopy(case.kwargs))


def _input(case):
    return _rng(case.id, 0).standard_normal(case.input_shape).astype(np.float32)


def _random_weights(case, like):
    """Keras initialises biases to zeros; random values make the bias path count. Kernels are
    scaled so a sum over the fan-in stays O(1) (no saturated sigmoid / overflowing exponential)."""
    rng = _rng(case.id, 1)
    out = []
    for w in like:
        fan_in = int(np.prod(w.shape[:-1])) if len(w.shape) > 1 else 1
        out.append((min(0.5, 2.0 / np.sqrt(fan_in)) * rng.standard_normal(w.shape)).astype(np.float32))
    return out


def _same_pads(spatial, pool_size, strides):
    """keras_spec 1.4/2.5: out = ceil(L/s), total = max((out-1)*s + p - L, 0), left = total // 2."""
    pads = []
    for length, p, s in zip(spatial, pool_size, strides):
        total = max(((length - 1) // s) * s + p - length, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def _average_pool_excluding_pads(klayer, x):
    """Keras' documented 'same' average pooling (keras_spec 2.5: divide by the number of real
    cells, as the TF and JAX backends do), assembled from Keras ops on explicit zero padding:
    (window sum of x) / (window sum of a ones mask)."""
    channels_first = klayer.data_format == "channels_first"
    spatial = x.shape[2:] if channels_first else x.shape[1:-1]
    pads = _same_pads(spatial, klayer.pool_size, klayer.strides)
    full = [(0, 0), (0, 0)] + pads if channels_first else [(0, 0)] + pads + [(0, 0)]

    def pooled(a):
        return _k_np(keras.ops.average_pool(np.pad(a, full), klayer.pool_size, klayer.strides, "valid",
                                            klayer.data_format))

    return pooled(x) / pooled(np.ones_like(x)), any(a != b for a, b in pads)


def _keras_reference(klayer, x):
    """Keras' output, except where keras_spec.md calls Keras' behaviour backend-specific.

    Keras 3.15.1's torch backend pads an *asymmetric* 'same' average pooling by replication
    (keras/src/backend/torch/nn.py, _apply_same_padding mode="replicate"), so edge cells are
    counted twice; keras_spec 2.5 says the divisor is the number of real cells (TF/JAX, checked
    there). Where the padding is symmetric the torch backend is right, and we assert that our
    reference reproduces it, which is what makes the reference trustworthy for the other cases.
    """
    y = _k_np(klayer(x))
    if type(klayer).__name__.startswith("AveragePooling") and klayer.padding == "same":
        reference, asymmetric = _average_pool_excluding_pads(klayer, x)
        if not asymmetric:
            assert rel_l2(reference, y) <= 1e-6, "the excluding-pads reference disagrees with Keras"
        return reference.astype(np.float32)
    return y


def _compare_outputs(y_gpuconv, y_keras, what):
    assert y_gpuconv.shape == y_keras.shape, f"{what}: output shape {y_gpuconv.shape} != Keras {y_keras.shape}"
    assert y_gpuconv.dtype == np.float32, f"{what}: output dtype {y_gpuconv.dtype}, expected float32"
    return rel_l2(y_gpuconv, y_keras)


WEIGHT_ATTRIBUTES = ("kernel", "bias", "depthwise_kernel", "pointwise_kernel")


def _check_weight_attributes(glayer, klayer):
    """layer.kernel / .bias / .depthwise_kernel / .pointwise_kernel exist where Keras has them
    (bias None without use_bias) and hold the same values; trainable split is the same."""
    for attr in WEIGHT_ATTRIBUTES:
        if not hasattr(klayer, attr):
            continue
        want = getattr(klayer, attr)
        assert hasattr(glayer, attr), f"gpuconv layer lacks attribute {attr!r}"
        got = getattr(glayer, attr)
        if want is None:
            assert got is None, f"{attr} should be None"
        else:
            np.testing.assert_array_equal(np.asarray(got), _k_np(want), err_msg=attr)
    assert len(glayer.trainable_weights) == len(klayer.trainable_weights)
    assert len(glayer.non_trainable_weights) == len(klayer.non_trainable_weights)


def _loss_values(layer):
    return [float(v) if isinstance(v, (float, int)) else float(_k_np(v)) for v in layer.losses]


def _check_losses(glayer, klayer):
    """Weight-regularization and activity penalties after the last call: same values (in any
    order here; test_losses_order checks the order)."""
    want, got = sorted(_loss_values(klayer)), sorted(_loss_values(glayer))
    assert len(got) == len(want), f"losses {got} vs Keras {want}"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg="layer.losses")


def _strict_equal(a, b):
    """== that also distinguishes list from tuple at every level (Keras configs keep tuples)."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_strict_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(_strict_equal(a[k], b[k]) for k in a))
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _channel_axis(layer):
    fmt = getattr(layer, "data_format", None)
    return 1 if fmt == "channels_first" else -1


def _none_spatial(shape, layer):
    """Batch and every dim except the channel/feature axis unknown."""
    axis = _channel_axis(layer) % len(shape)
    return tuple(d if i == axis else None for i, d in enumerate(shape))


# ------------------------------------------------------------------------------------------
# Per-configuration parity
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_outputs_and_weights(case):
    """Weights cross in both directions without any transposition, and outputs agree."""
    ok = False
    errors = []
    try:
        klayer, glayer = _build_pair(case)
        x = _input(case)
        x_before = x.copy()
        klayer(x)  # lazy build in both
        glayer(x)

        kweights, gweights = klayer.get_weights(), glayer.get_weights()
        assert [w.shape for w in gweights] == [w.shape for w in kweights], "weight shapes/order differ"
        assert [w.name for w in glayer.weights] == [w.name for w in klayer.weights], "weight names differ"
        assert all(np.asarray(w).dtype == np.float32 for w in gweights), "get_weights must return float32"
        assert glayer.count_params() == klayer.count_params(), "count_params differs"

        # gpuconv -> Keras: gpuconv's own initial weights drive both.
        klayer.set_weights(glayer.get_weights())
        errors.append(_compare_outputs(_g_np(glayer(x)), _keras_reference(klayer, x), "gpuconv weights in Keras"))

        # Keras -> gpuconv: random weights (non-zero bias) set in Keras, copied over.
        if kweights:
            klayer.set_weights(_random_weights(case, kweights))
            glayer.set_weights(klayer.get_weights())
            for got, want in zip(glayer.get_weights(), klayer.get_weights()):
                np.testing.assert_array_equal(got, want)
            _check_weight_attributes(glayer, klayer)
            errors.append(_compare_outputs(_g_np(glayer(x)), _keras_reference(klayer, x), "Keras weights in gpuconv"))
        np.testing.assert_array_equal(x, x_before, err_msg="the layer modified its input")
        _check_losses(glayer, klayer)
        # a built layer keeps Keras' config, and takes another batch size
        diff = {k: v for k, v in _config_diff(glayer.get_config(), klayer.get_config()).items() if k != "name"}
        assert not diff, f"config after build: {diff}"
        x2 = _rng(case.id, 2).standard_normal((case.input_shape[0] + 1,) + tuple(case.input_shape[1:]))
        x2 = x2.astype(np.float32)
        errors.append(_compare_outputs(_g_np(glayer(x2)), _keras_reference(klayer, x2), "second batch size"))
        assert max(errors) <= RTOL, f"relative L2 error {max(errors):.3e} > {RTOL:g} for {case!r}"
        ok = True
    finally:
        _record(case.family, max(errors) if errors else None, failed=not ok)


def _outcome(fn):
    """('ok', value) or ('raise', exception class, message) -- so a Keras refusal is compared too."""
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001
        return ("raise", type(exc), _keras_text(exc))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_compute_output_shape(case):
    klayer, glayer = _build_pair(case)
    for shape in ((None,) + tuple(case.input_shape[1:]), _none_spatial(case.input_shape, klayer),
                  tuple(case.input_shape), [None] + list(case.input_shape[1:])):
        want = _outcome(lambda: klayer.compute_output_shape(shape))
        got = _outcome(lambda: glayer.compute_output_shape(shape))
        if want[0] == "raise":
            assert got[0] == "raise" and issubclass(got[1], want[1]) and got[2] == want[2], (
                f"compute_output_shape({shape}): Keras raised {want[1].__name__}: {want[2]}; gpuconv gave {got}")
            continue
        assert got[0] == "ok", f"compute_output_shape({shape}) raised {got[1].__name__}: {got[2]}; Keras gave {want[1]}"
        got, want = got[1], want[1]
        assert tuple(got) == tuple(want), f"compute_output_shape({shape}): {got} != Keras {want}"
        assert type(got) is type(want), (
            f"compute_output_shape({shape}) returns {type(got).__name__}, Keras returns {type(want).__name__}")
        if None not in list(shape):  # and it predicts the eager output shape
            assert _g_np(glayer(_input(case))).shape == tuple(want)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_get_config(case):
    klayer, glayer = _build_pair(case)
    kcfg, gcfg = klayer.get_config(), glayer.get_config()
    assert set(gcfg) == set(kcfg), (
        f"config keys: extra in gpuconv {sorted(set(gcfg) - set(kcfg))}, missing {sorted(set(kcfg) - set(gcfg))}")
    plain = [k for k in PLAIN_KEYS if k in kcfg and not _strict_equal(gcfg[k], kcfg[k])]
    assert not plain, {k: (gcfg[k], kcfg[k]) for k in plain}
    rest = [k for k in kcfg if k != "name" and k not in PLAIN_KEYS and not _strict_equal(gcfg[k], kcfg[k])]
    assert not rest, {k: (gcfg[k], kcfg[k]) for k in rest}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_config_crosses_libraries(case):
    """A config saved by one library rebuilds the same layer in the other."""
    kcls, gcls = _classes(case.layer)
    klayer, glayer = _build_pair(case)
    kcfg, gcfg = klayer.get_config(), glayer.get_config()
    # Keras' own round trip is the reference (it can fail: ZeroPadding2D(-1) saves pairs that its
    # from_config refuses), for gpuconv reading Keras' config and for Keras reading gpuconv's.
    want = _outcome(lambda: kcls.from_config(copy.deepcopy(kcfg)).get_config())
    attempts = (
        ("gpuconv.from_config(Keras config)", _outcome(lambda: gcls.from_config(copy.deepcopy(kcfg)).get_config())),
        ("Keras.from_config(gpuconv config)", _outcome(lambda: kcls.from_config(copy.deepcopy(gcfg)).get_config())),
    )
    for what, got in attempts:
        if want[0] == "raise":
            # Keras wraps as TypeError("Error when deserializing class 'X' using config={...}.
            # \n\nException encountered: <inner>"); the config repr is Keras-internal, the
            # class and the inner message are what callers see.
            tail = want[2].rsplit("Exception encountered:", 1)[-1].strip()
            assert got[0] == "raise" and issubclass(got[1], want[1]) and got[2].strip().endswith(tail), (
                f"{what}: Keras' own round trip raised {want[1].__name__}: {want[2]}; got {got}")
        else:
            assert got[0] == "ok", f"{what} raised {got[1].__name__}: {got[2]}"
            assert not _config_diff(got[1], want[1]), f"{what}: {_config_diff(got[1], want[1])}"


def _config_diff(got, want):
    """{key: (got, want)} for every key whose values differ (missing keys show as '<absent>')."""
    absent = "<absent>"
    return {k: (got.get(k, absent), want.get(k, absent)) for k in set(got) | set(want)
            if k not in got or k not in want or not _strict_equal(got[k], want[k])}


# ------------------------------------------------------------------------------------------
# Signatures and aliases
# ------------------------------------------------------------------------------------------
LAYER_NAMES = sorted({name for layers_, _, _ in FAMILIES.values() for name in layers_})


def _params(cls):
    return [(p.name, p.kind, p.default) for p in inspect.signature(cls.__init__).parameters.values()]


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_constructor_signature(name):
    """Keras' parameters, in Keras' order, with Keras' kinds and defaults, so positional calls
    mean the same (Conv3DTranspose's data_format-before-output_padding, DepthwiseConv's
    4th-positional depth_multiplier, AveragePooling's required pool_size). The only extra
    parameters allowed are the documented extensions, after all of Keras' and with defaults."""
    kcls, gcls = _classes(name)
    var_kw = inspect.Parameter.VAR_KEYWORD
    kparams = [p for p in _params(kcls) if p[1] != var_kw]
    gparams = [p for p in _params(gcls) if p[1] != var_kw]
    assert gparams[:len(kparams)] == kparams
    extra = gparams[len(kparams):]
    undocumented = [p for p in extra if p[0] not in EXTENSION_PARAMS.get(name, ())]
    assert not undocumented, f"undocumented extra parameters {undocumented}"
    assert all(p[2] is not inspect.Parameter.empty for p in extra)
    assert (var_kw in [p[1] for p in _params(gcls)]) == (var_kw in [p[1] for p in _params(kcls)])


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_default_name(name):
    """Auto-generated names follow Keras' snake_case (conv2d, conv2d_transpose, max_pooling2d,
    up_sampling2d, ...) up to the per-process counter suffix."""
    kcls, gcls = _classes(name)
    weight_args = ("_initializer", "_regularizer", "_constraint")
    kwargs = {k: v for k, v in copy.deepcopy(_first_case(name).kwargs).items() if not k.endswith(weight_args)}
    kname, gname = kcls(**kwargs).name, gcls(**kwargs).name

    def stem(n):
        head, _, tail = n.rpartition("_")
        return head if head and tail.isdigit() else n

    assert stem(gname) == stem(kname)


def _first_case(name):
    return next(c for c in CASES if c.layer == name)


def test_aliases():
    """Every alias Keras exports for an in-scope class (Convolution2D, MaxPool2D, AvgPool1D,
    SeparableConvolution2D, ...) exists in gpuconv and names the same class."""
    canonical = {getattr(keras.layers, n): n for n in LAYER_NAMES}
    aliases = [(a, canonical[getattr(keras.layers, a)]) for a in dir(keras.layers)
               if not a.startswith("_") and getattr(keras.layers, a) in canonical and a != canonical[getattr(keras.layers, a)]]
    assert aliases, "expected Keras to export aliases"
    missing = [a for a, _ in aliases if not hasattr(glayers, a)]
    assert not missing, f"gpuconv.layers lacks Keras aliases {missing}"
    wrong = [a for a, n in aliases if getattr(glayers, a) is not getattr(glayers, n)]
    assert not wrong, f"aliases that are not the same class: {wrong}"


def test_global_image_data_format():
    """data_format=None resolves from the global setting at construction, in both libraries."""
    before_k, before_g = keras.config.image_data_format(), gpuconv.image_data_format()
    try:
        keras.config.set_image_data_format("channels_first")
        gpuconv.set_image_data_format("channels_first")
        for name, kwargs in (("Conv2D", dict(filters=2, kernel_size=3)), ("MaxPooling1D", {}),
                             ("UpSampling2D", {}), ("GlobalAveragePooling3D", {}), ("Flatten", {})):
            kcls, gcls = _classes(name)
            klayer = kcls(**kwargs)
            glayer = gcls(**kwargs)
            assert glayer.get_config()["data_format"] == klayer.get_config()["data_format"] == "channels_first"
    finally:
        keras.config.set_image_data_format(before_k)
        gpuconv.set_image_data_format(before_g)


# ------------------------------------------------------------------------------------------
# Initializers, regularizers, constraints
# ------------------------------------------------------------------------------------------
FAN_LAYERS = [
    ("Conv2D", dict(filters=24, kernel_size=3), (1, 5, 5, 40), "kernel"),
    ("Conv2D", dict(filters=24, kernel_size=3, groups=4), (1, 5, 5, 40), "kernel"),
    ("Conv1DTranspose", dict(filters=48, kernel_size=5), (1, 5, 16), "kernel"),
    ("Conv3D", dict(filters=16, kernel_size=(3, 3, 2), data_format="channels_first"), (1, 12, 4, 4, 4), "kernel"),
    ("DepthwiseConv2D", dict(kernel_size=5, depth_multiplier=8), (1, 6, 6, 48), "depthwise"),
    ("SeparableConv1D", dict(filters=40, kernel_size=3, depth_multiplier=3), (1, 6, 48), "pointwise"),
    ("Dense", dict(units=64), (1, 96), "kernel"),
]


@pytest.mark.parametrize("init", ["he_normal", "lecun_uniform", "glorot_uniform", "he_uniform", "glorot_normal"])
@pytest.mark.parametrize("name,kwargs,shape,role", FAN_LAYERS, ids=[f"{n}-{r}-{i}" for i, (n, _, _, r) in enumerate(FAN_LAYERS)])
def test_initializer_scale(name, kwargs, shape, role, init):
    """Initial weights have Keras' spread: fans from compute_fans applied blindly to the stored
    kernel shape (keras_spec 1.1: transpose (k.., F, C_in), depthwise (k.., C, dm)). Several
    thousand samples: the std estimate is good to ~1-2 %; a wrong fan is off by >= 30 %."""
    kcls, gcls = _classes(name)
    arg = dict(kwargs, **{f"{role}_initializer": init})
    klayer, glayer = kcls(**arg), gcls(**arg)
    x = np.zeros(shape, np.float32)
    klayer(x)
    glayer(x)
    index = {"kernel": 0, "depthwise": 0, "pointwise": 1}[role]
    want, got = klayer.get_weights()[index], glayer.get_weights()[index]
    assert got.shape == want.shape
    ratio = got.std() / want.std()
    assert abs(ratio - 1) < 0.06, f"{init} std {got.std():.4g} vs Keras {want.std():.4g} on shape {want.shape}"
    assert abs(got.mean()) < 0.1 * want.std() + 1e-3


def test_set_weights_does_not_apply_constraints():
    """Keras applies constraints only in the optimizer step; set_weights stores values as given."""
    for name, kwargs, shape in (("Conv2D", dict(filters=2, kernel_size=2, kernel_constraint="non_neg"), (1, 3, 3, 1)),
                                ("Dense", dict(units=2, bias_constraint="non_neg"), (1, 3))):
        kcls, gcls = _classes(name)
        klayer, glayer = kcls(**kwargs), gcls(**kwargs)
        x = np.ones(shape, np.float32)
        klayer(x)
        glayer(x)
        negative = [-np.ones(w.shape, np.float32) for w in klayer.get_weights()]
        klayer.set_weights(negative)
        glayer.set_weights(negative)
        for got, want in zip(glayer.get_weights(), klayer.get_weights()):
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_losses_order():
    """layer.losses lists the activity penalty first, then the weight penalties in weight order."""
    x = np.random.default_rng(5).standard_normal((3, 6, 6, 2)).astype(np.float32)
    kwargs = dict(filters=3, kernel_size=3, kernel_regularizer="l2", bias_regularizer="l1",
                  activity_regularizer={"class_name": "L2", "config": {"l2": 0.5}})
    kcls, gcls = _classes("Conv2D")
    klayer, glayer = kcls(**kwargs), gcls(**kwargs)
    klayer(x)
    glayer(x)
    rng = np.random.default_rng(6)
    klayer.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in klayer.get_weights()])
    glayer.set_weights(klayer.get_weights())
    klayer(x)
    glayer(x)
    np.testing.assert_allclose(_loss_values(glayer), _loss_values(klayer), rtol=1e-5)


# ------------------------------------------------------------------------------------------
# dtype policies
# ------------------------------------------------------------------------------------------
DTYPE_LAYERS = [
    ("Conv2D", dict(filters=3, kernel_size=3, padding="same", activation="relu")),
    ("Conv1DTranspose", dict(filters=2, kernel_size=3, strides=2)),
    ("DepthwiseConv1D", dict(kernel_size=3, depth_multiplier=2)),
    ("SeparableConv2D", dict(filters=2, kernel_size=2)),
    ("AveragePooling2D", dict(pool_size=2)),
    ("MaxPooling1D", dict()),
    ("UpSampling2D", dict(interpolation="bilinear")),
    ("GlobalAveragePooling2D", dict()),
    ("Dense", dict(units=4, activation="tanh")),
]
# float64 is held to the float32 bar: Keras' torch backend itself loses float64 precision on some
# paths (Dense and GlobalAveragePooling2D with dtype="float64" are ~1e-8 off the exact NumPy
# result, measured), so Keras cannot referee more digits; the engine tests own float64 accuracy.
DTYPE_TOL = {"float64": RTOL, "float32": RTOL, "float16": 2e-3, "mixed_float16": 2e-3}


@pytest.mark.parametrize("policy", ["float64", "mixed_float16", "float16"])
@pytest.mark.parametrize("input_dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,kwargs", DTYPE_LAYERS, ids=[n for n, _ in DTYPE_LAYERS])
def test_dtype_policy(name, kwargs, input_dtype, policy):
    """dtype=<policy>: variable dtype, compute dtype (float inputs are autocast to it), output
    dtype, weight dtypes and the serialized policy match Keras; values within the dtype's
    tolerance (DESIGN.md: float16 <= 2e-3)."""
    kcls, gcls = _classes(name)
    klayer, glayer = kcls(dtype=policy, **kwargs), gcls(dtype=policy, **kwargs)
    shape = (2, 5, 6, 3) if "2D" in name else (2, 7, 3) if "1D" in name else (2, 6)
    x = np.random.default_rng(7).standard_normal(shape).astype(input_dtype)
    yk, yg = _k_np(klayer(x)), _g_np(glayer(x))
    assert str(glayer.dtype) == str(klayer.dtype) and str(glayer.compute_dtype) == str(klayer.compute_dtype)
    assert [str(np.asarray(w).dtype) for w in glayer.get_weights()] == [str(w.dtype) for w in klayer.get_weights()]
    assert glayer.get_config()["dtype"] == klayer.get_config()["dtype"]
    assert yg.dtype == yk.dtype, f"output dtype {yg.dtype}, Keras {yk.dtype}"
    if klayer.get_weights():
        rng = np.random.default_rng(8)
        klayer.set_weights([(0.5 * rng.standard_normal(w.shape)).astype(w.dtype) for w in klayer.get_weights()])
        glayer.set_weights(klayer.get_weights())
    yk, yg = _k_np(klayer(x)), _g_np(glayer(x))
    assert rel_l2(yg, yk) <= DTYPE_TOL[policy]


def test_unbuilt_and_weightless():
    """Pooling/reshaping layers are built at construction in Keras (count_params() == 0 before
    any call); conv layers are not."""
    for name, kwargs in (("MaxPooling2D", {}), ("AveragePooling3D", dict(pool_size=2)), ("Cropping1D", {}),
                         ("UpSampling2D", {}), ("ZeroPadding3D", {}), ("GlobalMaxPooling1D", {}), ("Flatten", {})):
        kcls, gcls = _classes(name)
        klayer, glayer = kcls(**kwargs), gcls(**kwargs)
        assert glayer.built == klayer.built, name
        if klayer.built:
            assert glayer.count_params() == klayer.count_params() == 0
        assert glayer.weights == [] and klayer.weights == []
    kconv, gconv = _classes("Conv2D")
    assert gconv(2, 3).built == kconv(2, 3).built


# ------------------------------------------------------------------------------------------
# Error parity
# ------------------------------------------------------------------------------------------
def _keras_text(exc):
    """Keras wraps call-time errors as 'Exception encountered when calling X.call().\\n\\n
    <bold>message<reset>\\n\\nArguments received...'; the message itself is the part to match."""
    text = str(exc)
    if "\x1b[1m" in text and "\x1b[0m" in text:
        text = text.split("\x1b[1m", 1)[1].split("\x1b[0m", 1)[0]
    return text


def _raised(cls, ec):
    try:
        layer = cls(**copy.deepcopy(ec.kwargs))
        if ec.stage == "call":
            layer(np.zeros(ec.shape, np.float32))
        elif ec.stage == "shape":
            layer.compute_output_shape(ec.shape)
        elif ec.stage == "recall":
            layer(np.zeros(ec.shape, np.float32))
            layer(np.zeros(ec.shape2, np.float32))
        elif ec.stage == "set_weights":
            layer(np.zeros(ec.shape, np.float32))
            layer.set_weights([np.zeros(s, np.float32) for s in ec.shape2])
        elif ec.stage == "count_params":
            layer.count_params()
        elif ec.stage != "init":
            raise AssertionError(f"unknown stage {ec.stage!r}")
    except Exception as exc:  # noqa: BLE001  (the point is to see what each library raises)
        return exc
    return None


@pytest.mark.parametrize("ec", ERROR_CASES, ids=[c.id for c in ERROR_CASES])
def test_error_parity(ec):
    kcls, gcls = _classes(ec.layer)
    ok = False
    try:
        kexc = _raised(kcls, ec)
        assert kexc is not None, f"Keras accepted {ec!r}; the case list is wrong"
        gexc = _raised(gcls, ec)
        assert gexc is not None, f"gpuconv accepted what Keras rejects: {ec!r} (Keras: {type(kexc).__name__}: {kexc})"
        assert isinstance(gexc, type(kexc)), (
            f"gpuconv raised {type(gexc).__name__}: {gexc}; Keras raised {type(kexc).__name__}: {_keras_text(kexc)}")
        ktext, gtext = _keras_text(kexc), _keras_text(gexc)
        if ec.match == "exact":
            assert gtext == ktext
        else:
            for phrase in ec.match:
                assert phrase in ktext, f"case list out of date: Keras text {ktext!r} lacks {phrase!r}"
                assert phrase in gtext, f"gpuconv text {gtext!r} lacks {phrase!r} (Keras: {ktext!r})"
        ok = True
    finally:
        _record("error parity", failed=not ok)


# ------------------------------------------------------------------------------------------
# The seed CNN end to end
# ------------------------------------------------------------------------------------------
def _seed_cnn(lib):
    L = lib.layers
    return [
        L.Input(shape=(28, 28, 1)),
        L.Conv2D(32, (3, 3), padding="same", activation="relu"),
        L.MaxPooling2D((2, 2)),
        L.Conv2D(64, (3, 3), padding="same", activation="relu"),
        L.MaxPooling2D((2, 2)),
        L.Flatten(),
        L.Dense(100, activation="relu"),
        L.Dropout(0.4),
        L.Dense(10, activation="softmax"),
    ]


def test_seed_cnn():
    ok = False
    err = None
    try:
        kmodel = keras.Sequential(_seed_cnn(keras))
        gmodel = gpuconv.Sequential(_seed_cnn(gpuconv))
        kcounts = [layer.count_params() for layer in kmodel.layers]
        gcounts = [layer.count_params() for layer in gmodel.layers]
        assert kcounts == [320, 0, 18496, 0, 0, 313700, 0, 1010]  # guards the reference itself
        assert gcounts == kcounts
        assert gmodel.count_params() == kmodel.count_params()
        assert [type(layer).__name__ for layer in gmodel.layers] == [type(layer).__name__ for layer in kmodel.layers]

        x = np.random.default_rng(28).random((8, 28, 28, 1), dtype=np.float32)
        # Keras' weights (random, so biases are non-zero) into gpuconv, model-wide.
        rng = np.random.default_rng(29)
        kmodel.set_weights([(0.1 * rng.standard_normal(w.shape)).astype(np.float32) for w in kmodel.get_weights()])
        gmodel.set_weights(kmodel.get_weights())
        want = _k_np(kmodel(x, training=False))
        got = _g_np(gmodel(x))
        assert got.shape == want.shape == (8, 10)
        err = rel_l2(got, want)
        assert err <= RTOL, f"seed CNN predictions differ: rel L2 {err:.3e}"
        assert np.array_equal(got.argmax(-1), want.argmax(-1))
        # predict() batches the same way and returns NumPy
        want = kmodel.predict(x, batch_size=3, verbose=0)
        got = _g_np(gmodel.predict(x, batch_size=3, verbose=0))
        err = max(err, rel_l2(got, want))
        assert err <= RTOL, f"seed CNN predict() differs: rel L2 {err:.3e}"
        assert tuple(gmodel.compute_output_shape((None, 28, 28, 1))) == tuple(kmodel.compute_output_shape((None, 28, 28, 1)))
        ok = True
    finally:
        _record("seed CNN", err, failed=not ok)


@pytest.mark.parametrize("rate", [0.25, 0.6])
def test_dropout_training(rate):
    """training=True: each element is zeroed with probability `rate`, survivors are scaled by
    1/(1-rate), as in Keras (statistically: 60k elements, 5 sigma bounds); training=False and the
    default are the identity."""
    x = np.random.default_rng(9).uniform(1.0, 2.0, (6, 100, 100)).astype(np.float32)
    kcls, gcls = _classes("Dropout")
    for layer, to_np in ((kcls(rate), _k_np), (gcls(rate), _g_np)):
        y = to_np(layer(x, training=True))
        kept = y != 0
        n = x.size
        assert abs(kept.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n), type(layer).__module__
        np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-6)
        np.testing.assert_array_equal(to_np(layer(x, training=False)), x)
        np.testing.assert_array_equal(to_np(layer(x)), x)


def _without_names(config):
    """A (model) config with every 'name' entry removed: auto-names carry per-process counters
    that differ between the libraries when other tests have run first."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":  # its config's 'name' is the policy, keep it
            return config
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, (list, tuple)):
        return type(config)(_without_names(v) for v in config)
    return config


def _diff_paths(got, want, path=""):
    """Where two nested configs differ (strictly: list vs tuple counts), for failure messages."""
    if isinstance(got, dict) and isinstance(want, dict):
        out = []
        for k in sorted(set(got) | set(want), key=str):
            if k not in got or k not in want:
                out.append(f"{path}/{k}: {'missing in gpuconv' if k not in got else 'extra in gpuconv'}")
            else:
                out += _diff_paths(got[k], want[k], f"{path}/{k}")
        return out
    if isinstance(got, (list, tuple)) and isinstance(want, (list, tuple)) and type(got) is type(want) \
            and len(got) == len(want):
        return [d for i, (a, b) in enumerate(zip(got, want)) for d in _diff_paths(a, b, f"{path}[{i}]")]
    return [] if _strict_equal(got, want) else [f"{path}: gpuconv {got!r} != Keras {want!r}"]


def _summary_table(model):
    """summary() as (rows of stripped cells, total lines): the column widths may differ."""
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines).splitlines()
    rows = [tuple(c.strip() for c in line.strip("│").split("│")) for line in text if line.startswith("│")]
    totals = [line.strip() for line in text if line.strip().startswith(("Total params", "Trainable params", "Non-trainable"))]
    return rows, totals


def test_seed_cnn_config_summary_and_rebuild():
    kmodel = keras.Sequential(_seed_cnn(keras))
    gmodel = gpuconv.Sequential(_seed_cnn(gpuconv))
    kcfg, gcfg = kmodel.get_config(), gmodel.get_config()
    diff = _diff_paths(_without_names(gcfg), _without_names(kcfg))
    assert not diff, diff
    assert _summary_table(gmodel) == _summary_table(kmodel)
    # a config saved by either library rebuilds an equivalent model in the other
    x = np.random.default_rng(30).random((2, 28, 28, 1), dtype=np.float32)
    g_from_k = gpuconv.Sequential.from_config(copy.deepcopy(kcfg))
    k_from_g = keras.Sequential.from_config(copy.deepcopy(gcfg))
    diff = _diff_paths(_without_names(g_from_k.get_config()), _without_names(kcfg))
    assert not diff, diff
    g_from_k.set_weights(kmodel.get_weights())
    k_from_g.set_weights(kmodel.get_weights())
    want = _k_np(kmodel(x, training=False))
    assert rel_l2(_g_np(g_from_k(x)), want) <= RTOL
    assert rel_l2(_k_np(k_from_g(x, training=False)), want) <= RTOL


# ------------------------------------------------------------------------------------------
# Documented extensions, checked against compositions of real Keras layers
# ------------------------------------------------------------------------------------------
def _set_random(layer, case, salt=1):
    rng = _rng(case.id, salt)
    layer.set_weights([(0.5 * rng.standard_normal(w.shape)).astype(np.float32) for w in layer.get_weights()])


EXT_GROUPED = extension_cases("grouped_transpose", 8)
EXT_CAUSAL = extension_cases("causal", 10)


@pytest.mark.parametrize("case", EXT_GROUPED, ids=[c.id for c in EXT_GROUPED])
def test_extension_grouped_transpose_is_keras_per_group(case):
    """groups=G on a transposed conv == G Keras transposed convs on the channel blocks,
    concatenated: kernel (k.., F/G, C_in) whose C_in axis is split into blocks."""
    ok, err = False, None
    try:
        gcls = getattr(glayers, case.layer)
        glayer = gcls(**copy.deepcopy(case.kwargs))
        x = _input(case)
        glayer(x)
        _set_random(glayer, case)
        kernel, bias = glayer.get_weights()
        G = case.kwargs["groups"]
        axis = 1 if case.kwargs.get("data_format") == "channels_first" else -1
        c_block = x.shape[axis] // G
        f_block = case.kwargs["filters"] // G
        plain = {k: v for k, v in case.kwargs.items() if k != "groups"}
        plain["filters"] = f_block
        parts = []
        for g in range(G):
            klayer = getattr(keras.layers, case.layer)(**copy.deepcopy(plain))
            xg = np.take(x, range(g * c_block, (g + 1) * c_block), axis=axis)
            klayer(xg)
            klayer.set_weights([kernel[..., g * c_block:(g + 1) * c_block], bias[g * f_block:(g + 1) * f_block]])
            parts.append(_k_np(klayer(xg)))
        want = np.concatenate(parts, axis=axis)
        err = _compare_outputs(_g_np(glayer(x)), want, "grouped transpose")
        assert err <= RTOL
        # groups=1 keeps Keras' config exactly
        one = getattr(keras.layers, case.layer)(**copy.deepcopy(plain)).get_config()
        mine = gcls(**copy.deepcopy(plain), groups=1).get_config()
        assert set(mine) == set(one)
        ok = True
    finally:
        _record("extension grouped transpose", err, failed=not ok)


@pytest.mark.parametrize("case", EXT_CAUSAL, ids=[c.id for c in EXT_CAUSAL])
def test_extension_causal_is_keras_left_pad(case):
    """padding='causal' on DepthwiseConv1D/SeparableConv1D == Keras ZeroPadding1D((d*(k-1), 0))
    followed by the Keras layer with padding='valid' (Conv1D's causal rule, keras_spec 1.4)."""
    ok, err = False, None
    try:
        glayer = getattr(glayers, case.layer)(**copy.deepcopy(case.kwargs))
        x = _input(case)
        glayer(x)
        _set_random(glayer, case)
        k, d = case.kwargs["kernel_size"], case.kwargs["dilation_rate"]
        data_format = case.kwargs.get("data_format") or "channels_last"
        valid = dict(case.kwargs, padding="valid")
        pad = keras.layers.ZeroPadding1D((d * (k - 1), 0), data_format=data_format)
        klayer = getattr(keras.layers, case.layer)(**copy.deepcopy(valid))
        xp = _k_np(pad(x))
        klayer(xp)
        klayer.set_weights(glayer.get_weights())
        err = _compare_outputs(_g_np(glayer(x)), _k_np(klayer(xp)), "causal extension")
        assert err <= RTOL
        ok = True
    finally:
        _record("extension causal 1D", err, failed=not ok)


@pytest.mark.parametrize("seed", range(6))
def test_extension_depthwise_conv3d_is_keras_grouped_conv3d(seed):
    """DepthwiseConv3D == Keras Conv3D(groups=C, filters=C*dm) with the kernel (k.., C, dm)
    reshaped to (k.., 1, C*dm) (keras_spec 1.3: output channel c*dm + m)."""
    ok, err = False, None
    try:
        rng = np.random.default_rng((3, seed))
        channels, dm = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        kernel_size = tuple(int(v) for v in rng.integers(1, 4, 3))
        strides = tuple(int(v) for v in rng.integers(1, 3, 3)) if seed % 2 else (1, 1, 1)
        dilation = (1, 1, 1) if seed % 2 else tuple(int(v) for v in rng.integers(1, 3, 3))
        padding = ("valid", "same")[seed % 3 == 0]
        data_format = ("channels_last", "channels_first")[seed % 2]
        spatial = tuple((k - 1) * dd + 1 + int(rng.integers(0, 3)) for k, dd in zip(kernel_size, dilation))
        x = rng.standard_normal(_keras_shape(2, channels, spatial, data_format)).astype(np.float32)
        glayer = glayers.DepthwiseConv3D(kernel_size, strides=strides, padding=padding, depth_multiplier=dm,
                                         data_format=data_format, dilation_rate=dilation)
        glayer(x)
        kernel = (0.5 * rng.standard_normal(kernel_size + (channels, dm))).astype(np.float32)
        bias = rng.standard_normal(channels * dm).astype(np.float32)
        glayer.set_weights([kernel, bias])
        klayer = keras.layers.Conv3D(channels * dm, kernel_size, strides=strides, padding=padding,
                                     data_format=data_format, dilation_rate=dilation, groups=channels)
        klayer(x)
        klayer.set_weights([kernel.reshape(kernel_size + (1, channels * dm)), bias])
        err = _compare_outputs(_g_np(glayer(x)), _k_np(klayer(x)), "DepthwiseConv3D")
        assert err <= RTOL
        ok = True
    finally:
        _record("extension depthwise3d", err, failed=not ok)


def _keras_shape(batch, channels, spatial, data_format):
    return (batch, channels) + spatial if data_format == "channels_first" else (batch,) + spatial + (channels,)


@pytest.mark.parametrize("seed", range(4))
def test_extension_upsampling3d(seed):
    """UpSampling3D: interpolation='nearest' is Keras' layer; 'trilinear' equals applying Keras'
    UpSampling2D(bilinear) (half-pixel centres, edge clamp) over two axis pairs (separable)."""
    ok, err = False, None
    try:
        rng = np.random.default_rng((33, seed))
        size = tuple(int(v) for v in rng.integers(1, 4, 3))
        data_format = ("channels_last", "channels_first")[seed % 2]
        x = rng.standard_normal(_keras_shape(2, 2, tuple(int(v) for v in rng.integers(1, 5, 3)), data_format))
        x = x.astype(np.float32)
        near = _g_np(glayers.UpSampling3D(size, data_format=data_format, interpolation="nearest")(x))
        want = _k_np(keras.layers.UpSampling3D(size, data_format=data_format)(x))
        assert rel_l2(near, want) == 0.0
        xl = np.moveaxis(x, 1, -1) if data_format == "channels_first" else x  # (N, D, H, W, C)
        n, d, h, w, c = xl.shape
        # bilinear over (H, W) per depth slice, then linear over D (as 2-D with a width-1 axis)
        hw = _k_np(keras.layers.UpSampling2D(size[1:], interpolation="bilinear")(xl.reshape(n * d, h, w, c)))
        hw = hw.reshape(n, d, h * size[1], w * size[2], c)
        dd = np.moveaxis(hw, 1, 3).reshape(n * h * size[1], w * size[2], d, c)
        dd = _k_np(keras.layers.UpSampling2D((1, size[0]), interpolation="bilinear")(dd))
        ref = np.moveaxis(dd.reshape(n, h * size[1], w * size[2], d * size[0], c), 3, 1)
        if data_format == "channels_first":
            ref = np.moveaxis(ref, -1, 1)
        got = _g_np(glayers.UpSampling3D(size, data_format=data_format, interpolation="trilinear")(x))
        err = _compare_outputs(got, ref, "trilinear")
        assert err <= RTOL
        ok = True
    finally:
        _record("extension upsampling3d", err, failed=not ok)

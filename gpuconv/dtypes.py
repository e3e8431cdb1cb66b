"""The float dtypes gpuconv computes in, bfloat16 among them, and the one accumulation rule.

Rule every engine, layer and gradient follows (:func:`accumulation_dtype`): a 16-bit float
(float16, bfloat16) is accumulated (multiplied, summed, resized) in float32 and rounded to its own
dtype once, at the end, as GPU GEMMs accumulate half in float and as PyTorch's CPU kernels do;
float32 and float64 are computed in their own dtype.

NumPy has no bfloat16. ``ml_dtypes`` (the package Keras and JAX use) gives it one: a NumPy dtype
of kind ``'V'`` named ``'bfloat16'``, whose casts and arithmetic run through ml_dtypes' ufunc
loops. Importing ml_dtypes also teaches ``np.dtype`` the name, so ``np.dtype("bfloat16")`` and
``array.astype("bfloat16")`` work everywhere afterwards.

ml_dtypes is imported lazily, by :func:`bfloat16` / :func:`resolve` the first time bfloat16 is
named: its import costs more than all of gpuconv's (about 1.4 s against 0.6 s, measured with
``python -X importtime`` on the 2-core dev machine), and a program that never names bfloat16 never
needs it. Recognising a bfloat16 dtype needs no import (:func:`is_bfloat16` reads its name): a
bfloat16 array can only exist once ml_dtypes is loaded.
"""
import numpy as np

BFLOAT16_NAME = "bfloat16"
FLOAT16 = np.dtype(np.float16)
FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)
# The float dtypes ops accept, by name (bfloat16's dtype object needs ml_dtypes: see bfloat16()).
FLOAT_NAMES = ("float16", BFLOAT16_NAME, "float32", "float64")


def bfloat16():
    """ml_dtypes' bfloat16 as a NumPy dtype (imports ml_dtypes on first use)."""
    try:
        import ml_dtypes
    except ImportError as e:  # a core dependency: only a broken install lands here
        raise ImportError("bfloat16 needs the `ml_dtypes` package (pip install ml_dtypes).") from e
    return np.dtype(ml_dtypes.bfloat16)


def resolve(dtype):
    """``dtype`` as a NumPy dtype, the name ``'bfloat16'`` included (ml_dtypes' dtype). Raises
    NumPy's TypeError for what is no dtype at all; which dtypes an op accepts is the op's check."""
    if isinstance(dtype, str) and dtype == BFLOAT16_NAME:
        return bfloat16()
    return np.dtype(dtype)


def _as_dtype(dtype):
    return dtype if isinstance(dtype, np.dtype) else resolve(dtype)


def is_bfloat16(dtype):
    """Whether ``dtype`` (a NumPy dtype, or anything :func:`resolve` takes) is ml_dtypes' bfloat16.
    Imports ml_dtypes only when given the name ``'bfloat16'``."""
    dtype = _as_dtype(dtype)
    return dtype.kind == "V" and dtype.name == BFLOAT16_NAME and dtype.fields is None


def is_16bit_float(dtype):
    """Whether ``dtype`` is float16 or bfloat16: the dtypes accumulated in float32."""
    dtype = _as_dtype(dtype)
    return dtype == FLOAT16 or is_bfloat16(dtype)


def kind(dtype):
    """NumPy's ``dtype.kind``, except ``'f'`` for bfloat16 (which NumPy calls ``'V'``, void), so
    the library's ``kind == "f"`` / ``kind in "fiub"`` tests take it as the float it is."""
    dtype = _as_dtype(dtype)
    return "f" if is_bfloat16(dtype) else dtype.kind


def is_float(dtype):
    """Whether ``dtype`` is a real float dtype (kind ``'f'``, or bfloat16)."""
    return kind(dtype) == "f"


def is_op_dtype(dtype):
    """Whether ``dtype`` is one of the float dtypes every op computes in (``FLOAT_NAMES``)."""
    return isinstance(dtype, np.dtype) and dtype.name in FLOAT_NAMES and is_float(dtype)


def accumulation_dtype(dtype):
    """The ``np.dtype`` that values of ``dtype`` are accumulated in: float32 for a 16-bit float
    (float16, bfloat16), else ``dtype`` itself."""
    dtype = _as_dtype(dtype)
    return FLOAT32 if is_16bit_float(dtype) else dtype

"""The declared suites: the 'suite' rows reproduce bench_suite.md's table, every row of every
suite is a call the library accepts, and the CPU-sized rows stay CPU-sized."""
import numpy as np
import pytest

from gpuconv import geometry as g
from gpuconv.benchmarking import suites
from gpuconv.benchmarking.calls import RowError, call_op, validate
from gpuconv.benchmarking.ceilings import datasheet
from gpuconv.benchmarking.oracle_gate import relative_l2_error
from gpuconv.benchmarking.cost import bytes_moved, flops, roofline_seconds
from gpuconv.benchmarking.inputs import make_inputs
from gpuconv.benchmarking.row import Row

# bench_suite.md, transcribed: id, N, C, K, input, k, s, p, d, g, out, GFLOP, MB fp16,
# roofline us fp16, roofline us fp32 (H100 SXM datasheet).
TABLE = (
    ("D1", 32, 3, 64, "224x224", 7, 2, "3", 1, 1, "112x112", 7.55, 61.0, 18.2, 112.9),
    ("D2", 32, 64, 64, "56x56", 3, 1, "same", 1, 1, "56x56", 7.40, 25.8, 7.7, 110.6),
    ("D3", 32, 128, 128, "56x56", 3, 2, "same", 1, 1, "28x28", 7.40, 32.4, 9.7, 110.6),
    ("D4", 32, 256, 256, "14x14", 3, 1, "same", 1, 1, "14x14", 7.40, 7.6, 7.5, 110.6),
    ("D5", 1, 256, 256, "14x14", 3, 1, "same", 1, 1, "14x14", 0.23, 1.4, 0.4, 3.5),
    ("D6", 32, 1024, 256, "14x14", 1, 1, "same", 1, 1, "14x14", 3.29, 16.6, 4.9, 49.2),
    ("D7", 32, 512, 512, "7x7", 3, 1, "same", 1, 1, "7x7", 7.40, 7.9, 7.5, 110.6),
    ("D8", 32, 512, 512, "14x14", 3, 1, "same", 1, 32, "14x14", 0.92, 13.0, 3.9, 13.8),
    ("D9", 16, 2048, 256, "32x32", 3, 1, "same", 12, 1, "32x32", 154.62, 84.9, 156.3, 2311.2),
    ("W1", 32, 144, 144, "56x56", 3, 1, "same", 1, 144, "56x56", 0.26, 57.8, 17.3, 34.5),
    ("W2", 32, 960, 960, "7x7", 3, 1, "same", 1, 960, "7x7", 0.03, 6.0, 1.8, 3.6),
    ("W3", 32, 144, 144, "56x56", 5, 2, "same", 1, 144, "28x28", 0.18, 36.1, 10.8, 21.6),
    ("W4", 32, 384, 384, "14x14", 7, 1, "same", 1, 384, "14x14", 0.24, 9.7, 2.9, 5.8),
    ("S1a", 32, 256, 256, "28x28", 3, 1, "same", 1, 256, "28x28", 0.12, 25.7, 7.7, 15.3),
    ("S1b", 32, 256, 256, "28x28", 1, 1, "same", 1, 1, "28x28", 3.29, 25.8, 7.7, 49.2),
    ("W5", 8, 512, 512, "4000", 3, 1, "same", 64, 512, "4000", 0.10, 65.5, 19.6, 39.1),
    ("W6", 8, 4096, 4096, "2048", 4, 1, "causal", 1, 4096, "2048", 0.54, 268.5, 80.1, 160.3),
    ("A1", 16, 64, 128, "16384", 2, 1, "causal", 512, 1, "16384", 8.59, 100.7, 30.1, 128.4),
    ("T1", 128, 256, 128, "8x8", 4, 2, "1", 1, 1, "16x16", 8.59, 13.6, 8.7, 128.4),
    ("T2", 8, 256, 128, "64x64", 2, 2, "0", 1, 1, "128x128", 8.59, 50.6, 15.1, 128.4),
    ("T3", 16, 512, 256, "32", 16, 8, "4", 1, 1, "256", 2.15, 6.8, 2.2, 32.1),
    ("T4", 2, 256, 128, "16x16x16", 2, 2, "0", 1, 1, "32x32x32", 4.29, 21.5, 6.4, 64.2),
    ("V1", 8, 128, 256, "8x28x28", 3, 1, "same", 1, 1, "8x28x28", 88.79, 40.3, 89.7, 1327.1),
    ("V2", 2, 32, 32, "128x128x128", 3, 1, "same", 1, 1, "128x128x128", 231.93, 536.9, 234.4, 3466.8),
    ("V3", 8, 108, 108, "16x28x28", 3, 1, "same", 1, 108, "16x28x28", 0.59, 43.4, 12.9, 25.9),
)
H100 = datasheet("NVIDIA H100 80GB HBM3")
SUITE = {r.id: r for r in suites.SUITE}


def _dims(text):
    return tuple(int(v) for v in text.split("x"))


def test_suite_has_the_table_rows_in_order():
    assert [r.id for r in suites.SUITE] == [t[0] for t in TABLE]


@pytest.mark.parametrize("entry", TABLE, ids=[t[0] for t in TABLE])
def test_suite_row_matches_the_table(entry):
    rid, n, c, k_out, inp, k, s, p, d, groups, out, gflop, mb16, us16, us32 = entry
    row = SUITE[rid]
    assert (row.N, row.C, row.K, tuple(row.spatial)) == (n, c, k_out, _dims(inp))
    assert row.kernel_size == (k,) * row.rank and row.strides == (s,) * row.rank
    assert row.dilation == (d,) * row.rank
    if row.op == "depthwise":  # the table writes depthwise as g = C = K
        assert groups == c == k_out and row.dm == 1
    else:
        assert row.g == groups
    # The Keras padding chosen reproduces the table's output size ...
    assert tuple(row.output_spatial()) == _dims(out)
    if p in ("same", "causal"):
        assert row.padding == p
    elif row.op == "conv_transpose":
        # ... and for transposed convs Keras' crop is exactly the table's p (per side).
        crop = g.conv_transpose_geometry(row.spatial, row.kernel_size, row.strides, row.dilation, row.padding, None)[1]
        assert crop == (int(p),) * row.rank
    # The figures of the table, at its rounding.
    f = flops(row)
    assert abs(f.total / 1e9 - gflop) <= 0.0051 + 1e-4 * gflop
    assert abs(bytes_moved(row, "float16") / 1e6 - mb16) <= 0.051 + 1e-4 * mb16
    t16, _ = roofline_seconds(f, bytes_moved(row, "float16"), H100.for_dtype("float16"))
    t32, _ = roofline_seconds(f, bytes_moved(row, "float32"), H100.for_dtype("float32"))
    assert abs(t16 * 1e6 - us16) <= 0.051 + 1e-3 * us16
    assert abs(t32 * 1e6 - us32) <= 0.051 + 1e-3 * us32


@pytest.mark.parametrize("name", list(suites.SUITES))
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_every_row_of_every_suite_passes_the_library_validation(name, data_format):
    for row in suites.SUITES[name]:
        shape = validate(row, data_format)
        assert shape == row.output_shape(data_format)


def test_cpu_suite_is_every_suite_row_cpu_sized():
    assert [r.id for r in suites.CPU] == [r.id for r in suites.SUITE]
    for small in suites.CPU:
        big = SUITE[small.id]
        # the same kind of layer ...
        assert (small.op, small.k, small.s, small.d, small.g, small.dm, small.padding) == (
            big.op, big.k, big.s, big.d, big.g, big.dm, big.padding)
        assert small.rank == big.rank
        # ... at a size the NumPy engine does well under a second: batch 1-4, <= 0.35 GFLOP, <= 40 MB
        assert 1 <= small.N <= 4
        assert flops(small).total <= 0.35e9, small.id
        assert bytes_moved(small, "float32") <= 40e6, small.id


def test_quick_is_a_subset_of_cpu_covering_each_op_family():
    cpu = {r.id: r for r in suites.CPU}
    assert all(cpu[r.id] == r for r in suites.QUICK)
    assert {r.op for r in suites.QUICK} >= {"conv", "depthwise", "conv_transpose"}
    assert {r.rank for r in suites.QUICK} == {1, 2, 3}
    assert any(r.padding == "causal" for r in suites.QUICK) and any(r.g > 1 for r in suites.QUICK)


def test_keras_suite_chains_like_the_seed_cnn():
    rows = suites.KERAS
    shapes = [r.output_shape("channels_last") for r in rows]
    assert rows[0].input_shape("channels_last") == (128, 28, 28, 1)
    assert shapes[0] == (128, 28, 28, 32) == rows[1].input_shape("channels_last")
    assert shapes[1] == (128, 14, 14, 32) == rows[2].input_shape("channels_last")
    assert shapes[2] == (128, 14, 14, 64) == rows[3].input_shape("channels_last")
    assert np.prod(shapes[3][1:]) == rows[4].C == 3136
    assert rows[4].K == rows[5].C == 100 and rows[5].K == 10


@pytest.mark.parametrize("row", suites.QUICK, ids=[r.id for r in suites.QUICK])
def test_quick_rows_compute_what_the_oracle_computes(row, rng):
    """Each quick row through the ops (NumPy engine, float32) against the float64 run (smaller batch)."""
    small = row.with_batch(1)
    arrays = make_inputs(small, "float32", "channels_last", rng)
    got = call_op(small, arrays, "channels_last", engine="numpy")
    ref = call_op(small, {k: v.astype(np.float64) for k, v in arrays.items()}, "channels_last", engine="numpy")
    assert got.shape == small.output_shape("channels_last") and got.dtype == np.float32
    assert relative_l2_error(got, ref) <= 1e-5


@pytest.mark.parametrize("row, fields", [
    (Row("x", "", "conv", 1, 6, 4, (8, 8), 3, 1, "same", g=4), ("g", "C")),
    (Row("x", "", "conv", 1, 8, 6, (8, 8), 3, 1, "same", g=4), ("g", "K")),
    (Row("x", "", "conv", 1, 4, 4, (8, 8), 0, 1, "same"), ("k",)),
    (Row("x", "", "conv", 1, 4, 4, (8, 8), 3, 2, "same", d=2), ("s", "d")),
    (Row("x", "", "conv", 1, 4, 4, (8, 8), 3, 1, "causal"), ("padding",)),
    (Row("x", "", "conv", 1, 4, 4, (4, 4), 7, 1, "valid"), ("spatial", "k", "s", "d", "padding")),
    (Row("x", "", "depthwise", 1, 4, 5, (8, 8), 3, 1, "same"), ("K", "C", "dm")),
    (Row("x", "", "conv", 0, 4, 4, (8, 8), 3, 1, "same"), ("N",)),
    (Row("x", "", "conv", 1, 4, 4.0, (8, 8), 3, 1, "same"), ("K",)),  # a layer would take filters=4.0
    (Row("x", "", "conv", 1, 4, 4, (8, 8), 3, 1, "same", activation="nope"), ("activation",)),
    (Row("x", "", "conv_transpose", 1, 6, 8, (5, 5), 3, 2, "same", g=4), ("g", "C")),
    (Row("x", "", "depthwise", 1, 4, 4, (8, 8), 3, 1, "same", g=2), ("g",)),
    (Row("x", "", "separable", 1, 4, 6, (6, 6, 6), 3, 1, "same", dm=0), ("dm",)),  # no SeparableConv3D: 2 layers
    (Row("x", "", "max_pool", 1, 4, 4, (8, 8), 2, 2, "causal"), ("padding",)),
    (Row("x", "", "max_pool", 1, 4, 6, (8, 8), 2, 2, "valid"), ("K", "C")),
    (Row("x", "", "avg_pool", 1, 4, 4, (3, 3), 4, 4, "valid"), ("spatial", "k", "s", "padding")),
    (Row("x", "", "dense", 1, 8, 4, (2,), 1, 1, "valid"), ("spatial", "k")),
])
def test_impossible_rows_are_refused_naming_the_fields(row, fields):
    with pytest.raises(RowError) as e:
        validate(row, "channels_last")
    assert e.value.fields == fields

"""FLOP and byte counts, roofline bounds and the datasheet table, against hand-computed values."""
import pytest

from gpuconv.benchmarking.ceilings import DeviceCeilings, datasheet
from gpuconv.benchmarking.cost import bytes_moved, flops, roofline_seconds
from gpuconv.benchmarking.row import Row
from gpuconv.benchmarking.suites import SUITE

BY_ID = {r.id: r for r in SUITE}


def test_d4_worked_example_of_kernel_notes():
    row = BY_ID["D4"]
    f = flops(row)
    # 2*N*K*P*Q*C*R*S, all on the GEMM (tensor) side
    assert f.total == f.tensor == 2 * 32 * 256 * 14 * 14 * 256 * 9 == 7_398_752_256
    # X 32*14*14*256 + W 3*3*256*256 + Y 32*14*14*256 halves
    assert bytes_moved(row, "float16") == (2 * 32 * 14 * 14 * 256 + 9 * 256 * 256) * 2 == 7_602_176
    assert bytes_moved(row, "float32") == 2 * bytes_moved(row, "float16")
    seconds, bound = roofline_seconds(f, bytes_moved(row, "float16"), datasheet("NVIDIA H100 80GB HBM3").for_dtype("float16"))
    assert bound == "compute" and seconds == pytest.approx(7.398752256e9 / 989.4e12)


def test_depthwise_counts_are_simt_and_memory_bound():
    row = BY_ID["W1"]
    f = flops(row)
    assert f.tensor == 0 and f.simt == 2 * 32 * 144 * 56 * 56 * 9
    assert bytes_moved(row, "float16") == (2 * 32 * 56 * 56 * 144 + 9 * 144) * 2
    h100 = datasheet("NVIDIA H100 80GB HBM3")
    seconds, bound = roofline_seconds(f, bytes_moved(row, "float16"), h100.for_dtype("float16"))
    assert bound == "memory" and seconds == pytest.approx(bytes_moved(row, "float16") / 3.35e12)


def test_transposed_conv_counts_the_scatter_over_the_input():
    row = BY_ID["T1"]  # 128 x 8x8 x 256 -> 16x16 x 128, k4
    assert flops(row).total == 2 * 128 * 256 * 8 * 8 * 128 * 16
    assert bytes_moved(row, "float16") == (128 * 8 * 8 * 256 + 4 * 4 * 128 * 256 + 128 * 16 * 16 * 128) * 2


def test_grouped_and_dilated_causal_counts():
    d8 = BY_ID["D8"]  # 16 input channels per group
    assert flops(d8).total == 2 * 32 * 512 * 14 * 14 * 16 * 9
    a1 = BY_ID["A1"]  # causal padding taps are counted as work: the window is fixed
    assert flops(a1).total == 2 * 16 * 128 * 16384 * 64 * 2


def test_separable_pool_dense_and_bias_counts():
    sep = Row("s", "", "separable", 2, 8, 16, (10, 10), 3, 1, "same", dm=2, bias=True)
    f = flops(sep)
    depthwise = 2 * 2 * 16 * 100 * 9  # C*dm = 16 mid channels
    pointwise = 2 * 2 * 16 * 100 * 16
    bias = 2 * 16 * 100
    assert (f.tensor, f.simt) == (pointwise, depthwise + bias)
    assert bytes_moved(sep, "float32") == (2 * 100 * 8 + 9 * 8 * 2 + 16 * 16 + 16 + 2 * 100 * 16) * 4

    pool = Row("p", "", "max_pool", 4, 32, 32, (28, 28), 2, 2, "valid")
    assert flops(pool).total == 4 * 32 * 14 * 14 * 4
    assert bytes_moved(pool, "float32") == (4 * 28 * 28 * 32 + 4 * 14 * 14 * 32) * 4

    dense = Row("d", "", "dense", 128, 3136, 100, (1,), 1, 1, "valid", bias=True)
    assert flops(dense).tensor == 2 * 128 * 3136 * 100
    assert bytes_moved(dense, "float32") == (128 * 3136 + 3136 * 100 + 100 + 128 * 100) * 4


def test_roofline_adds_the_two_compute_units():
    c = DeviceCeilings("x", 10.0, 100.0, 20.0, 1e9, "test").for_dtype("float16")
    row = Row("s", "", "separable", 1, 4, 4, (4, 4), 3, 1, "same")
    f = flops(row)
    seconds, bound = roofline_seconds(f, 1, c)
    assert bound == "compute" and seconds == pytest.approx(f.tensor / 100.0 + f.simt / 20.0)
    seconds, bound = roofline_seconds(f, 10**12, c)
    assert bound == "memory" and seconds == pytest.approx(1000.0)


@pytest.mark.parametrize("name, label", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"),
    ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200 SXM"),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM 80GB"),
    ("NVIDIA A100-PCIE-40GB", "A100 40GB"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA L40S", "L40S"),
    ("NVIDIA A10", "A10"),
    ("Tesla T4", "T4"),
])
def test_datasheet_matches_device_names(name, label):
    sheet = datasheet(name)
    assert sheet is not None and sheet.source == f"datasheet ({label})"


def test_datasheet_values_and_unknown_devices():
    h100 = datasheet("NVIDIA H100 80GB HBM3")
    assert (h100.fp32, h100.fp16_tensor, h100.fp16_simt, h100.bandwidth) == pytest.approx(
        (66.9e12, 989.4e12, 133.8e12, 3.35e12))
    f32 = h100.for_dtype("float32")
    assert f32.tensor_flops == f32.simt_flops == h100.fp32  # TF32 off: no tensor cores for float32
    assert datasheet("Some Future GPU") is None

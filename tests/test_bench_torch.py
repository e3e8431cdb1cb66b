"""The PyTorch comparison computes the same function as gpuconv: every op, each of the padding
mappings (symmetric, larger-padding-and-slice, explicit F.pad, transposed crop), both layouts,
checked against the float64 oracle by the runner's own gate."""
import pytest

from gpuconv.benchmarking.ceilings import DeviceCeilings
from gpuconv.benchmarking.row import Row
from gpuconv.benchmarking.runner import PASS, UNSUPPORTED, Runner, Settings
from gpuconv.benchmarking.subjects import GpuconvSubject

torch = pytest.importorskip("torch", reason="PyTorch is the comparison library; not installed here")

from gpuconv.benchmarking.torch_compare import TorchSubject, _padding_plan  # noqa: E402

CEILINGS = DeviceCeilings("test", 1e10, 1e10, 1e10, 1e10, "test")

ROWS = [
    Row("conv_s2_asym", "same, s2, odd total: explicit F.pad", "conv", 2, 4, 6, (10, 10), 3, 2, "same"),
    Row("conv_k4_same", "same, even k at s1: pad + slice", "conv", 2, 4, 6, (7, 8), 4, 1, "same"),
    Row("conv_rect", "rectangular kernel and strides", "conv", 2, 3, 5, (11, 9), (3, 2), (2, 1), "same"),
    Row("conv1d_causal", "causal dilated", "conv", 2, 4, 6, (17,), 3, 1, "causal", d=2),
    Row("conv_grouped", "groups 2, dilation 2", "conv", 2, 4, 6, (9, 9), 3, 1, "same", d=2, g=2),
    Row("conv3d_valid", "3D valid s2", "conv", 1, 3, 4, (6, 7, 8), 3, 2, "valid"),
    Row("dw_dm2", "depthwise dm 2, s2", "depthwise", 2, 3, 6, (9, 10), 3, 2, "same", dm=2),
    Row("dw1d_causal", "depthwise causal", "depthwise", 2, 5, 5, (12,), 4, 1, "causal"),
    Row("dw3d", "depthwise 3D", "depthwise", 1, 3, 3, (5, 6, 7), 3, 1, "same"),
    Row("sep_bias_relu", "separable dm 2 + bias + relu", "separable", 2, 3, 7, (8, 8), 3, 1, "same", dm=2,
        bias=True, activation="relu"),
    Row("convT_same_k4", "same, k4 s2: native padding", "conv_transpose", 2, 4, 6, (5, 5), 4, 2, "same"),
    Row("convT_same_k3", "same, k3 s2: slice of the full result", "conv_transpose", 2, 4, 6, (5, 6), 3, 2, "same"),
    Row("convT_valid_k3", "valid k3 s2", "conv_transpose", 2, 4, 6, (5, 5), 3, 2, "valid"),
    Row("convT1d_dil", "1D dilation 2", "conv_transpose", 2, 4, 6, (7,), 3, 1, "same", d=2),
    Row("convT3d", "3D k2 s2", "conv_transpose", 1, 4, 2, (3, 4, 5), 2, 2, "valid"),
    Row("convT_groups", "groups 2 (beyond Keras)", "conv_transpose", 2, 4, 6, (5, 5), 3, 2, "same", g=2),
    Row("maxpool_same_asym", "max same k3 s2: -inf F.pad", "max_pool", 2, 3, 3, (10, 10), 3, 2, "same"),
    Row("maxpool_valid", "max valid", "max_pool", 2, 3, 3, (9, 9), 2, 2, "valid"),
    Row("avgpool_same_sym", "average same k3 s1", "avg_pool", 2, 3, 3, (7, 7), 3, 1, "same"),
    Row("avgpool_same_k2", "average same k2 s1: pad + slice", "avg_pool", 2, 3, 3, (7, 7), 2, 1, "same"),
    Row("dense_bias_relu", "dense + bias + relu", "dense", 3, 12, 5, (1,), 1, 1, "valid", bias=True,
        activation="relu"),
]


@pytest.fixture(scope="module")
def torch_cpu():
    return TorchSubject("cpu", threads=1)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_torch_call_matches_the_oracle(row, data_format, torch_cpu):
    settings = Settings(data_format=data_format, warmup=0, repeat=1, seed=11)
    result = Runner(settings, GpuconvSubject("numpy"), CEILINGS, torch_cpu).run(row)
    assert result.status == PASS, result.error
    assert result.compare.status == PASS, result.compare.note
    assert result.compare.rel_err <= 1e-5
    assert result.compare.ratio == pytest.approx(result.time.median / result.compare.time.median)
    assert "CPU (1 threads)" in result.compare.library


def test_rows_without_a_faithful_torch_call_say_so(torch_cpu):
    # Average pooling that needs an explicit pad: torch would count the padded cells.
    row = Row("avg", "", "avg_pool", 1, 2, 2, (10, 10), 3, 2, "same")
    result = Runner(Settings(warmup=0, repeat=1), GpuconvSubject("numpy"), CEILINGS, torch_cpu).run(row)
    assert result.status == PASS
    assert result.compare.status == UNSUPPORTED and "avg_pool" in result.compare.note
    assert result.ratio is None


def test_padding_plan_choices():
    # symmetric -> padding only
    assert _padding_plan((8,), ((1, 1),), (3,), (1,), (1,), (8,)) == ((1,), None, None)
    # causal: the larger side on both, keep the first outputs
    assert _padding_plan((8,), ((2, 0),), (3,), (1,), (1,), (8,)) == ((2,), (slice(0, 8),), None)
    # even kernel at stride 1: (1, 2) -> pad 2, skip one output
    assert _padding_plan((8,), ((1, 2),), (4,), (1,), (1,), (8,)) == ((2,), (slice(1, 9),), None)
    # stride 2 with an odd difference: only an explicit pad is exact
    assert _padding_plan((10,), ((0, 1),), (3,), (2,), (1,), (5,)) == ((0,), None, ((0, 1),))

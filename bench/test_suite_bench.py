"""One gpuconv and one torch benchmark per suite row, grouped by row (see conftest.py)."""
import pytest

from gpuconv.arrays import to_numpy


def test_gpuconv(benchmark, case, gpuconv_subject, data_format, limits):
    fn = gpuconv_subject.prepare(case.row, case.arrays, data_format)
    call = case.checked(fn, to_numpy, limits[0])
    benchmark.group = case.row.id
    benchmark.extra_info.update(case.info, library=gpuconv_subject.label)
    benchmark(call)


def test_torch(benchmark, case, torch_subject, data_format, limits):
    from gpuconv.benchmarking.torch_compare import Unsupported

    try:
        fn = torch_subject.prepare(case.row, case.arrays, data_format)
    except Unsupported as e:
        pytest.skip(f"{case.row.id}: {e}")
    call = case.checked(fn, torch_subject.to_host, limits[1])
    benchmark.group = case.row.id
    benchmark.extra_info.update(case.info, library=torch_subject.label)
    benchmark(call)

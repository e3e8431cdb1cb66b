"""The CUDA engine's host-side logic, without a GPU: index-width selection, grid sizing, argument
marshalling, algorithm choice, the compile cache (exactly once, failures not cached, errors that
name file / instantiation / options / log), kernel-source lookup, the activation table, the
ptxas report parser and the backend probe. NVRTC runs where a test compiles a tiny source; the
tests that need it skip with a reason when CuPy is not importable."""
import json
import pathlib
import re
import threading
import time

import engine_calls
import numpy as np

from conftest import HostArrayDevice
import pytest
from numpy.lib.stride_tricks import as_strided

from gpuconv import backend
from gpuconv.cuda import algorithms, cupy_device, epilogue, indexing, launch, module_cache, nvrtc, options, registry
from gpuconv.cuda import device, sources, tensors
from gpuconv.errors import DeviceUnavailableError, KernelCompileError, KernelSourceNotFoundError

try:
    from cupy.cuda import nvrtc as _cupy_nvrtc  # noqa: F401

    NVRTC_REASON = None
except Exception as e:  # pragma: no cover - depends on the machine
    NVRTC_REASON = f"cupy.cuda.nvrtc is not importable ({type(e).__name__}: {e})"

needs_nvrtc = pytest.mark.skipif(NVRTC_REASON is not None, reason=str(NVRTC_REASON))


# --------------------------------------------------------------------------------------------
# Index width
# --------------------------------------------------------------------------------------------
def test_index_type_small_arrays_are_int32():
    assert indexing.index_type(np.zeros((4, 5), np.float32)) == "int32"
    assert indexing.index_type((2, 3, 4), (10,)) == "int32"


def test_index_type_threshold_is_2_pow_31_bytes():
    # float32 shapes: 2**29 elements span exactly 2**31 bytes.
    assert indexing.index_type((2**29 - 1,), itemsize=4) == "int32"
    assert indexing.index_type((2**29,), itemsize=4) == "int64"
    assert indexing.index_type((2**31 - 1,), itemsize=1) == "int32"
    assert indexing.index_type((2**31,), itemsize=1) == "int64"


def test_index_type_strided_view_past_2_pow_31_bytes_without_memory():
    base = np.zeros(1, np.float32)
    # 2**16 rows of stride 2**17 bytes: spans ~8 GiB although it holds one real element.
    view = as_strided(base, shape=(2**16, 2), strides=(2**17, 4))
    assert indexing.byte_span(view.shape, view.strides, view.itemsize) >= 2**31
    assert indexing.index_type(view) == "int64"
    just_below = as_strided(base, shape=(2**14, 1), strides=(2**17 - 1, 4))
    assert indexing.index_type(just_below) == "int32"


def test_index_type_counts_negative_strides_by_magnitude():
    a = np.zeros((3, 8), np.float64)
    rev = a[::-1, ::-1]
    assert rev.strides[0] < 0
    assert indexing.byte_span(rev.shape, rev.strides, rev.itemsize) == a.nbytes
    big_neg = as_strided(np.zeros(1, np.float32), shape=(2**16, 1), strides=(-(2**17), 4))
    assert indexing.index_type(big_neg) == "int64"


def test_index_type_zero_strides_and_empty():
    bcast = np.broadcast_to(np.zeros(1, np.float32), (2**20, 2**20))
    assert indexing.index_type(bcast) == "int32"  # every element is the same 4 bytes
    assert indexing.index_type((0, 10**12)) == "int32"  # an empty array addresses nothing


def test_index_type_any_argument_decides():
    assert indexing.index_type((1,), (2**29,), itemsize=4) == "int64"


def test_index_type_rejects_junk():
    with pytest.raises(TypeError):
        indexing.index_type(3.5)
    with pytest.raises(TypeError):
        indexing.index_type()
    with pytest.raises(ValueError):
        indexing.index_type((-1, 2))


# --------------------------------------------------------------------------------------------
# Grid sizing
# --------------------------------------------------------------------------------------------
FAKE_ATTRS = {
    "MaxGridDimX": 2**31 - 1, "MaxGridDimY": 65535, "MaxGridDimZ": 65535,
    "MaxThreadsPerBlock": 1024, "MultiProcessorCount": 132,
    "MaxSharedMemoryPerBlock": 49152, "MaxSharedMemoryPerBlockOptin": 232448,
}


@pytest.fixture
def limits():
    return launch.DeviceLimits.from_attributes(FAKE_ATTRS)


def test_device_limits_from_attributes(limits):
    assert limits.max_grid == (2**31 - 1, 65535, 65535)
    assert limits.sm_count == 132
    assert limits.max_shared_per_block_optin == 232448


def test_grid_1d(limits):
    assert launch.grid_1d(1000, 256, limits) == (4, 1, 1)
    assert launch.grid_1d(1024, 256, limits) == (4, 1, 1)
    assert launch.grid_1d(1, 256, limits) == (1, 1, 1)
    assert launch.grid_1d(0, 256, limits) == (0, 1, 1)
    assert launch.grid_1d(10**15, 256, limits) == (2**31 - 1, 1, 1)  # capped: the kernel grid-strides
    assert launch.grid_1d(10**6, 256, limits, max_blocks=132 * 4) == (528, 1, 1)


def test_grid_nd_caps_y_and_z_at_65535(limits):
    # batch x channels past 65535 on y (robustness item 30): capped, the kernel grid-strides.
    assert launch.grid_nd((10, 70000, 3), limits) == (10, 65535, 3)
    assert launch.grid_nd((5,), limits) == (5, 1, 1)
    assert launch.grid_nd((5, 0), limits) == (0, 0, 0)


def test_grid_argument_errors(limits):
    with pytest.raises(ValueError, match="block"):
        launch.grid_1d(10, 0, limits)
    with pytest.raises(ValueError, match="n"):
        launch.grid_1d(-1, 32, limits)
    with pytest.raises(ValueError):
        launch.grid_nd((1, 2, 3, 4), limits)


def test_waves(limits):
    assert launch.waves(264, 2, limits) == pytest.approx(1.0)


def test_launch_skips_zero_grid():
    calls = []
    launch.launch(lambda *a, **k: calls.append(a), (0, 1, 1), (256, 1, 1), ())
    launch.launch(lambda *a, **k: calls.append(a), (4, 0, 1), (256, 1, 1), ())
    assert calls == []


# --------------------------------------------------------------------------------------------
# Argument marshalling
# --------------------------------------------------------------------------------------------
def test_index_scalar_types_and_overflow():
    v = launch.index_scalar(7, "int32")
    assert isinstance(v, np.int32) and v == 7
    w = launch.index_scalar(2**40, "int64")
    assert isinstance(w, np.int64) and w == 2**40
    with pytest.raises(OverflowError):
        launch.index_scalar(2**31, "int32")
    with pytest.raises(ValueError):
        launch.index_scalar(1, "int16")


def test_acc_scalar_follows_accumulation_type():
    assert isinstance(launch.acc_scalar(0.5, np.float16), np.float32)
    assert isinstance(launch.acc_scalar(0.5, np.float32), np.float32)
    assert isinstance(launch.acc_scalar(0.5, np.float64), np.float64)
    with pytest.raises(TypeError):
        launch.acc_scalar(1, np.int32)


def test_optional_pointer():
    assert launch.optional_pointer(None) == 0
    a = np.zeros(3)
    assert launch.optional_pointer(a) is a


def test_type_names():
    assert registry.cuda_type(np.float16) == "gc::half"
    assert registry.cuda_type("float32") == "float"
    assert registry.cuda_type(np.float64) == "double"
    assert registry.index_ctype("int64") == "long long"
    with pytest.raises(TypeError, match="int32"):
        registry.cuda_type(np.int32)


def test_template_name_spells_each_argument_in_cpp():
    assert registry.template_name("gc::pool", np.float32, "int32", 4, 0) == "gc::pool<float, int, 4, 0>"
    assert (registry.template_name("gc::k", np.dtype("float16"), "int64", True, "gc::half")
            == "gc::k<gc::half, long long, 1, gc::half>")
    assert registry.template_name("gc::k", "float64", np.int64(7)) == "gc::k<double, 7>"
    with pytest.raises(TypeError, match="int32"):
        registry.template_name("gc::k", np.int32)


def test_as3d_pads_in_front_and_refuses_no_or_too_many_dims():
    assert tensors.as3d((5,), 1) == (1, 1, 5)
    assert tensors.as3d((2, 3, 4), 0) == (2, 3, 4)
    for bad in ((), (1, 2, 3, 4)):
        with pytest.raises(ValueError, match="1 to 3 spatial dims"):
            tensors.as3d(bad, 1)


# --------------------------------------------------------------------------------------------
# Algorithm choice and the registry
# --------------------------------------------------------------------------------------------
def _geo(c=64, f=64, groups=1, cl=True):
    from gpuconv import problems

    return problems.ConvProblem(kind=problems.CONV, batch=2, in_channels=c, out_channels=f, groups=groups,
                                in_spatial=(8, 8), out_spatial=(8, 8), kernel_size=(3, 3), strides=(1, 1),
                                dilation=(1, 1), pad_before=(1, 1), channels_last=cl, dtype=np.dtype("float32"))


def test_choose_conv_algorithm_table():
    assert algorithms.choose_conv_algorithm(_geo(64, 64), np.float32).name == "direct_tiled"
    narrow = algorithms.choose_conv_algorithm(_geo(512, 512, groups=32), np.float32)
    assert narrow.name == "direct_tiled_narrow" and narrow.tile == algorithms.TILE_NARROW
    # no narrow double, no narrow 64-bit
    assert algorithms.choose_conv_algorithm(_geo(512, 512, groups=32), np.float64).tile == algorithms.TILE_WIDE
    assert algorithms.choose_conv_algorithm(_geo(16, 16), np.float16, index_width="int64").tile == algorithms.TILE_WIDE
    assert algorithms.choose_conv_transpose_algorithm(_geo(8, 3), np.float32).name == "phase_tiled_narrow"


def test_every_choice_is_a_registered_instantiation():
    from gpuconv.cuda import conv, conv_transpose

    for module, chooser in ((conv, algorithms.choose_conv_algorithm),
                            (conv_transpose, algorithms.choose_conv_transpose_algorithm)):
        registered = set(registry.registered(module.KERNEL_FILE))
        assert registered == set(module.instantiations())
        for dtype in (np.float16, np.float32, np.float64):
            for cl in (True, False):
                for width in ("int32", "int64"):
                    for c, f, g in ((3, 64, 1), (64, 64, 1), (512, 512, 32), (8, 8, 8), (16, 48, 1)):
                        algo = chooser(_geo(c, f, g, cl), dtype, index_width=width)
                        assert algo.kernel_file == module.KERNEL_FILE
                        assert module.name_expression(dtype, cl, width, algo.tile) in registered


def test_name_expression_format():
    from gpuconv.cuda import conv

    assert conv.name_expression(np.float16, False, "int64", 0) == "gc::conv_direct<gc::half, 1, long long, 0>"


# --------------------------------------------------------------------------------------------
# Activation table: Python and common.cuh agree
# --------------------------------------------------------------------------------------------
def _enum_block(name):
    text = sources.read_source("common.cuh")
    return re.search(r"enum\s+%s\s*\{(.*?)\}" % name, text, re.S).group(1)


def test_activation_codes_match_common_cuh():
    enum = {m.group(1).lower(): int(m.group(2))
            for m in re.finditer(r"\bACT_([A-Z0-9_]+)\s*=\s*(\d+)", _enum_block("Act"))}
    enum.pop("count")
    assert enum == epilogue.ACTIVATION_CODES


def test_fused_activations_and_codes():
    assert "linear" not in epilogue.FUSED_ACTIVATIONS
    assert {"relu", "gelu", "silu", "swish", "hard_swish", "mish", "celu"} <= epilogue.FUSED_ACTIVATIONS
    assert epilogue.activation_code(None) == 0
    assert epilogue.activation_code("swish") == epilogue.activation_code("silu")
    with pytest.raises(ValueError, match="softmax"):
        epilogue.activation_code("softmax")


# --------------------------------------------------------------------------------------------
# Sources and options
# --------------------------------------------------------------------------------------------
def test_read_source_finds_kernels_and_headers():
    assert "namespace gc" in sources.read_source("common.cuh")
    assert "conv_direct" in sources.read_source("conv_direct.cu")
    assert {"common.cuh", "tile_fma.cuh"} <= set(sources.header_names())


def test_read_source_missing_names_resource_and_package():
    with pytest.raises(KernelSourceNotFoundError) as info:
        sources.read_source("no_such_kernel.cu")
    assert isinstance(info.value, FileNotFoundError)
    assert "no_such_kernel.cu" in str(info.value) and "gpuconv.kernels" in str(info.value)


def test_compile_options():
    base = options.compile_options()
    assert "--std=c++17" in base and "-ftz=false" in base
    assert not any(o.startswith("-arch") for o in base)
    assert options.compile_options(90)[-1] == "-arch=sm_90"
    assert options.compile_options("sm_80")[-1] == "-arch=sm_80"
    assert options.compile_options(90)[:-1] == base
    with pytest.raises(ValueError, match="arch"):
        options.compile_options("hopper")


def test_get_function_refuses_unregistered_names():
    with pytest.raises(KeyError, match="not a registered"):
        module_cache.get_function("conv_direct.cu", "gc::conv_direct<int, 0, int, 0>")
    with pytest.raises(KeyError, match="register"):
        registry.registered("never_registered.cu")


# --------------------------------------------------------------------------------------------
# The exactly-once cache
# --------------------------------------------------------------------------------------------
def test_once_builds_once_across_threads():
    table, lock, calls = {}, threading.Lock(), []

    def build():
        calls.append(1)
        time.sleep(0.05)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(module_cache.once("k", build, table, lock)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(results) == 8 and all(r is results[0] for r in results)


def test_once_shares_the_exception_and_does_not_cache_it():
    table, lock, calls = {}, threading.Lock(), []
    error = RuntimeError("boom")

    def failing():
        calls.append(1)
        time.sleep(0.05)
        raise error

    seen = []

    def worker():
        try:
            module_cache.once("k", failing, table, lock)
        except RuntimeError as e:
            seen.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(seen) == 6 and all(e is error for e in seen)
    assert "k" not in table
    assert module_cache.once("k", lambda: 42, table, lock) == 42  # the next call builds again


# --------------------------------------------------------------------------------------------
# Compile errors and the disk cache, through real NVRTC on small sources
# --------------------------------------------------------------------------------------------
TINY = '#include "common.cuh"\ntemplate <typename T> __global__ void tiny(T* y) { y[threadIdx.x + 1] = y[0]; }\n'


@pytest.fixture
def fake_device(monkeypatch, tmp_path):
    """get_function without a GPU: a fixed device/arch, cubins 'loaded' as (path, mangled name)."""
    monkeypatch.setenv(module_cache.CACHE_ENV, str(tmp_path))
    # The CuPy device, whatever an earlier (emulated GPU) test left active.
    monkeypatch.setattr(device, "_active", None)
    monkeypatch.setattr(cupy_device, "current_device", lambda: (0, 80))
    monkeypatch.setattr(module_cache, "kernels_from_cubin",
                        lambda path, lowered, names: {n: (path, lowered[n]) for n in names})
    module_cache.clear_cache()
    yield tmp_path
    module_cache.clear_cache()


def _serve(monkeypatch, texts):
    real = sources.read_source
    monkeypatch.setattr(sources, "read_source", lambda name: texts[name] if name in texts else real(name))


@needs_nvrtc
def test_broken_source_raises_kernel_compile_error_and_is_not_cached(monkeypatch, fake_device):
    from gpuconv.cuda import conv  # registers conv_direct.cu

    name = conv.instantiations()[0]
    broken = sources.read_source("conv_direct.cu") + "\n#error injected failure\n"
    _serve(monkeypatch, {"conv_direct.cu": broken})
    with pytest.raises(KernelCompileError) as info:
        module_cache.get_function("conv_direct.cu", name)
    e = info.value
    assert e.source_file == "conv_direct.cu"
    assert name in e.name_expression and name in str(e)
    assert "-ftz=false" in e.options and "-arch=sm_80" in e.options and "-arch=sm_80" in str(e)
    assert "injected failure" in e.log and "injected failure" in str(e)
    assert e.__cause__ is not None
    # Not cached: the same call with the source repaired compiles (a tiny stand-in keeps it fast).
    monkeypatch.setattr(registry, "_registry", {"conv_direct.cu": ("tiny<float>",)})
    _serve(monkeypatch, {"conv_direct.cu": TINY})
    path, mangled = module_cache.get_function("conv_direct.cu", "tiny<float>")
    assert mangled.startswith("_Z") and path.exists()


@needs_nvrtc
def test_bad_define_option_raises_kernel_compile_error(monkeypatch, fake_device):
    monkeypatch.setattr(registry, "_registry", {"tiny.cu": ("tiny<float>",)})
    _serve(monkeypatch, {"tiny.cu": TINY})
    monkeypatch.setattr(options, "_BASE_OPTIONS", options._BASE_OPTIONS + ("-Dnamespace=int",))
    with pytest.raises(KernelCompileError) as info:
        module_cache.get_function("tiny.cu", "tiny<float>")
    assert "-Dnamespace=int" in info.value.options and "-Dnamespace=int" in str(info.value)
    assert "tiny.cu" in str(info.value) and "tiny<float>" in str(info.value)
    assert info.value.log


@needs_nvrtc
def test_a_first_call_compiles_only_its_instantiation_once_then_the_disk_serves_it(monkeypatch, fake_device):
    monkeypatch.setattr(registry, "_registry", {"tiny.cu": ("tiny<float>", "tiny<gc::half>", "tiny<double>")})
    _serve(monkeypatch, {"tiny.cu": TINY})
    compiles = lambda: module_cache.stats.get("nvrtc_compiles:tiny.cu", 0)  # noqa: E731
    before = compiles()
    results = []
    threads = [threading.Thread(target=lambda: results.append(module_cache.get_function("tiny.cu", "tiny<double>")))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert compiles() == before + 1  # six threads, one NVRTC run
    assert len(set(results)) == 1
    cubins = list(fake_device.glob("tiny_cu-*.cubin"))
    assert len(cubins) == 1
    assert json.loads(cubins[0].with_suffix(".json").read_text())["names"] == ["tiny<double>"]  # nothing else
    module_cache.get_function("tiny.cu", "tiny<gc::half>")  # another instantiation: its own run
    assert compiles() == before + 2
    module_cache.clear_cache()  # a new process finds both cubins on disk
    hits = module_cache.stats.get("disk_hits:tiny.cu", 0)
    module_cache.get_function("tiny.cu", "tiny<double>")
    module_cache.get_function("tiny.cu", "tiny<gc::half>")
    assert compiles() == before + 2
    assert module_cache.stats["disk_hits:tiny.cu"] == hits + 2
    assert len(list(fake_device.glob("tiny_cu-*.cubin"))) == 2


def test_recording_requests_lists_what_calls_ask_for_and_nests(monkeypatch, fake_device):
    monkeypatch.setattr(registry, "_registry", {"tiny.cu": ("tiny<float>", "tiny<double>")})
    monkeypatch.setattr(module_cache, "once", lambda key, build: {n: n for n in key[-1]})
    with module_cache.recording_requests() as outer:
        module_cache.get_function("tiny.cu", "tiny<float>")
        with module_cache.recording_requests() as inner:
            module_cache.get_function("tiny.cu", "tiny<double>")
        assert inner == [("tiny.cu", "tiny<double>")]
    assert outer == [("tiny.cu", "tiny<float>"), ("tiny.cu", "tiny<double>")]
    with pytest.raises(KeyError, match="tiny<int>"):
        module_cache.get_function("tiny.cu", "tiny<int>")


def _elf64_extent(data):
    """Bytes an ELF64 image's headers say it spans: header tables and sections with contents."""
    import struct

    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    end = max(phoff + phnum * phentsize, shoff + shnum * shentsize)
    for i in range(shnum):
        if shoff + i * shentsize + 40 <= len(data):
            (kind,) = struct.unpack_from("<I", data, shoff + i * shentsize + 4)
            off, size = struct.unpack_from("<QQ", data, shoff + i * shentsize + 24)
            end = max(end, off + size) if kind != 8 else end
    return end


@needs_nvrtc
def test_cached_cubin_file_is_a_whole_elf_image(monkeypatch, fake_device):
    # CuPy's getCUBIN drops the cubin's last byte (it strips a "trailing NUL" as for PTX); the file
    # the driver loads with cuModuleLoad must still hold every byte its ELF headers describe.
    monkeypatch.setattr(registry, "_registry", {"tiny.cu": ("tiny<float>",)})
    _serve(monkeypatch, {"tiny.cu": TINY})
    path, _ = module_cache.get_function("tiny.cu", "tiny<float>")
    data = pathlib.Path(path).read_bytes()
    assert data[:4] == b"\x7fELF" and len(data) == _elf64_extent(data)


def test_complete_cubin_restores_the_cut_tail_and_keeps_whole_images():
    import struct

    # A minimal ELF64 image: header, one PROGBITS section at 64..80, section table last.
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    struct.pack_into("<QQ", header, 0x20, 0, 80)
    struct.pack_into("<HHHH", header, 0x36, 56, 0, 64, 2)
    section = bytearray(64)
    struct.pack_into("<I", section, 4, 1)
    struct.pack_into("<QQ", section, 24, 64, 16)
    whole = bytes(header) + b"\x11" * 16 + bytes(64) + bytes(section)
    assert nvrtc.complete_cubin(whole[:-1]) == whole
    assert nvrtc.complete_cubin(whole) == whole
    assert nvrtc.complete_cubin(b"not an elf") == b"not an elf"


# --------------------------------------------------------------------------------------------
# ptxas report parsing (the CI check's verdict rests on it)
# --------------------------------------------------------------------------------------------
PTXAS_LOG = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z1kIfEvPT_' for 'sm_90'
ptxas info    : Function properties for _Z1kIfEvPT_
ptxas         .     8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 18432 bytes smem
ptxas info    : Function properties for _ZN2gc17activate_dispatchIfEET_iS1_
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
"""


def test_parse_ptxas():
    from gpuconv.cuda import check

    rows = check.parse_ptxas(PTXAS_LOG, "k.cu", 90, {"k<float>": "_Z1kIfEvPT_"})
    entry = [r for r in rows if r.entry]
    assert len(entry) == 1
    r = entry[0]
    assert (r.kernel, r.arch, r.registers, r.smem, r.stack, r.spill) == ("k<float>", "sm_90", 40, 18432, 8, 16)
    assert any(not r.entry and "activate_dispatch" in r.kernel for r in rows)
    result = check.CheckResult(rows, [], [])
    assert not result.ok  # a spill fails the check
    assert "SPILL" in check.report(result) and "FAILED" in check.report(result)


# --------------------------------------------------------------------------------------------
# Backend probe (monkeypatched)
# --------------------------------------------------------------------------------------------
@pytest.fixture
def fresh_backend():
    backend.reset()
    yield
    backend.reset()


def test_probe_failure_makes_cuda_raise_and_auto_fall_back(monkeypatch, fresh_backend):
    monkeypatch.setattr(backend, "probe_cuda", lambda: (False, "no CUDA device answered (simulated)"))
    with pytest.raises(DeviceUnavailableError, match="simulated"):
        backend.set_backend("cuda")
    backend.set_backend("auto")
    assert backend.get_backend() == "numpy"


def test_probe_reports_engine_import_failure(monkeypatch, fresh_backend):
    import importlib

    real = importlib.import_module

    def fake_import(name, *a, **k):
        if name == "gpuconv.cuda.engine":
            raise ImportError("No module named 'gpuconv.cuda.depthwise' (simulated)")
        return real(name, *a, **k)

    fake_cupy = type("FakeCupy", (), {})()
    fake_cupy.cuda = type("C", (), {"runtime": type("R", (), {"getDeviceCount": staticmethod(lambda: 1)})})
    monkeypatch.setitem(__import__("sys").modules, "cupy", fake_cupy)
    monkeypatch.setattr(importlib, "import_module", fake_import)
    monkeypatch.setattr(backend, "nvidia_driver_present", lambda: (True, ""))  # a machine with a driver
    ok, reason = backend.probe_cuda()
    assert not ok and "CUDA engine failed to load" in reason and "depthwise" in reason


def test_real_probe_on_this_machine_gives_a_reason(fresh_backend):
    ok, reason = backend.probe_cuda()
    if ok:
        pytest.skip(f"a CUDA device is present here ({reason})")
    assert reason


# --------------------------------------------------------------------------------------------
# Dense convolution marshalling, without a GPU: conv / conv_transpose run against a NumPy
# stand-in for CuPy, the launch is captured and checked against the kernel's C++ parameter list
# (count and kind of every argument), the device's grid limits and the activation code.
# --------------------------------------------------------------------------------------------
def _cu_params(filename, kernel):
    src = sources.read_source(filename)
    m = re.search(r"\b" + kernel + r"\(([^)]*)\)\s*\{", src)
    assert m, f"{kernel} not found in {filename}"
    return [p.strip() for p in m.group(1).split(",")]


@pytest.fixture
def dense_launches(monkeypatch, limits):
    from gpuconv.cuda import device

    monkeypatch.setattr(device, "_active", HostArrayDevice())
    monkeypatch.setattr(launch, "device_limits", lambda device=None: limits)
    monkeypatch.setattr(module_cache, "get_function", lambda f, name: (f, name))
    calls = []
    monkeypatch.setattr(launch, "launch", lambda kernel, grid, block, args, shared_mem=0: calls.append(
        (kernel, grid, block, args, shared_mem)))
    return calls


def _check_dense_launch(call, limits, act_code):
    (filename, name), grid, block, args, smem = call
    assert name in registry.registered(filename)
    width = np.int64 if "long long" in name else np.int32
    params = _cu_params(filename, name.split("<")[0].split("::")[-1])
    assert len(params) == len(args), (params, args)
    for p, a in zip(params, args):
        if "*" in p:
            assert isinstance(a, (np.ndarray, np.uintp)), (p, a)
        elif p.startswith("Index"):
            assert type(a) is width, (p, type(a))
        else:
            assert p.startswith("int ") and type(a) is np.int32, (p, type(a))
    assert all(1 <= g <= m for g, m in zip(grid, limits.max_grid)), grid
    assert block == (256, 1, 1) and smem == 0
    names = [p.split()[-1] for p in params]
    assert args[names.index("act")] == act_code
    assert args[names.index("x_act")] == 0  # a forward launch: no input derivative


def test_conv_marshalling_grouped_past_65535_column_tiles(dense_launches, limits):
    from gpuconv.cuda import conv

    groups = 70000  # one channel per group: 70000 (group, channel-tile) columns on grid y
    x = np.zeros((1, 4, 4, groups), np.float32)
    y = engine_calls.conv(conv, x, np.zeros((3, 3, 1, groups), np.float32), np.zeros(groups, np.float32), strides=(1, 1),
                  padding=((1, 1), (1, 1)), dilation=(1, 1), groups=groups, channels_last=True, activation="gelu")
    assert y.shape == (1, 4, 4, groups)
    (call,) = dense_launches
    assert call[1][1] == 65535  # capped: the kernel grid-strides over the rest
    _check_dense_launch(call, limits, epilogue.activation_code("gelu"))


def test_conv_transpose_marshalling_phases_past_65535(dense_launches, limits):
    from gpuconv.cuda import conv_transpose

    x = np.zeros((1, 2, 1, 1, 1), np.float16)  # channels_first, strides 64^3: 262144 stride phases
    y = engine_calls.conv_transpose(conv_transpose, x, np.zeros((64, 64, 64, 3, 2), np.float16), None, strides=(64, 64, 64),
                                      dilation=(1, 1, 1), groups=1, out_spatial=(64, 64, 64), crop=(0, 0, 0),
                                      channels_last=False, activation=None)
    assert y.shape == (1, 3, 64, 64, 64) and y.dtype == np.float16
    (call,) = dense_launches
    assert call[1][2] == 65535
    _check_dense_launch(call, limits, 0)

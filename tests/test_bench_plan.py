"""The no-GPU plan report (gpuconv/benchmarking/plan.py), ``--plan``, ``--algorithm`` and the
table's "algo" column. The NVRTC audits compile once per instantiation for the whole session
(``plan.audit`` is cached per process)."""
import math
import os

import pytest

from gpuconv.benchmarking import cli, plan, suites
from gpuconv.cuda import algorithms, dry_run

H100 = plan.SM_LIMITS[90]
A100 = plan.SM_LIMITS[80]
CONV_IDS = [r.id for r in suites.SUITE if r.op in plan.CONV_OPS]


@pytest.fixture(scope="module")
def h200_plan():
    return {pr.row.id: pr for pr in plan.plan_rows(suites.SUITE, "float16", "channels_last", "h200")}


# ---------------------------------------------------------------------------------------------
# The occupancy calculator, against cases computed by hand
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("regs, threads, smem, limits, ctas, limiter", [
    (128, 128, 24 * 1024, H100, 4, "registers"),   # 4096 regs a warp: 16 warps, 4 CTAs of 4
    (126, 128, 24 * 1024, H100, 4, "registers"),   # rounds up to the same 4096
    (152, 128, 24 * 1024, H100, 3, "registers"),   # 4864 a warp: 3 per sub-partition, 12 warps
    (16, 256, 0, H100, 8, "threads"),              # 2048 threads (registers would allow 16)
    (64, 128, 100 * 1024, H100, 2, "smem"),        # 101 KB each of 228 KB
    (64, 128, 100 * 1024, A100, 1, "smem"),        # of 164 KB
    (16, 32, 0, H100, 32, "ctas"),                 # 32 CTAs per SM at most
    (255, 1024, 0, H100, 0, "registers"),          # 8192 a warp: 8 warps < 32 of one CTA
])
def test_occupancy_matches_hand_computed_cases(regs, threads, smem, limits, ctas, limiter):
    occ = plan.occupancy(regs, threads, smem, limits)
    assert (occ.ctas, occ.limiter) == (ctas, limiter)


def test_occupancy_refuses_bad_values():
    with pytest.raises(ValueError, match="registers=-1"):
        plan.occupancy(-1, 128, 0, H100)
    with pytest.raises(ValueError, match="registers=300"):
        plan.occupancy(300, 128, 0, H100)
    with pytest.raises(ValueError, match="threads=0"):
        plan.occupancy(32, 0, 0, H100)
    with pytest.raises(ValueError, match="ctas_per_sm=0"):
        plan.waves(10, 132, 0)


def test_ffma_fragment_wavefronts():
    wide = plan.KernelShape("f", "n", 256, 64, 64, 16, 2, False, 4, 4, False)
    narrow = plan.KernelShape("f", "n", 256, 256, 16, 16, 2, False, 8, 2, False)
    narrow_cf = plan.KernelShape("f", "n", 256, 256, 16, 16, 2, False, 8, 2, True)
    # wide: A 2 rows broadcast (1), B 16 float4 = 256 B (2); narrow channels_first: A 32 x 16 B
    # per float4 load, two loads (8), B one address (1)
    assert [plan._ffma_wavefronts(s) for s in (wide, narrow, narrow_cf)] == [3, 3, 9]


# ---------------------------------------------------------------------------------------------
# The suite's plan: no GPU, sane numbers
# ---------------------------------------------------------------------------------------------
def test_plan_of_the_suite_is_sane(h200_plan):
    sms = dry_run.TARGETS["h200"][1].sm_count
    assert sms == 132 and list(h200_plan) == [r.id for r in suites.SUITE]
    for rid in CONV_IDS:
        pr = h200_plan[rid]
        occ = pr.occupancy
        if pr.algorithm == "phase_implicit_gemm":  # the one note: a launch per stride phase, bounds summed
            assert pr.note.startswith(f"{len(pr.launches)} stride phases on the tensor-core kernels"), (rid, pr.note)
            assert len(pr.launches) == math.prod(pr.row.strides) and pr.ctas == sum(
                plan.grid_ctas(shape, sub) for shape, sub in pr.launches)
        else:
            assert pr.note == "" and len(pr.launches) == 1, (rid, pr.note)
        assert occ is not None and occ.ctas >= 1
        threads = pr.shape.threads
        assert occ.ctas * threads <= H100.max_threads
        assert occ.ctas <= H100.max_ctas
        assert occ.ctas * plan._round_up(pr.registers * 32, 256) * (threads // 32) <= H100.regs_per_sm
        assert occ.ctas * (pr.smem + H100.smem_reserved_per_cta) <= H100.smem_per_sm
        assert {shape for shape, _ in pr.launches} == {pr.shape}  # the suite's phases share one shape
        assert pr.waves == sum(math.ceil(plan.grid_ctas(shape, sub) / (sms * occ.ctas)) for shape, sub in pr.launches)
        assert 0 < pr.roofline_s <= pr.bound_s < 1.0
        one_launch = max(pr.compute_s, pr.global_s, pr.smem_s) + pr.sum_s
        # phases in turn: the sum of each phase's max term, at least the max of the summed terms
        assert pr.bound_s == one_launch if len(pr.launches) == 1 else pr.bound_s >= one_launch
        assert (pr.sum_s > 0) == (pr.workspace_bytes > 0) == (pr.shape.slices > 1)
        assert pr.limited_by in ("compute", "global", "smem")
    for pr in h200_plan.values():
        if pr.row.op not in plan.CONV_OPS:
            assert pr.shape is None and pr.bound_s is None and pr.row.op in pr.algorithm


def test_d4_by_hand(h200_plan):
    pr = h200_plan["D4"]  # 32x14x14 256->256 k3: M = 6272 pixels, K = 9 * 256
    assert pr.algorithm == "implicit_gemm" and (pr.shape.bm, pr.shape.bn, pr.shape.bk, pr.shape.stages) == (64, 64, 32, 3)
    assert pr.ctas == math.ceil(6272 / 64) * 4 == 392
    assert pr.k_steps == 9 * 256 // 32 == 72
    assert pr.global_bytes == (64 * 32 + 32 * 64) * 2 * 72 + 64 * 64 * 2
    assert pr.smem == 24 * 1024 and 120 <= pr.registers <= 128
    tiles = pr.waves * pr.occupancy.ctas
    assert pr.compute_s == pytest.approx(tiles * 2 * 64 * 64 * 32 * 72 / (989.4e12 / 132))


def test_d3_tile_128_by_hand(h200_plan):
    pr = h200_plan["D3"]  # 32x56x56 s2 128->128 k3: M = 25,088 pixels, K = 9 * 128
    s = pr.shape
    assert pr.algorithm == "implicit_gemm_128" and (s.bm, s.bn, s.bk, s.stages, s.threads) == (128, 128, 32, 3, 256)
    assert s.name == "gc::conv_implicit_gemm_128<gc::half, 1, 1>" and s.slices == 1
    assert pr.ctas == 25088 // 128 == 196 and pr.k_steps == 36
    assert pr.global_bytes == (128 * 32 + 32 * 128) * 2 * 36 + 128 * 128 * 2
    # 8 warps of 64 x 32: each reads 64 A rows and 32 B columns of every k step
    assert pr.smem_bytes == (8 * (64 * 32 + 32 * 32) * 2 + (128 * 32 + 32 * 128) * 2) * 36 + 2 * 128 * 128 * 2
    assert pr.smem == 48 * 1024 and pr.occupancy.ctas == 1 and pr.waves == 2
    cells = dict(zip((n for n, _ in plan.PLAN_COLUMNS), plan._plan_cells(pr)))
    assert (cells["tile"], cells["split"]) == ("128x128x32", "-")


def test_d7_split_k_by_hand(h200_plan):
    pr = h200_plan["D7"]  # 32x7x7 512->512 k3: M = 1568, 25 x 8 = 200 tiles, K = 9 * 512 = 144 k tiles
    s = pr.shape
    assert pr.algorithm == "implicit_gemm" and s.slices == 2 and s.split.k_tiles_per_slice == 72
    assert s.name == "gc::conv_implicit_gemm_partial<gc::half, 1, 1>"  # pass 1 is the audited kernel
    assert pr.ctas == 200 * 2 and pr.k_steps == 72 and pr.waves == 1
    assert pr.global_bytes == (64 * 32 + 32 * 64) * 2 * 72 + 64 * 64 * 4  # the partial tile in f32
    assert pr.workspace_bytes == 2 * 1568 * 512 * 4
    hbm = plan.target_ceilings("h200").bandwidth
    assert pr.sum_s == pytest.approx((2 * 1568 * 512 * 4 + 1568 * 512 * 2) / hbm)
    assert pr.bound_s == pytest.approx(max(pr.compute_s, pr.global_s, pr.smem_s) + pr.sum_s)
    cells = dict(zip((n for n, _ in plan.PLAN_COLUMNS), plan._plan_cells(pr)))
    assert (cells["split"], cells["ws"], cells["pass2"]) == ("2", "6.12 MB", plan._us(pr.sum_s))
    # a large dense row: one pass, no workspace, no second pass
    d2 = plan._plan_cells(h200_plan["D2"])
    assert h200_plan["D2"].shape.slices == 1 and h200_plan["D2"].sum_s == 0
    assert dict(zip((n for n, _ in plan.PLAN_COLUMNS), d2))["split"] == "1"
    assert dict(zip((n for n, _ in plan.PLAN_COLUMNS), d2))["ws"] == "-"
    # FFMA rows have no split column
    assert dict(zip((n for n, _ in plan.PLAN_COLUMNS), plan._plan_cells(h200_plan["T3"])))["split"] == "-"  # FFMA


def test_forced_split_shows_in_the_plan(monkeypatch):
    row = next(r for r in suites.SUITE if r.id == "D4")
    monkeypatch.setenv(algorithms.SPLIT_ENV, "3")
    (pr,) = plan.plan_rows([row], "float16", audits={})
    assert pr.shape.slices == 3 and pr.ctas == 392 * 3 and pr.k_steps == 24
    assert pr.workspace_bytes == 3 * 6272 * 256 * 4


def test_float16_convs_pick_implicit_gemm_on_sm90_and_float32_direct_tiled(h200_plan):
    device = plan.target_device("h200")
    for rid in CONV_IDS:
        row = next(r for r in suites.SUITE if r.id == rid)
        f16 = plan.choose(row, "float16", "channels_last", device)[0].name
        f32 = plan.choose(row, "float32", "channels_last", device)[0].name
        if row.op == "conv_transpose":  # T3's 8 phases of 64 CTAs would leave SMs idle
            assert f32 == "phase_tiled" and f16 == ("phase_tiled" if rid == "T3" else "phase_implicit_gemm"), rid
        elif row.g > 1:  # D8: 16 filters per group stay on the narrow FFMA tile
            assert f16 == f32 == "direct_tiled_narrow"
        else:
            assert f16 in ("implicit_gemm", "implicit_gemm_128") and f32 == "direct_tiled", rid
        assert h200_plan[rid].algorithm == f16
        # channels_first: the same row (cuda/conv.py re-lays it to channels_last around the kernel)
        assert plan.choose(row, "float16", "channels_first", device)[0].name == f16
    assert h200_plan["T3"].shape.file == "conv_transpose.cu" and h200_plan["D8"].shape.bm == 256
    assert h200_plan["T1"].shape.file == "conv_implicit_gemm.cu"


def test_a_row_without_an_audit_says_so_and_gives_no_bound():
    row = next(r for r in suites.SUITE if r.id == "D2")
    (pr,) = plan.plan_rows([row], "float16", audits={})
    assert pr.algorithm == "implicit_gemm" and pr.ctas == 1568 and pr.global_s > 0
    assert pr.occupancy is None and pr.bound_s is None and "no NVRTC audit" in pr.note
    assert "no NVRTC audit" in plan.render_plan([pr], "float16", "channels_last", "h200")


def test_audit_is_cached_per_instantiation(h200_plan):
    shape = h200_plan["D2"].shape
    before = plan.audit.cache_info().hits
    assert plan.audit(shape.file, shape.name, 90).registers == h200_plan["D2"].registers
    assert plan.audit.cache_info().hits == before + 1


def test_unknown_target_is_refused():
    assert set(cli.PLAN_TARGETS) == set(dry_run.TARGETS) == set(plan.CLOCK_HZ) == set(plan.TARGET_DEVICE_NAMES)
    with pytest.raises(ValueError, match="target='v100'"):
        plan.target_device("v100")


# ---------------------------------------------------------------------------------------------
# The CLI: --plan, --algorithm, the algo column
# ---------------------------------------------------------------------------------------------
def test_plan_flag_prints_the_table_without_a_gpu(capsys, h200_plan):
    assert cli.main(["--suite", "suite", "--rows", "D4,D8,W1,T1", "--dtype", "float16", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "target h200 (sm_90, 132 SMs" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line[:3] in ("D4 ", "D8 ", "W1 ", "T1 ")}
    assert "implicit_gemm" in lines["D4"] and "64x64x32" in lines["D4"]
    assert "direct_tiled_narrow" in lines["D8"] and "phase_implicit_gemm" in lines["T1"]
    assert "depthwise" in lines["W1"] and lines["W1"].split()[-1] == "-"


def test_algorithm_flag_refuses_an_unknown_name_with_the_list(capsys):
    assert cli.main(["--suite", "suite", "--plan", "--algorithm", "winograd"]) == 2
    err = capsys.readouterr().err
    assert "--algorithm winograd" in err
    for name in ("implicit_gemm", "direct_tiled", "direct_tiled_narrow", "phase_tiled"):
        assert name in err


def test_algorithm_flag_forces_the_table_and_restores_the_environment(capsys, monkeypatch, h200_plan):
    monkeypatch.setenv(algorithms.OVERRIDE_ENV, "conv_transpose=phase_tiled")
    with cli.forced_algorithm("direct_tiled"):
        assert algorithms.overrides() == {"conv_transpose": "phase_tiled", "conv": "direct_tiled"}
    assert os.environ[algorithms.OVERRIDE_ENV] == "conv_transpose=phase_tiled"
    monkeypatch.delenv(algorithms.OVERRIDE_ENV)
    assert cli.main(["--suite", "suite", "--rows", "D4", "--dtype", "float16", "--plan",
                     "--algorithm", "direct_tiled"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("D4 "))
    assert "direct_tiled" in line and "implicit_gemm" not in line and "64x64x16" in line
    assert algorithms.OVERRIDE_ENV not in os.environ
    # forced onto a row it cannot run: the row says so instead of planning another kernel
    assert cli.main(["--suite", "suite", "--rows", "D4", "--dtype", "float32", "--plan",
                     "--algorithm", "implicit_gemm"]) == 0
    out = capsys.readouterr().out
    assert "forced:cannot-run" in out and "cannot run this problem" in out


def test_plan_refuses_the_backward_pass(capsys):
    assert cli.main(["--suite", "suite", "--plan", "--pass", "backward"]) == 2
    assert "forward kernels only" in capsys.readouterr().err


def test_the_benchmark_table_has_an_algo_column(capsys):
    assert cli.main(["--suite", "quick", "--rows", "D4", "--backend", "numpy", "--no-compare",
                     "--warmup", "0", "--repeat", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(l for l in lines if l.startswith("id "))
    assert header.split()[:4] == ["id", "op", "algo", "shape"]
    assert next(l for l in lines if l.startswith("D4 ")).split()[2] == "numpy"
    # on a device the column is the table's choice
    row = next(r for r in suites.SUITE if r.id == "D4")
    assert plan.algorithm_name(row, "float16", "channels_last", plan.target_device("h100")) == "implicit_gemm"
    assert plan.algorithm_name(row, "float16", "channels_last", None) == "direct_tiled"


def test_a_depthwise_row_names_its_kernel_in_the_algo_column():
    """The depthwise plan's kernel (tile / direct), not the op name the column falls back to."""
    row = next(r for r in suites.SUITE if r.id == "W1")
    assert plan.algorithm_name(row, "float16", "channels_last", plan.target_device("h100")) == "depthwise_tile"


def test_channels_first_tensor_core_rows_pay_for_the_layout_copies():
    row = next(r for r in suites.SUITE if r.id == "D4")
    audits = {}
    (last,) = plan.plan_rows([row], "float16", "channels_last", audits=audits)
    (first,) = plan.plan_rows([row], "float16", "channels_first", audits=audits)
    assert first.algorithm == last.algorithm and first.shape.name == last.shape.name
    hbm = plan.target_ceilings("h200").bandwidth
    x = math.prod(row.input_shape("channels_first"))
    y = math.prod(row.output_shape("channels_first"))
    assert last.relayout_s == 0 and first.relayout_s == pytest.approx(2 * (x + y) * 2 / hbm)
    assert first.global_s == last.global_s and "re-laid" in first.note and "no NVRTC audit" in first.note


def test_t1_phases_by_hand(h200_plan):
    """T1 (4x4 stride 2, 128 x 8 x 8, 256 -> 128) on the tensor cores: 4 phases, each a 2x2-tap
    convolution of M = 8,192 pixels x 128 filters, K = 4 x 256: 256 tiles of 64 x 64, under a wave
    of 132 x 4, so split in 2 (32 k tiles); 512 CTAs each, launched in turn."""
    pr = h200_plan["T1"]
    assert pr.algorithm == "phase_implicit_gemm" and len(pr.launches) == 4
    for shape, sub in pr.launches:
        assert sub.kernel_size == (2, 2) and sub.strides == (1, 1) and sub.output_pixels == 8192
        assert (shape.bm, shape.bn, shape.slices) == (64, 64, 2)
    assert pr.ctas == 4 * 512 and pr.k_steps == 16
    # The row's bound is the sum of the phases' own (each its max term + its pass 2).
    sheet = plan.target_ceilings("h200")
    limits = plan.SM_LIMITS[90]
    audits = {(shape.file, shape.name): plan.audit(shape.file, shape.name, 90) for shape, _ in pr.launches}
    ests = [plan.estimate_launch(shape, sub, audits[(shape.file, shape.name)], sheet, 132, limits,
                                 plan.CLOCK_HZ["h200"]) for shape, sub in pr.launches]
    assert pr.bound_s == pytest.approx(sum(max(e.compute_s, e.global_s, e.smem_s) + e.sum_s for e in ests))
    assert pr.bound_s < 4 * max(ests[0].compute_s, ests[0].global_s, ests[0].smem_s) + 4 * ests[0].sum_s + 1e-12

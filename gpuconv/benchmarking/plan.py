"""The plan report: what each benchmark row would launch on a GPU and how fast it could be, without one.

    gpuconv-bench --suite suite --dtype float16 --plan [--target h200|h100|a100]

Nothing is launched and no GPU is needed. Per row: the algorithm the table
(``gpuconv.cuda.algorithms``) picks on the target, the CTA tile and its pipeline stages, the grid's
CTAs, the occupancy (CTAs per SM), the waves over the target's SMs, the bytes one CTA moves from
global and from shared memory, and the time bound those give, next to the row's roofline
(``cost.py``). Registers and static shared memory per CTA come from the NVRTC audit of the exact
instantiation the row launches (``gpuconv.cuda.check.compile_task``, the CI audit's own compile;
no GPU), compiled once per instantiation and process (``audit``).

What the model assumes, exactly:

- Targets: the SM count of ``gpuconv.cuda.dry_run.TARGETS``; peak rates and HBM bandwidth of the
  datasheet (``ceilings.DATASHEET``: H200 SXM, H100 SXM, A100 SXM 80GB); the SM clock ``CLOCK_HZ``
  (max boost: 1.98 GHz on H100/H200, 1.41 GHz on A100) for shared memory's 128 bytes per clock
  per SM (32 banks of 4 bytes).
- Occupancy is the CUDA occupancy calculator's (``cuda_occupancy.h``): registers allocated per
  warp in units of 256, from a register file split into 4 sub-partitions of 16,384; shared memory
  per CTA = the audit's static bytes + 1 KB the driver reserves per CTA (sm_80+), in units of
  128 bytes, against the largest carveout (164 KB per SM on sm_80, 228 KB on sm_90); at most
  2,048 threads and 32 CTAs per SM. Every kernel here uses static shared memory only.
- Compute: one CTA's tile work is ``2 * BM * BN * BK * k_steps`` FLOPs, the padded tile (the zeros
  of partial tiles, of the C=3 stem's flat k and of ``k_steps`` rounding are paid). An SM holding
  its ``CTAs/SM`` tiles runs them at the SM's share of the peak (tensor-core rate for
  ``implicit_gemm``, the fp32 FMA rate for the FFMA tiles, which accumulate in float32); a wave is
  ``SMs * CTAs/SM`` CTAs and the last, partial wave costs a whole one (an SM left with fewer
  CTAs is not assumed to go faster: too few warps to hide latency). So
  ``compute = waves * CTAs/SM * tile FLOPs / (peak / SMs)``. mma.sync is charged the full
  datasheet tensor rate; on sm_90 only wgmma reaches it, so the bound is optimistic there.
- Global memory: every CTA loads its A (im2col) and B (weight) tile at each k step and stores its
  output tile once: ``(BM * BK + BK * BN) * itemsize * k_steps + BM * BN * itemsize`` bytes, all
  charged at HBM bandwidth (no L2 reuse is credited: for a 3x3 convolution every input pixel is
  counted nine times; H200's L2 is measured not far above its HBM, A100's is well above, so there
  the term is pessimistic). Zero-filled padding loads are counted as loads.
- Shared memory: per k step, the fills (the A and B tiles written once) and the reads: for
  ``implicit_gemm`` the ldmatrix reads of each warp's block (32 x 32; 64 x 32 in the 128 x 128
  tile of ``implicit_gemm_128``: its A rows and B columns,
  conflict-free by the swizzle), for the FFMA tiles the 128-byte wavefronts of each warp's
  fragment loads (threads of a warp reading one address share it); ``implicit_gemm``'s epilogue
  stages the output tile through shared memory (written and read once). Charged per SM like the
  compute: ``waves * CTAs/SM * tile bytes / (128 B * clock)``.
- Split-K (``implicit_gemm`` rows where the table splits the reduction,
  ``conv_implicit_gemm.split_plan`` on the target's SM count): the grid has ``S`` times the
  CTAs, each over its slice's ``k_tiles_per_slice`` k steps (the longest slice), storing an f32
  partial tile (``BM * BN * 4`` bytes, from registers: no shared-memory epilogue) instead of the
  output tile; the audited kernel is pass 1's (``conv_implicit_gemm_partial``). Pass 2 (the
  slices' sum, bias, activation, cast) is charged as HBM traffic alone: the workspace read
  (``S * M * F * 4`` bytes) and the output written, ``pass2 = bytes / HBM``, added to pass 1's
  bound.
- channels_first rows on the tensor-core kernels (channels_last only) add the two layout copies of
  ``cuda/conv.py`` as HBM traffic: x and y each read and written once (``relayout``, in the note).
- The bound is ``max(compute, global / HBM, shared / shared bandwidth) + pass2 + relayout``; it ignores launch
  latency, instruction issue (the FFMA tile's shared loads share issue slots with its FMAs), the
  im2col address arithmetic, barriers and pipeline fill. A transposed convolution on the FFMA
  kernel (``phase_tiled``): its phases are taken to have ``ceil(k / s)`` taps per dim (exact for
  the suite: d = 1, s divides k); the taps it skips are counted. On the tensor-core kernels
  (``phase_implicit_gemm``): each stride phase is a launch of its own (``launch_shapes``: the
  phase's convolution with its exact taps, tile and split), modelled as above; the phases run in
  turn, so the row's bound is the sum of theirs (the table shows phase 1's tile and per-CTA bytes,
  and all phases' CTAs, waves and times).
- Rows that are not convolutions or dense products (depthwise, pooling) print the kernel the
  engine plans for them and ``-`` for every model column.
"""
import concurrent.futures
import dataclasses
import functools
import math
import types

import numpy as np

from .. import geometry as g
from .. import problems
from . import ceilings as _ceilings
from . import cost

DEFAULT_TARGET = "h200"
TARGET_DEVICE_NAMES = {"h200": "NVIDIA H200", "h100": "NVIDIA H100 SXM", "a100": "NVIDIA A100-SXM4-80GB"}
CLOCK_HZ = {"h200": 1.98e9, "h100": 1.98e9, "a100": 1.41e9}
SMEM_BYTES_PER_CLOCK = 128  # 32 banks x 4 bytes, per SM
WAVEFRONT = 128             # bytes one shared-memory wavefront serves
WARP = 32
WORKSPACE_ITEMSIZE = 4      # split-K partial sums: float32 (conv_implicit_gemm.WORKSPACE_DTYPE)
CONV_OPS = ("conv", "dense", "conv_transpose")


# ---------------------------------------------------------------------------------------------
# Occupancy (the CUDA occupancy calculator)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SmLimits:
    """Per-SM limits of one compute capability (CUDA programming guide, "Technical Specifications")."""

    smem_per_sm: int
    regs_per_sm: int = 65536
    sub_partitions: int = 4
    reg_unit: int = 256          # registers are allocated per warp in these units
    max_regs_per_thread: int = 255
    max_threads: int = 2048
    max_ctas: int = 32
    smem_reserved_per_cta: int = 1024
    smem_unit: int = 128


SM_LIMITS = {80: SmLimits(smem_per_sm=164 * 1024), 90: SmLimits(smem_per_sm=228 * 1024)}


def _round_up(value, unit):
    return -(-value // unit) * unit


@dataclasses.dataclass(frozen=True)
class Occupancy:
    ctas: int        # CTAs per SM
    limiter: str     # which resource sets it: registers, smem, threads or ctas
    by: dict         # CTAs per SM each resource allows


def occupancy(registers, threads, smem_bytes, limits):
    """CTAs per SM for a kernel of ``registers`` per thread, ``threads`` per CTA and ``smem_bytes``
    of shared memory per CTA, as ``cuda_occupancy.h`` computes it (see the module docstring)."""
    for name, value in (("registers", registers), ("threads", threads), ("smem_bytes", smem_bytes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (1 if name == "threads" else 0):
            raise ValueError(f"Invalid value for argument `{name}`: expected a non-negative integer "
                             f"(threads: positive). Received: {name}={value!r}")
    if registers > limits.max_regs_per_thread:
        raise ValueError(f"Invalid value for argument `registers`: at most {limits.max_regs_per_thread} per thread. "
                         f"Received: registers={registers!r}")
    warps = -(-threads // WARP)
    if warps * WARP > limits.max_threads:
        return Occupancy(0, "threads", {"threads": 0})
    per_warp = _round_up(max(registers, 1) * WARP, limits.reg_unit)
    warps_by_regs = (limits.regs_per_sm // limits.sub_partitions // per_warp) * limits.sub_partitions
    smem = _round_up(smem_bytes + limits.smem_reserved_per_cta, limits.smem_unit)
    by = {
        "registers": warps_by_regs // warps,
        "smem": limits.smem_per_sm // smem,
        "threads": limits.max_threads // (warps * WARP),
        "ctas": limits.max_ctas,
    }
    limiter = min(by, key=lambda k: by[k])
    return Occupancy(by[limiter], limiter, by)


def waves(ctas, sms, ctas_per_sm):
    """Full waves of ``sms * ctas_per_sm`` CTAs the grid needs (the last one may be partial)."""
    if ctas_per_sm < 1:
        raise ValueError(f"Invalid value for argument `ctas_per_sm`: the kernel does not fit on an SM. "
                         f"Received: ctas_per_sm={ctas_per_sm!r}")
    return -(-ctas // (sms * ctas_per_sm))


# ---------------------------------------------------------------------------------------------
# The NVRTC audit, once per instantiation
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Audit:
    registers: int
    smem: int
    spill: int


@functools.lru_cache(maxsize=None)
def audit(kernel_file, name, arch):
    """Registers, static shared memory and spill bytes of one instantiation on sm_``arch``: the CI
    audit's NVRTC compile (``check.compile_task``, ptxas -v) of that name alone. Cached per
    (file, name, arch) for the process: a compile takes seconds."""
    from ..cuda import check

    result = check.compile_task(kernel_file, [name], arch)
    if result.errors:
        raise RuntimeError(f"NVRTC audit of {name} ({kernel_file}, sm_{arch}) failed: {'; '.join(result.errors)}")
    entry = next(r for r in result.rows if r.entry and r.kernel == name)
    return Audit(entry.registers, entry.smem, entry.spill)


def audit_all(kernels, arch, jobs=None):
    """Audit ``kernels`` (``(file, name)`` pairs) on a thread pool (NVRTC releases the GIL);
    returns ``{(file, name): Audit or the exception}``."""
    from ..cuda import check

    todo = list(dict.fromkeys(kernels))
    jobs = max(1, min(len(todo), jobs or check.default_jobs())) if todo else 1
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {key: pool.submit(audit, key[0], key[1], arch) for key in todo}
        for key, fut in futures.items():
            try:
                results[key] = fut.result()
            except Exception as e:  # no NVRTC here, or a compile error: that row says so
                results[key] = e
    return results


# ---------------------------------------------------------------------------------------------
# Row -> problem -> the kernel it launches
# ---------------------------------------------------------------------------------------------
def conv_problem(row, dtype, data_format="channels_last"):
    """The engine's :class:`gpuconv.problems.ConvProblem` of a conv, dense or conv_transpose row."""
    if row.op not in CONV_OPS:
        raise ValueError(f"Invalid value for argument `row`: a conv, dense or conv_transpose row is needed. "
                         f"Received: row.op={row.op!r}")
    k, s, d = row.kernel_size, row.strides, row.dilation
    if row.op == "conv_transpose":
        out_spatial, pad_before = g.conv_transpose_geometry(row.spatial, k, s, d, row.padding, None)
        kind = problems.CONV_TRANSPOSE
    else:
        out_spatial = row.output_spatial()
        pad_before = tuple(p[0] for p in g.conv_padding(row.spatial, k, s, d, row.padding))
        kind = problems.CONV
    return problems.ConvProblem(
        kind=kind, batch=row.N, in_channels=row.C, out_channels=row.K, in_spatial=tuple(row.spatial),
        out_spatial=tuple(out_spatial), kernel_size=k, strides=s, dilation=d, pad_before=tuple(pad_before),
        groups=row.g, channels_last=data_format == "channels_last", dtype=np.dtype(dtype),
        activation=row.activation, has_bias=row.bias,
    )


def target_device(target):
    """A stand-in for a device of ``target`` as the algorithm table reads it (its compute
    capability and SM count)."""
    from ..cuda import dry_run

    if target not in dry_run.TARGETS:
        raise ValueError(f"Invalid value for argument `target`. Expected one of {sorted(dry_run.TARGETS)}. "
                         f"Received: target={target!r}")
    cc, limits = dry_run.TARGETS[target]
    return types.SimpleNamespace(compute_capability=str(cc), sm_count=limits.sm_count)


def index_width(problem):
    from ..cuda import indexing

    return indexing.index_type(tuple(problem.input_shape), tuple(problem.kernel_shape), tuple(problem.output_shape),
                               itemsize=problem.dtype.itemsize)


def choose(row, dtype, data_format, device):
    """The algorithm-table row (``algorithms.Algorithm``) a conv-family row runs with on ``device``
    (``GPUCONV_ALGORITHM`` overrides included: a forced name that cannot run raises ValueError)."""
    from ..cuda import algorithms

    problem = conv_problem(row, dtype, data_format)
    chooser = (algorithms.choose_conv_transpose_algorithm if row.op == "conv_transpose"
               else algorithms.choose_conv_algorithm)
    return chooser(problem, np.dtype(dtype), device, index_width(problem)), problem


def other_algorithm(row, dtype, data_format):
    """What a non-conv row runs: the depthwise plan's kernel kind (tile / direct), or the op."""
    if row.op == "depthwise":
        from ..cuda import depthwise

        channels_last = data_format == "channels_last"
        plan = depthwise.plan_depthwise(row.input_shape(data_format), row.kernel_size + (row.C, row.dm),
                                        np.dtype(dtype), row.strides, row.padding, row.dilation, channels_last,
                                        row.output_shape(data_format))
        return f"depthwise_{plan.kernel}"
    return row.op


def algorithm_name(row, dtype, data_format, device):
    """The name the bench prints in its "algo" column: the table's choice for conv-family rows."""
    if row.op in CONV_OPS:
        try:
            return choose(row, dtype, data_format, device)[0].name
        except ValueError:
            return "forced:cannot-run"
    try:
        return other_algorithm(row, dtype, data_format)
    except Exception:  # the column is informative; the row's own run reports a real problem
        return row.op


@dataclasses.dataclass(frozen=True)
class KernelShape:
    """One instantiation's launch shape: the CTA tile, its pipeline, the math it runs on."""

    file: str
    name: str
    threads: int
    bm: int
    bn: int
    bk: int
    stages: int
    mma: bool
    tm: int = 0   # FFMA: the thread's register tile
    tn: int = 0
    rows_fast: bool = False  # FFMA: consecutive threads on consecutive row groups (channels_first)
    split: object = None     # implicit_gemm: its conv_implicit_gemm.SplitPlan (slices 1: one pass)
    warps_m: int = 2         # mma: the warp layout, each warp a (bm / warps_m) x (bn / warps_n) block
    warps_n: int = 2

    @property
    def slices(self):
        return 1 if self.split is None else self.split.slices


FFMA_TILES = {0: (64, 64, 16, 4, 4), 1: (256, 16, 16, 8, 2)}  # tile_fma.cuh TileOf: BM, BN, BK, TM, TN


def kernel_shape(algo, problem, width, sm_count):
    from ..cuda import algorithms, conv, conv_implicit_gemm as ig, conv_transpose, tile_engine

    if algo.tile in ig.TILES:
        config = ig.TILES[algo.tile]
        split = ig.split_plan(problem, sm_count) if algo.tile == algorithms.TILE_MMA else None
        vec = ig.vector_flags(problem)
        name = ig.partial_name(problem.dtype, *vec) if split and split.slices > 1 else \
            ig.name_expression(problem.dtype, *vec, algo.tile)
        return KernelShape(ig.KERNEL_FILE, name, config.threads, config.pixels, config.filters, ig.K_TILE, ig.STAGES,
                           True, split=split, warps_m=config.warps_m, warps_n=config.warps_n)
    module = conv_transpose if problem.transposed else conv
    bm, bn, bk, tm, tn = FFMA_TILES[algo.tile]
    return KernelShape(module.KERNEL_FILE, module.name_expression(problem.dtype, problem.channels_last, width, algo.tile),
                       tile_engine.THREADS, bm, bn, bk, 2, False, tm, tn, not problem.channels_last)


def grid_ctas(shape, problem):
    from ..cuda import conv_transpose, tile_engine

    filter_tiles = tile_engine.channel_tiles(problem, shape.bn)
    if problem.transposed:
        return -(-conv_transpose.phase_grid_pixels(problem) // shape.bm) * filter_tiles * math.prod(problem.strides)
    return -(-problem.output_pixels // shape.bm) * filter_tiles * shape.slices


def k_steps(shape, problem):
    cg = problem.channels_per_group
    if shape.split is not None:  # the flat reduction k = tap * Cg + c in tiles of BK; a CTA's slice of it
        return shape.split.k_tiles_per_slice
    if shape.mma:
        return -(-math.prod(problem.kernel_size) * cg // shape.bk)
    taps = math.prod(problem.kernel_size)
    if problem.transposed:  # taps of one stride phase (see the module docstring)
        taps = math.prod(-(-k // s) for k, s in zip(problem.kernel_size, problem.strides))
    return taps * -(-cg // shape.bk)


def _ffma_wavefronts(shape):
    """128-byte wavefronts one warp's fragment loads take per k of the FFMA tile: each lds of a
    vector of ``v`` floats serves the warp's distinct addresses, 128 bytes a wavefront."""
    cols = shape.bn // shape.tn
    rows = shape.bm // shape.tm
    lanes = np.arange(WARP)
    tm, tn = (lanes % rows, lanes // rows) if shape.rows_fast else (lanes // cols, lanes % cols)
    total = 0
    for distinct, n in ((len(set(tm.tolist())), shape.tm), (len(set(tn.tolist())), shape.tn)):
        vec = 4 if n % 4 == 0 else (2 if n % 2 == 0 else 1)
        per_load = -(-distinct * vec * 4 // WAVEFRONT)
        total += per_load * (n // vec)
    return total


def smem_bytes_per_tile(shape, steps, itemsize):
    if shape.mma:
        warps = shape.threads // WARP
        reads = warps * ((shape.bm // shape.warps_m) * shape.bk + shape.bk * (shape.bn // shape.warps_n)) * itemsize
        fills = (shape.bm * shape.bk + shape.bk * shape.bn) * itemsize
        epilogue = 2 * shape.bm * shape.bn * itemsize if shape.slices == 1 else 0  # a partial: from registers
        return (reads + fills) * steps + epilogue
    warps = shape.threads // WARP
    reads = warps * _ffma_wavefronts(shape) * WAVEFRONT * shape.bk
    fills = (shape.bm * shape.bk + shape.bk * shape.bn) * 4  # stashed as float32
    return (reads + fills) * steps


def global_bytes_per_tile(shape, steps, itemsize):
    stored = shape.bm * shape.bn * (WORKSPACE_ITEMSIZE if shape.slices > 1 else itemsize)
    return (shape.bm * shape.bk + shape.bk * shape.bn) * itemsize * steps + stored


def sum_pass_bytes(shape, problem):
    """Split-K pass 2's HBM traffic: every slice's f32 partial read, the output written (0 unsplit)."""
    if shape.slices == 1:
        return 0
    return shape.split.workspace_bytes(problem) + problem.output_pixels * problem.out_channels * problem.dtype.itemsize


# ---------------------------------------------------------------------------------------------
# One row's estimate
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PlanRow:
    row: object
    algorithm: str
    roofline_s: float
    roofline_bound: str
    shape: KernelShape = None
    registers: int = None
    smem: int = None
    ctas: int = None
    occupancy: Occupancy = None
    waves: int = None
    k_steps: int = None
    global_bytes: int = None   # per CTA
    smem_bytes: int = None     # per CTA
    compute_s: float = None
    global_s: float = None
    smem_s: float = None
    workspace_bytes: int = 0   # split-K
    sum_s: float = 0.0         # split-K pass 2
    relayout_s: float = 0.0    # channels_first on a channels_last kernel: the two layout copies
    note: str = ""
    launches: list = dataclasses.field(default_factory=list)  # [(KernelShape, problem)]: launch_shapes
    launch_bound_s: float = None  # the launches' bounds summed (each max(...) + its pass 2)

    @property
    def bound_s(self):
        return None if self.launch_bound_s is None else self.launch_bound_s + self.relayout_s  # no audit: no bound

    @property
    def limited_by(self):
        if self.bound_s is None:
            return "-"
        return max((("compute", self.compute_s), ("global", self.global_s), ("smem", self.smem_s)),
                   key=lambda kv: kv[1])[0]


def target_ceilings(target):
    return _ceilings.datasheet(TARGET_DEVICE_NAMES[target])


def plan_rows(rows, dtype="float16", data_format="channels_last", target=DEFAULT_TARGET, audits=None, jobs=None):
    """A :class:`PlanRow` per row on ``target``. ``audits`` maps ``(file, name)`` to an
    :class:`Audit` (tests inject them); by default the NVRTC audit runs for each instantiation
    the rows need (cached per process)."""
    from ..cuda import dry_run

    device = target_device(target)
    cc, limits = dry_run.TARGETS[target]
    sheet = target_ceilings(target)
    dtype = np.dtype(dtype)
    picks = []
    for row in rows:
        roof, roof_bound = cost.roofline_seconds(cost.flops(row), cost.bytes_moved(row, dtype), sheet.for_dtype(dtype))
        pr = PlanRow(row, "", roof, roof_bound)
        if row.op not in CONV_OPS:
            pr.algorithm = algorithm_name(row, dtype, data_format, device)
            picks.append((pr, None))
            continue
        try:
            algo, problem = choose(row, dtype, data_format, device)
        except ValueError as e:
            pr.algorithm, pr.note = "forced:cannot-run", str(e)
            picks.append((pr, None))
            continue
        pr.algorithm = algo.name
        pr.launches = launch_shapes(algo, problem, index_width(problem), limits.sm_count, device)
        pr.shape = pr.launches[0][0]
        picks.append((pr, problem))
    needed = [(shape.file, shape.name) for pr, problem in picks if problem is not None for shape, _ in pr.launches]
    if audits is None:
        audits = audit_all(needed, cc, jobs)
    sm_limits = SM_LIMITS[cc]
    for pr, problem in picks:
        if problem is not None:
            _estimate(pr, problem, audits, sheet, limits.sm_count, sm_limits, CLOCK_HZ[target])
    return [pr for pr, _ in picks]


def launch_shapes(algo, problem, width, sm_count, device):
    """``[(KernelShape, the problem it runs)]`` of a row: its one launch, or, for a transposed
    convolution on the tensor-core kernels, one launch per stride phase (in turn on the stream;
    each phase a convolution with the tile of its own geometry, ``algorithms.implicit_gemm_tile``)."""
    from ..cuda import algorithms, conv_implicit_gemm as ig, conv_transpose_implicit_gemm as ct

    phases = ct.phases(problem) if problem.transposed and algo.tile in ig.TILES else ()
    if phases:
        return [(kernel_shape(dataclasses.replace(algo, tile=algorithms.implicit_gemm_tile(
            phase.problem, problem.dtype, device, width)), phase.problem, width, sm_count), phase.problem)
            for phase in phases]
    return [(kernel_shape(algo, problem, width, sm_count), problem)]


def _add_note(pr, text):
    pr.note = f"{pr.note}; {text}" if pr.note else text


def relayout_bytes(problem):
    """HBM bytes of the two layout copies ``cuda/conv.py`` puts around the channels_last tensor-core
    kernel for a channels_first problem: x and y each read once and written once."""
    elements = math.prod(problem.input_shape) + math.prod(problem.output_shape)
    return 2 * elements * problem.dtype.itemsize


@dataclasses.dataclass
class LaunchEstimate:
    """The model's terms for one launch of a row (a row has one, or one per stride phase)."""

    ctas: int
    k_steps: int
    global_bytes: int          # per CTA
    smem_bytes: int            # per CTA
    global_s: float
    workspace_bytes: int = 0
    sum_s: float = 0.0
    audit: object = None       # Audit, or why there is none
    occupancy: Occupancy = None
    waves: int = None
    compute_s: float = None
    smem_s: float = None

    @property
    def bound_s(self):
        parts = (self.compute_s, self.global_s, self.smem_s)
        return None if None in parts else max(parts) + self.sum_s


def estimate_launch(shape, problem, found, sheet, sms, sm_limits, clock):
    """:class:`LaunchEstimate` of ``shape`` running ``problem`` (``found``: its Audit or the error)."""
    itemsize = problem.dtype.itemsize
    ctas, steps = grid_ctas(shape, problem), k_steps(shape, problem)
    est = LaunchEstimate(ctas, steps, global_bytes_per_tile(shape, steps, itemsize),
                         smem_bytes_per_tile(shape, steps, itemsize), 0.0, audit=found)
    est.global_s = ctas * est.global_bytes / sheet.bandwidth
    if shape.split is not None:
        est.workspace_bytes = shape.split.workspace_bytes(problem)
        est.sum_s = sum_pass_bytes(shape, problem) / sheet.bandwidth
    if not isinstance(found, Audit):
        return est
    est.occupancy = occupancy(found.registers, shape.threads, found.smem, sm_limits)
    est.waves = waves(ctas, sms, est.occupancy.ctas)
    per_sm_tiles = est.waves * est.occupancy.ctas
    peak = sheet.fp16_tensor if shape.mma else sheet.fp32
    est.compute_s = per_sm_tiles * 2 * shape.bm * shape.bn * shape.bk * steps / (peak / sms)
    est.smem_s = per_sm_tiles * est.smem_bytes / (SMEM_BYTES_PER_CLOCK * clock)
    return est


def _estimate(pr, problem, audits, sheet, sms, sm_limits, clock):
    """The row's terms from its launches': one launch as it is; a transposed convolution's
    phases (in turn) summed, the per-CTA columns phase 1's."""
    ests = [estimate_launch(shape, sub, audits.get((shape.file, shape.name)), sheet, sms, sm_limits, clock)
            for shape, sub in pr.launches]
    first = ests[0]
    pr.ctas = sum(e.ctas for e in ests)
    pr.k_steps, pr.global_bytes, pr.smem_bytes = first.k_steps, first.global_bytes, first.smem_bytes
    pr.global_s = sum(e.global_s for e in ests)
    pr.workspace_bytes = max(e.workspace_bytes for e in ests)  # the phases run in turn: one workspace at a time
    pr.sum_s = sum(e.sum_s for e in ests)
    if len(ests) > 1:
        splits = sorted({shape.slices for shape, _ in pr.launches})
        _add_note(pr, f"{len(ests)} stride phases on the tensor-core kernels, launched in turn: bound = the sum of "
                      f"the phases' (split {'/'.join(map(str, splits))}); tile, k, per-CTA bytes: phase 1's")
    if pr.shape.mma and not problem.channels_last:
        pr.relayout_s = relayout_bytes(problem) / sheet.bandwidth
        _add_note(pr, f"channels_first: x and y re-laid around the kernel, {_us(pr.relayout_s)} us added")
    missing = next((e for e in ests if not isinstance(e.audit, Audit)), None)
    if missing is not None:
        _add_note(pr, f"no NVRTC audit ({missing.audit}): occupancy and the per-SM terms are unknown")
        return
    pr.registers, pr.smem = first.audit.registers, first.audit.smem
    pr.occupancy, pr.waves = first.occupancy, sum(e.waves for e in ests)
    pr.compute_s = sum(e.compute_s for e in ests)
    pr.smem_s = sum(e.smem_s for e in ests)
    pr.launch_bound_s = sum(e.bound_s for e in ests)
    spill = max(e.audit.spill for e in ests)
    if spill:
        _add_note(pr, f"{spill} B of spills in the audit (not modelled)")


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
PLAN_COLUMNS = (
    ("id", "<"), ("op", "<"), ("shape", "<"), ("algo", "<"), ("tile", "<"), ("st", ">"), ("split", ">"),
    ("ws", ">"), ("regs", ">"), ("smem", ">"), ("CTAs", ">"), ("CTA/SM", ">"), ("waves", ">"), ("k", ">"),
    ("glob/CTA", ">"), ("smem/CTA", ">"), ("compute", ">"), ("global", ">"), ("shared", ">"), ("pass2", ">"),
    ("bound", ">"), ("by", "<"), ("roofline", ">"), ("bound/roof", ">"),
)


def _bytes(n):
    if n is None:
        return "-"
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def _us(seconds):
    return "-" if seconds is None else f"{seconds * 1e6:.3g}"


def _plan_cells(pr):
    s, occ = pr.shape, pr.occupancy
    dash = "-"
    return (
        pr.row.id, pr.row.op_text(), pr.row.shape_text(), pr.algorithm,
        f"{s.bm}x{s.bn}x{s.bk}" if s else dash, str(s.stages) if s else dash,
        str(s.slices) if s and s.split is not None else dash, _bytes(pr.workspace_bytes) if s and s.slices > 1 else dash,
        dash if pr.registers is None else str(pr.registers), _bytes(pr.smem),
        dash if pr.ctas is None else str(pr.ctas),
        dash if occ is None else f"{occ.ctas} ({occ.limiter[:4]})",
        dash if pr.waves is None else str(pr.waves), dash if pr.k_steps is None else str(pr.k_steps),
        _bytes(pr.global_bytes), _bytes(pr.smem_bytes), _us(pr.compute_s), _us(pr.global_s), _us(pr.smem_s),
        _us(pr.sum_s) if s and s.slices > 1 else dash, _us(pr.bound_s), pr.limited_by, _us(pr.roofline_s),
        dash if pr.bound_s is None else f"{pr.bound_s / pr.roofline_s:.2f}x",
    )


def render_plan(plan, dtype, data_format, target):
    from ..cuda import dry_run

    cc, limits = dry_run.TARGETS[target]
    sheet = target_ceilings(target)
    head = [
        f"gpuconv-bench plan: {len(plan)} rows, {np.dtype(dtype).name}, {data_format}, target {target} "
        f"(sm_{cc}, {limits.sm_count} SMs; nothing launched)",
        f"ceilings [{sheet.source}]: fp16 tensor {sheet.fp16_tensor / 1e12:.4g} TFLOP/s, fp32 FMA "
        f"{sheet.fp32 / 1e12:.4g} TFLOP/s, HBM {sheet.bandwidth / 1e12:.3g} TB/s, shared memory "
        f"{SMEM_BYTES_PER_CLOCK} B/clk/SM at {CLOCK_HZ[target] / 1e9:.3g} GHz",
        "times in us; bound = max(compute, global, shared) + pass2 (split-K's sum of split slices) "
        "+ the channels_first layout copies (notes), per CTA tile "
        "(model: gpuconv/benchmarking/plan.py)",
        "",
    ]
    lines = [tuple(n for n, _ in PLAN_COLUMNS)] + [_plan_cells(pr) for pr in plan]
    widths = [max(len(line[i]) for line in lines) for i in range(len(PLAN_COLUMNS))]
    body = []
    for n, line in enumerate(lines):
        body.append("  ".join(format(c, f"{a}{w}") for c, (_, a), w in zip(line, PLAN_COLUMNS, widths)).rstrip())
        if n == 0:
            body.append("  ".join("-" * w for w in widths))
    notes = [f"{pr.row.id}: {pr.note}" for pr in plan if pr.note]
    return "\n".join(head + body + ([""] + notes if notes else []))

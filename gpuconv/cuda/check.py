"""Compile every registered kernel instantiation through NVRTC, without a GPU, and audit ptxas.

    python -m gpuconv.cuda.check [--arch 80 90] [--only FILE_OR_FAMILY ...] [--jobs N]

Imports the kernel modules (each registers its instantiations with gpuconv.cuda.registry),
compiles each kernel file once per architecture with exactly ``options.compile_options(arch)`` plus
``--ptxas-options=-v`` through ``nvrtc.nvrtc_compile``, the runtime's own NVRTC run
(``cupy.cuda.nvrtc``: createProgram / addNameExpression / compileProgram / getLoweredName /
getCUBIN) — CuPy's RawModule would ask a device for its architecture, and there is none in
CI — then parses the ptxas report and prints one row per function: kernel, arch, registers,
shared memory, spill bytes, stack. Exit status 1 on any compile error, any spill, any registered
instantiation missing from the report, or a kernel module that exists but fails to import. A
kernel module that does not exist yet is listed, not failed: the runtime cannot request what no
module registers.

A full run compiles for minutes, so each finished (kernel file, arch) task is reported on stderr
as it finishes (a line each, or a bar when stderr is a terminal), then a summary line.
``--only`` takes kernel files (``depthwise.cu``) or families: a family is the start of a file's
stem up to an underscore (``depthwise`` = depthwise.cu and depthwise_backward_weights.cu).

The compiles run on a thread pool: CuPy's binding releases the GIL for ``nvrtcCompileProgram``
(measured: a Python thread ticking every 0.5 ms never waited more than 5 ms during a 3.2 s
compile, and two threads compiling at once each used a core), so threads overlap as processes
would, without starting interpreters.
"""
import argparse
import concurrent.futures
import dataclasses
import importlib
import os
import re
import shutil
import sys
import time

from . import nvrtc, options, registry

KERNEL_MODULES = (
    "gpuconv.cuda.conv",
    "gpuconv.cuda.conv_transpose",
    "gpuconv.cuda.depthwise",
    "gpuconv.cuda.separable",
    "gpuconv.cuda.pooling",
    "gpuconv.cuda.upsampling",
    "gpuconv.cuda.locally_connected",
    "gpuconv.cuda.pooling_backward",
    "gpuconv.cuda.upsampling_backward",
    "gpuconv.cuda.locally_connected_backward",
    "gpuconv.cuda.conv_backward",
    "gpuconv.cuda.depthwise_backward",
    "gpuconv.cuda.optimizer_updates",
)
DEFAULT_ARCHS = (80, 90)
PTXAS_VERBOSE = "--ptxas-options=-v"
KERNEL_SUFFIX = ".cu"


@dataclasses.dataclass
class Row:
    file: str
    kernel: str      # name expression for entries, mangled name for device functions
    arch: str
    registers: int = 0
    smem: int = 0
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    entry: bool = True

    @property
    def spill(self):
        return self.spill_stores + self.spill_loads


@dataclasses.dataclass
class TaskResult:
    """One NVRTC run: a kernel file for one architecture."""
    filename: str
    arch: int
    kernels: int          # registered instantiations compiled
    seconds: float        # the compile itself, in its thread
    rows: list = dataclasses.field(default_factory=list)
    errors: list = dataclasses.field(default_factory=list)  # strings

    @property
    def entries(self):
        return [r for r in self.rows if r.entry]

    @property
    def max_registers(self):
        return max((r.registers for r in self.entries), default=0)

    @property
    def spills(self):
        return sum(1 for r in self.rows if r.spill)


@dataclasses.dataclass
class CheckResult:
    rows: list
    errors: list          # strings
    absent_modules: list  # module names that do not exist (yet)
    seconds: float = 0.0
    tasks: list = dataclasses.field(default_factory=list)  # TaskResult, in finishing order
    jobs: int = 1

    @property
    def ok(self):
        return not self.errors and not any(r.spill for r in self.rows)


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(log, filename, arch, lowered):
    """Rows from a ``ptxas -v`` report. ``lowered`` maps name expression -> mangled name."""
    names = {mangled: expr for expr, mangled in lowered.items()}
    rows, by_name, current = [], {}, None
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = by_name.setdefault(m.group(1), Row(filename, names.get(m.group(1), m.group(1)), m.group(2)))
            if current not in rows:
                rows.append(current)
            continue
        m = _PROPS.search(line)
        if m:
            mangled = m.group(1)
            if mangled not in by_name:
                by_name[mangled] = Row(filename, names.get(mangled, mangled), f"sm_{arch}", entry=mangled in names)
                rows.append(by_name[mangled])
            current = by_name[mangled]
            continue
        if current is None:
            continue
        m = _FRAME.search(line)
        if m:
            current.stack, current.spill_stores, current.spill_loads = (int(v) for v in m.groups())
        m = _USED.search(line)
        if m:
            current.registers = int(m.group(1))
            s = _SMEM.search(line)
            current.smem = int(s.group(1)) if s else 0
    return rows


def import_kernel_modules(modules=KERNEL_MODULES):
    """(absent, errors): import each module so it registers its instantiations."""
    absent, errors = [], []
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:
                absent.append(mod)
            else:
                errors.append(f"{mod}: import failed: {type(e).__name__}: {e}")
        except Exception as e:
            errors.append(f"{mod}: import failed: {type(e).__name__}: {e}")
    return absent, errors


# ---------------------------------------------------------------------------------------------
# Which files: --only
# ---------------------------------------------------------------------------------------------
def _stem(filename):
    return filename[:-len(KERNEL_SUFFIX)] if filename.endswith(KERNEL_SUFFIX) else filename


def _in_family(filename, family):
    stem = _stem(filename)
    return stem == family or stem.startswith(family + "_")


def families(filenames):
    """The family names that select several of ``filenames``: the starts of their stems up to an
    underscore (``conv`` = conv_direct.cu, conv_transpose.cu, conv_backward_weights.cu). A stem
    alone is a family too, of its own file (and of ``<stem>_*`` ones)."""
    starts = set()
    for f in filenames:
        words = _stem(f).split("_")
        starts.update("_".join(words[:i]) for i in range(1, len(words) + 1))
    return sorted(s for s in starts if sum(_in_family(f, s) for f in filenames) > 1)


def select_files(values, filenames):
    """The kernel files ``--only`` names, in ``filenames``' order. A value is a kernel file
    (``pooling.cu``) or a family: a stem's start up to an underscore (``pooling`` = pooling.cu
    and pooling_backward.cu; ``pool`` names nothing). ValueError for a value naming no file."""
    filenames = sorted(filenames)
    chosen, unknown = set(), []
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"Expected kernel file or family names (str) in `only`; received {value!r}")
        if value in filenames:
            chosen.add(value)
            continue
        matches = [] if value.endswith(KERNEL_SUFFIX) else [f for f in filenames if _in_family(f, value)]
        if not matches:
            unknown.append(value)
        chosen.update(matches)
    if unknown:
        raise ValueError(
            f"Invalid value for argument `only`: {', '.join(repr(v) for v in unknown)} "
            f"{'names' if len(unknown) == 1 else 'name'} no registered kernel file or family. A value is a kernel "
            f"file ({', '.join(filenames)}) or a family: a file's stem or its start up to an underscore, "
            f"selecting every file it begins ({', '.join(families(filenames))} select several)."
        )
    return [f for f in filenames if f in chosen]


# ---------------------------------------------------------------------------------------------
# One task, and running them all
# ---------------------------------------------------------------------------------------------
def compile_task(filename, names, arch):
    """One file for one arch, compiled and audited; a compile failure comes back as an error
    line of the result (the run goes on with the other tasks)."""
    start = time.perf_counter()
    try:
        compiled = nvrtc.nvrtc_compile(filename, names, options.compile_options(arch) + (PTXAS_VERBOSE,))
    except Exception as e:  # KernelCompileError carries the log in its message
        return TaskResult(filename, arch, len(names), time.perf_counter() - start,
                          errors=[f"{filename} sm_{arch}: {e}"])
    rows = parse_ptxas(compiled.log, filename, arch, compiled.lowered)
    reported = {r.kernel for r in rows if r.entry}
    missing = [f"{filename} sm_{arch}: {n} missing from the ptxas report" for n in names if n not in reported]
    return TaskResult(filename, arch, len(names), time.perf_counter() - start, rows, missing)


def default_jobs():
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _results(tasks, jobs):
    """TaskResults as they finish, compiled on ``jobs`` threads."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(compile_task, *t) for t in tasks]
        for fut in concurrent.futures.as_completed(futures):
            yield fut.result()


def run_check(files=None, archs=DEFAULT_ARCHS, jobs=None, modules=KERNEL_MODULES, progress=None):
    """Compile ``files`` (kernel files or families, see :func:`select_files`; None: all registered)
    for each of ``archs`` on ``jobs`` threads (None: the CPUs available); ``progress(done, total,
    task_result)`` is called as each (file, arch) task finishes, and ``progress.start(tasks,
    jobs)``, where it has one, before the first (``tasks``: (file, names, arch) in start order)."""
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"Invalid value for argument `jobs`: expected a positive integer. Received: jobs={jobs!r}")
    start = time.perf_counter()
    absent, errors = import_kernel_modules(modules)
    reg = registry.registry()
    if files:
        reg = {f: reg[f] for f in select_files(files, reg)}
    # Largest files first: the longest compiles start at once and the short ones fill in after.
    tasks = sorted(((f, names, arch) for f, names in reg.items() for arch in archs),
                   key=lambda t: (-len(t[1]), t[0], t[2]))
    jobs = max(1, min(len(tasks), jobs or default_jobs()))
    if hasattr(progress, "start"):
        progress.start(tasks, jobs)
    rows, done = [], []
    for result in _results(tasks, jobs):
        done.append(result)
        rows += result.rows
        errors += result.errors
        if progress is not None:
            progress(len(done), len(tasks), result)
    rows.sort(key=lambda r: (r.file, r.kernel, r.arch))
    return CheckResult(rows, errors, absent, time.perf_counter() - start, done, jobs)


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------
def task_line(done, total, result):
    """``[3/26] depthwise.cu sm_90: 88 kernels, 41.2 s, max 64 regs, 0 spills``."""
    head = f"[{done}/{total}] {result.filename} sm_{result.arch}: "
    if result.errors and not result.rows:
        return head + f"FAILED after {result.seconds:.1f} s ({len(result.errors)} error(s))"
    text = (f"{result.kernels} kernels, {result.seconds:.1f} s, max {result.max_registers} regs, "
            f"{result.spills} spills")
    return head + text + (f", {len(result.errors)} error(s)" if result.errors else "")


class Progress:
    """``progress`` for :func:`run_check` writing to ``stream``: a line per task, or one bar
    redrawn in place when ``bar`` (default: when the stream is a terminal)."""

    BAR_WIDTH = 30

    def __init__(self, stream=None, bar=None):
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.bar = bool(isatty and isatty()) if bar is None else bool(bar)

    def start(self, tasks, jobs):
        # The largest files go first and take minutes on a small machine: say what is under way.
        files = len({t[0] for t in tasks})
        archs = ", ".join(f"sm_{a}" for a in sorted({t[2] for t in tasks}))
        self._write(f"[0/{len(tasks)}] compiling {files} kernel file(s) for {archs or 'no arch'} on {jobs} "
                    "thread(s), the largest first; a line as each finishes", 0, len(tasks))

    def __call__(self, done, total, result):
        self._write(task_line(done, total, result), done, total)

    def _write(self, text, done, total):
        if self.bar:
            filled = self.BAR_WIDTH * done // total if total else self.BAR_WIDTH
            bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
            text = f"[{bar}] {text}"
            # One screen line, or the carriage return could not redraw it in place.
            width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r\x1b[K" + text[:width])
            if done == total:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def summary_line(result):
    """One line: tasks, wall time, summed compile time over the threads, failures, spills."""
    compile_s = sum(t.seconds for t in result.tasks)
    failed = sum(1 for t in result.tasks if t.errors)
    spills = sum(t.spills for t in result.tasks)
    return (f"check: {len(result.tasks)} compile(s) in {result.seconds:.1f} s wall on {result.jobs} thread(s) "
            f"(the compiles' own times add up to {compile_s:.1f} s); {failed} failed, {spills} spilling "
            f"function(s), {len(result.errors)} error(s): {'OK' if result.ok else 'FAILED'}")


def format_table(rows):
    header = ("kernel", "arch", "regs", "smem", "spill", "stack")
    body = [(r.kernel if r.entry else f"[device fn] {r.kernel}", r.arch, str(r.registers), str(r.smem),
             str(r.spill), str(r.stack)) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def report(result):
    out = [format_table(result.rows)]
    entries = [r for r in result.rows if r.entry]
    out.append(f"\n{len(entries)} kernel instantiation(s) x arch compiled in {result.seconds:.1f} s; "
               f"max registers {max((r.registers for r in entries), default=0)}, "
               f"max smem {max((r.smem for r in entries), default=0)} B")
    for mod in result.absent_modules:
        out.append(f"note: kernel module {mod} does not exist (yet); nothing of it was compiled")
    for r in result.rows:
        if r.spill:
            out.append(f"SPILL: {r.kernel} {r.arch}: {r.spill_stores} B stores, {r.spill_loads} B loads")
    for e in result.errors:
        out.append(f"ERROR: {e}")
    out.append("OK" if result.ok else "FAILED")
    return "\n".join(out)


def _positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return int(text)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m gpuconv.cuda.check", description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", type=int, default=list(DEFAULT_ARCHS), help="SM versions (default 80 90)")
    ap.add_argument("--only", nargs="+", default=None, metavar="FILE_OR_FAMILY",
                    help="kernel files (pooling.cu) or families (pooling = pooling.cu, pooling_backward.cu) "
                         "to compile (default: all registered)")
    ap.add_argument("--jobs", type=_positive_int, default=None,
                    help="parallel NVRTC runs (default: the CPUs available)")
    ap.add_argument("--progress", choices=("auto", "lines", "bar", "off"), default="auto",
                    help="progress on stderr: a bar on a terminal, else a line per task (default auto)")
    args = ap.parse_args(argv)
    if args.only:
        import_kernel_modules()  # so that an unknown name is refused before any compile starts
        try:
            select_files(args.only, registry.registry())
        except ValueError as e:
            ap.error(str(e))
    bar = {"auto": None, "lines": False, "bar": True}.get(args.progress)
    progress = None if args.progress == "off" else Progress(bar=bar)
    result = run_check(files=args.only, archs=tuple(args.arch), jobs=args.jobs, progress=progress)
    print(report(result))
    if progress is not None:
        progress.stream.write(summary_line(result) + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

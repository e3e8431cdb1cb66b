"""Compile every registered kernel instantiation through NVRTC, without a GPU, and audit ptxas.

    python -m gpuconv.cuda.check [--arch 80 90] [--only conv_direct.cu ...] [--jobs N]

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
"""
import argparse
import concurrent.futures
import dataclasses
import importlib
import os
import re
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
class CheckResult:
    rows: list
    errors: list          # strings
    absent_modules: list  # module names that do not exist (yet)
    seconds: float = 0.0

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


def _compile_one(filename, names, arch):
    compiled = nvrtc.nvrtc_compile(filename, names, options.compile_options(arch) + (PTXAS_VERBOSE,))
    rows = parse_ptxas(compiled.log, filename, arch, compiled.lowered)
    reported = {r.kernel for r in rows if r.entry}
    missing = [n for n in names if n not in reported]
    return rows, missing


def run_check(files=None, archs=DEFAULT_ARCHS, jobs=None, modules=KERNEL_MODULES):
    start = time.perf_counter()
    absent, errors = import_kernel_modules(modules)
    reg = registry.registry()
    if files:
        unknown = [f for f in files if f not in reg]
        errors += [f"{f}: no instantiations registered" for f in unknown]
        reg = {f: reg[f] for f in files if f in reg}
    tasks = [(f, names, arch) for f, names in sorted(reg.items()) for arch in archs]
    rows = []
    jobs = jobs or max(1, min(len(tasks), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_compile_one, *t): t for t in tasks}
        for fut in concurrent.futures.as_completed(futures):
            filename, _, arch = futures[fut]
            try:
                got, missing = fut.result()
            except Exception as e:  # KernelCompileError carries the log in its message
                errors.append(f"{filename} sm_{arch}: {e}")
                continue
            rows += got
            errors += [f"{filename} sm_{arch}: {n} missing from the ptxas report" for n in missing]
    rows.sort(key=lambda r: (r.file, r.kernel, r.arch))
    return CheckResult(rows, errors, absent, time.perf_counter() - start)


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


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m gpuconv.cuda.check", description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", type=int, default=list(DEFAULT_ARCHS), help="SM versions (default 80 90)")
    ap.add_argument("--only", nargs="+", default=None, help="kernel files to compile (default: all registered)")
    ap.add_argument("--jobs", type=int, default=None, help="parallel NVRTC runs (default: CPU count)")
    args = ap.parse_args(argv)
    result = run_check(files=args.only, archs=tuple(args.arch), jobs=args.jobs)
    print(report(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

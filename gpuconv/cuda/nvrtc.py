"""One NVRTC run, the same for the runtime and for the CI audit.

Both ``module_cache`` (what a GPU loads) and ``python -m gpuconv.cuda.check`` (what CI proves,
without a GPU) compile through :func:`nvrtc_compile`, so the two cannot compile different things.
NVRTC is driven directly through ``cupy.cuda.nvrtc`` rather than ``cupy.RawModule(code=...)``,
which would add its own options and ask a device for its architecture. One call compiles the
name expressions it is given: the runtime gives one (``module_cache``: a first call compiles only
its kernel), the audit a whole file (one report per file and architecture).
"""
import dataclasses
import struct

from ..errors import KernelCompileError
from . import options, sources


@dataclasses.dataclass(frozen=True)
class Compiled:
    filename: str
    options: tuple
    cubin: bytes  # PTX text (encoded) when the options ask for a compute_XX target
    lowered: dict  # name expression -> mangled name
    log: str


def version():
    """NVRTC's version (part of every disk-cache key: another NVRTC may compile differently)."""
    from cupy.cuda import nvrtc as cupy_nvrtc

    return cupy_nvrtc.getVersion()


def _compile_error(filename, name_expressions, compile_options, log, cause):
    names = ", ".join(name_expressions)
    return KernelCompileError(
        f"NVRTC failed to compile kernels/{filename} (instantiations: {names}) with options "
        f"{' '.join(compile_options)}: {cause}\n--- compiler log ---\n{log}",
        source_file=filename, name_expression=names, options=compile_options, log=log,
    )


def nvrtc_compile(filename, name_expressions, compile_options):
    """Compile ``kernels/<filename>`` with every name expression. Raises KernelCompileError."""
    from cupy.cuda import nvrtc as cupy_nvrtc

    source = sources.read_source(filename)
    headers = sources.read_headers()
    compile_options = tuple(compile_options)
    names = tuple(name_expressions)
    try:
        prog = cupy_nvrtc.createProgram(
            source, filename, [t.encode() for t in headers.values()], [n.encode() for n in headers]
        )
    except Exception as e:
        raise _compile_error(filename, names, compile_options, "", e) from e
    try:
        for ne in names:
            cupy_nvrtc.addNameExpression(prog, ne)
        try:
            cupy_nvrtc.compileProgram(prog, list(compile_options))
        except Exception as e:
            try:
                log = cupy_nvrtc.getProgramLog(prog)
            except Exception:
                log = ""
            raise _compile_error(filename, names, compile_options, log, e) from e
        log = cupy_nvrtc.getProgramLog(prog)
        lowered = {ne: cupy_nvrtc.getLoweredName(prog, ne) for ne in names}
        # PTX (text) for a device newer than NVRTC knows: the driver JIT-compiles it at load.
        if options.emits_ptx(compile_options):
            cubin = bytes(cupy_nvrtc.getPTX(prog))
        else:
            cubin = complete_cubin(cupy_nvrtc.getCUBIN(prog))
    finally:
        cupy_nvrtc.destroyProgram(prog)
    return Compiled(filename, compile_options, bytes(cubin), lowered, log)


def complete_cubin(cubin):
    """``cubin`` with the bytes CuPy's ``nvrtc.getCUBIN`` cut off put back.

    CuPy strips a trailing NUL from every NVRTC buffer, as for PTX text; a cubin is binary and has
    no terminator, so its last real byte is lost (it is a zero: the high byte of the last
    program/section header's alignment or entry size). In memory nobody notices (a Python bytes
    object ends in a NUL), but the file written to the disk cache is one byte short of its ELF
    headers: nvdisasm rejects it as an invalid ELF and the driver's cuModuleLoad may do the same.
    The extent the ELF64 headers describe (header tables and every section with file contents) is
    restored with zeros; a complete cubin (a CuPy that stops stripping) is returned unchanged.
    """
    data = bytes(cubin)
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2:  # not ELF64: leave it alone
        return data
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    end = max(phoff + phnum * phentsize, shoff + shnum * shentsize)
    data += b"\0" * max(0, end - len(data))
    sht_nobits = 8  # sections with no bytes in the file (.bss, .nv.shared.*)
    for i in range(shnum):
        entry = shoff + i * shentsize
        (sh_type,) = struct.unpack_from("<I", data, entry + 4)
        sh_offset, sh_size = struct.unpack_from("<QQ", data, entry + 24)
        if sh_type != sht_nobits:
            end = max(end, sh_offset + sh_size)
    return data + b"\0" * max(0, end - len(data))

// ptx.cuh: every inline-PTX instruction the kernels use, one small device function each.
//
// The GPU branch is the `asm`; under the cuda-emulator (GPUCONV_EMULATOR, set by its shim header
// gpuconv/emulator/shim/gcemu.h) the same function calls the emulation of that instruction
// (gpuconv/emulator/shim/gcemu_ptx.h), written from the PTX ISA's definition. Kernels call these
// functions and never write `asm` themselves, so both targets run one source.
#pragma once

namespace gc {
namespace ptx {

// cvt.f32.f16: binary16 bits -> float (exact).
__device__ __forceinline__ float cvt_f32_f16(unsigned short h) {
#ifdef GPUCONV_EMULATOR
    return gcemu::cvt_f32_f16(h);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}

// cvt.rn.f16.f32: float -> binary16 bits, round to nearest even (NumPy's rounding).
__device__ __forceinline__ unsigned short cvt_rn_f16_f32(float f) {
#ifdef GPUCONV_EMULATOR
    return gcemu::cvt_rn_f16_f32(f);
#else
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#endif
}

// rcp.approx.ftz: 1 / b within an ulp (float) or ~2**-22 (double); subnormals flushed to zero.
__device__ __forceinline__ float rcp_approx_ftz(float b) {
#ifdef GPUCONV_EMULATOR
    return gcemu::rcp_approx_ftz(b);
#else
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(b));
    return r;
#endif
}

__device__ __forceinline__ double rcp_approx_ftz(double b) {
#ifdef GPUCONV_EMULATOR
    return gcemu::rcp_approx_ftz(b);
#else
    double r;
    asm("rcp.approx.ftz.f64 %0, %1;" : "=d"(r) : "d"(b));
    return r;
#endif
}

// rsqrt.approx.ftz: 1 / sqrt(a), approximate; subnormals flushed to zero.
__device__ __forceinline__ float rsqrt_approx_ftz(float a) {
#ifdef GPUCONV_EMULATOR
    return gcemu::rsqrt_approx_ftz(a);
#else
    float y;
    asm("rsqrt.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(a));
    return y;
#endif
}

__device__ __forceinline__ double rsqrt_approx_ftz(double a) {
#ifdef GPUCONV_EMULATOR
    return gcemu::rsqrt_approx_ftz(a);
#else
    double y;
    asm("rsqrt.approx.ftz.f64 %0, %1;" : "=d"(y) : "d"(a));
    return y;
#endif
}

}  // namespace ptx
}  // namespace gc

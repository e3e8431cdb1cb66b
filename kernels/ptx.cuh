// ptx.cuh: every inline-PTX instruction the kernels use, one small device function each.
//
// The GPU branch is the `asm`; under the cuda-emulator (GPUCONV_EMULATOR, set by its shim header
// gpuconv/emulator/shim/gcemu.h) the same function calls the emulation of that instruction
// (gpuconv/emulator/shim/gcemu_ptx.h), written from the PTX ISA's definition. Kernels call these
// functions and never write `asm` themselves, so both targets run one source.
#pragma once

// Under the emulator a warp-wide or memory instruction reports errors (a misaligned ldmatrix
// row, a lane missing from an mma) at its caller's line: the wrappers take the call site as
// defaulted trailing arguments there, and nothing on the GPU.
#ifdef GPUCONV_EMULATOR
#define GC_PTX_SITE_PARAMS , const char* gc_file = __builtin_FILE(), int gc_line = __builtin_LINE()
#define GC_PTX_SITE gc_file, gc_line
#else
#define GC_PTX_SITE_PARAMS
#endif

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


// ------------------------------------------------------------------------------------------
// The tensor-core tier (sm_80+): conversions, mma.sync, ldmatrix, cp.async
// ------------------------------------------------------------------------------------------

// cvt.rn.bf16.f32: float -> bfloat16 bits, round to nearest even.
__device__ __forceinline__ unsigned short cvt_rn_bf16_f32(float f) {
#ifdef GPUCONV_EMULATOR
    return gcemu::cvt_rn_bf16_f32(f);
#else
    unsigned short h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#endif
}

// bfloat16 bits -> float (exact): the upper half of a binary32, a shift on both targets (no
// instruction needed; cvt.f32.bf16 exists only from sm_90).
__device__ __forceinline__ float cvt_f32_bf16(unsigned short h) {
#ifdef GPUCONV_EMULATOR
    return gcemu::cvt_f32_bf16(h);
#else
    return __uint_as_float(static_cast<unsigned>(h) << 16);
#endif
}

// cvt.rn.f16x2.f32 d, hi, lo: two floats -> packed binary16 (hi in the upper half, lo in the lower,
// so lo is the element at the lower address once stored).
__device__ __forceinline__ unsigned cvt_rn_f16x2_f32(float hi, float lo) {
#ifdef GPUCONV_EMULATOR
    return gcemu::cvt_rn_f16x2_f32(hi, lo);
#else
    unsigned d;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
    return d;
#endif
}

// cvt.rn.bf16x2.f32 d, hi, lo: the same for bfloat16.
__device__ __forceinline__ unsigned cvt_rn_bf16x2_f32(float hi, float lo) {
#ifdef GPUCONV_EMULATOR
    return gcemu::cvt_rn_bf16x2_f32(hi, lo);
#else
    unsigned d;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
    return d;
#endif
}

// cvt.rna.tf32.f32: float -> tf32 bits (a binary32 whose low 13 bits are zero), to nearest with
// ties away from zero: the operand format of mma m16n8k8 .tf32.
__device__ __forceinline__ unsigned cvt_rna_tf32_f32(float f) {
#ifdef GPUCONV_EMULATOR
    return gcemu::cvt_rna_tf32_f32(f);
#else
    unsigned d;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(d) : "f"(f));
    return d;
#endif
}

// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32: D (16x8, f32) = A (16x16 f16, row) * B (16x8
// f16, col) + C, one warp; fragments as the PTX ISA lays them out ("Matrix Fragments for
// mma.m16n8k16 with floating point type"): with g = lane / 4, t = lane % 4,
//   a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..], a[3] = A[g+8][2t+8..]
//   b[0] = B[2t..2t+1][g], b[1] = B[2t+8..2t+9][g]      (low half = lower index)
//   c[0..1] = C[g][2t..2t+1], c[2..3] = C[g+8][2t..2t+1]
__device__ __forceinline__ void mma_m16n8k16_f16_f32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                                     const float (&c)[4] GC_PTX_SITE_PARAMS) {
#ifdef GPUCONV_EMULATOR
    gcemu::mma_m16n8k16(d, a, b, c, 0, GC_PTX_SITE);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %11, %12, %13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

// The same with bfloat16 operands (mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32).
__device__ __forceinline__ void mma_m16n8k16_bf16_f32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                                      const float (&c)[4] GC_PTX_SITE_PARAMS) {
#ifdef GPUCONV_EMULATOR
    gcemu::mma_m16n8k16(d, a, b, c, 1, GC_PTX_SITE);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %11, %12, %13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32: D (16x8) = A (16x8 tf32) * B (8x8 tf32) + C:
//   a[0] = A[g][t], a[1] = A[g+8][t], a[2] = A[g][t+4], a[3] = A[g+8][t+4]
//   b[0] = B[t][g], b[1] = B[t+4][g];  C / D as for m16n8k16.
__device__ __forceinline__ void mma_m16n8k8_tf32_f32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                                                     const float (&c)[4] GC_PTX_SITE_PARAMS) {
#ifdef GPUCONV_EMULATOR
    gcemu::mma_m16n8k8_tf32(d, a, b, c, GC_PTX_SITE);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %11, %12, %13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

#ifndef GPUCONV_EMULATOR
// The 32-bit .shared address of a generic pointer into shared memory (the operand ldmatrix and
// cp.async take).
__device__ __forceinline__ unsigned shared_address(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
#endif

// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{.trans}.shared.b16: the warp loads 1, 2 or 4 8x8 matrices
// of 16-bit elements from shared memory. Lane 8m + r gives `row`, the address of row r of matrix
// m (16 bytes, 16-byte aligned; lanes past 8 * NUM give none). Lane L receives in d[m] row L / 4,
// columns 2 (L % 4) and 2 (L % 4) + 1 of matrix m (the lower column in the low half): the mma A
// and B fragments. With .trans, rows 2 (L % 4) and 2 (L % 4) + 1 of column L / 4.
__device__ __forceinline__ void ldmatrix_x1(unsigned (&d)[1], const void* row GC_PTX_SITE_PARAMS) {
#ifdef GPUCONV_EMULATOR
    gcemu::ldmatrix<1, false>(d, row, GC_PTX_SITE);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(d[0]) : "r"(shared_address(row)) : "memory");
#endif
}

__device__ __forceinline__ void ldmatrix_x2(unsigned (&d)[2], const void* row GC_PTX_SITE_PARAMS) {
#ifdef GPUCONV_EMULATOR
    gcemu::ldmatrix<2, false>(d, row, GC_PTX_SITE);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];"
                 : "=r"(d[0]), "=r"(d[1]) : "r"(shared_address(row)) : "memory");
#endif
}

__device__ __forceinline__ void ldmatrix_x4(unsigned (&d)[4], const void* row GC_PTX_SITE_PARAMS) {
#ifdef GPUCONV_EMULATOR
    gcemu::ldmatrix<4, false>(d, row, GC_PTX_SITE);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3]) : "r"(shared_address(row)) : "memory");
#endif
}

__device__ __forceinline__ void ldmatrix_x1_trans(unsigned (&d)[1], const void* row GC_PTX_SITE_PARAMS) {
#ifdef GPUCONV_EMULATOR
    gcemu::ldmatrix<1, true>(d, row, GC_PTX_SITE);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];" : "=r"(d[0]) : "r"(shared_address(row)) : "memory");
#endif
}

__device__ __forceinline__ void ldmatrix_x2_trans(unsigned (&d)[2], const void* row GC_PTX_SITE_PARAMS) {
#ifdef GPUCONV_EMULATOR
    gcemu::ldmatrix<2, true>(d, row, GC_PTX_SITE);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];"
                 : "=r"(d[0]), "=r"(d[1]) : "r"(shared_address(row)) : "memory");
#endif
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&d)[4], const void* row GC_PTX_SITE_PARAMS) {
#ifdef GPUCONV_EMULATOR
    gcemu::ldmatrix<4, true>(d, row, GC_PTX_SITE);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3]) : "r"(shared_address(row)) : "memory");
#endif
}

// cp.async.ca.shared.global [dst], [src], BYTES (4, 8 or 16): an asynchronous copy from global to
// shared memory, cached in L1 and L2. Both addresses aligned to BYTES. The data is in `dst` only
// after a cp_async_wait_group / cp_async_wait_all that covers its group (and, for other threads,
// a __syncthreads after that).
template <int BYTES>
__device__ __forceinline__ void cp_async_ca(void* dst, const void* src GC_PTX_SITE_PARAMS) {
    static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async.ca copies 4, 8 or 16 bytes");
#ifdef GPUCONV_EMULATOR
    gcemu::cp_async<BYTES>(dst, src, BYTES, false, GC_PTX_SITE);
#else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2;" ::"r"(shared_address(dst)), "l"(src), "n"(BYTES) : "memory");
#endif
}

// The src-size form: copies `src_bytes` (0..BYTES) bytes and zero-fills the rest of the BYTES;
// with src_bytes == 0 nothing is read (the tile edge of a GEMM).
template <int BYTES>
__device__ __forceinline__ void cp_async_ca_zfill(void* dst, const void* src, int src_bytes GC_PTX_SITE_PARAMS) {
    static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async.ca copies 4, 8 or 16 bytes");
#ifdef GPUCONV_EMULATOR
    gcemu::cp_async<BYTES>(dst, src, src_bytes, false, GC_PTX_SITE);
#else
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;" ::"r"(shared_address(dst)), "l"(src), "n"(BYTES),
                 "r"(src_bytes) : "memory");
#endif
}

// cp.async.cg.shared.global [dst], [src], 16: the same, cached in L2 only (16 bytes only).
__device__ __forceinline__ void cp_async_cg(void* dst, const void* src GC_PTX_SITE_PARAMS) {
#ifdef GPUCONV_EMULATOR
    gcemu::cp_async<16>(dst, src, 16, true, GC_PTX_SITE);
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(shared_address(dst)), "l"(src) : "memory");
#endif
}

__device__ __forceinline__ void cp_async_cg_zfill(void* dst, const void* src, int src_bytes GC_PTX_SITE_PARAMS) {
#ifdef GPUCONV_EMULATOR
    gcemu::cp_async<16>(dst, src, src_bytes, true, GC_PTX_SITE);
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(shared_address(dst)), "l"(src), "r"(src_bytes)
                 : "memory");
#endif
}

// cp.async.commit_group: the copies issued since the last commit become one group.
__device__ __forceinline__ void cp_async_commit_group() {
#ifdef GPUCONV_EMULATOR
    gcemu::cp_async_commit_group();
#else
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}

// cp.async.wait_group N: waits until at most the N most recent committed groups are pending
// (copies not yet committed are not waited for).
template <int N>
__device__ __forceinline__ void cp_async_wait_group() {
    static_assert(N >= 0 && N <= 7, "cp.async.wait_group takes 0..7");
#ifdef GPUCONV_EMULATOR
    gcemu::cp_async_wait_group(N);
#else
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#endif
}

// cp.async.wait_all: commits the open copies and waits for every group.
__device__ __forceinline__ void cp_async_wait_all() {
#ifdef GPUCONV_EMULATOR
    gcemu::cp_async_wait_all();
#else
    asm volatile("cp.async.wait_all;" ::: "memory");
#endif
}

}  // namespace ptx
}  // namespace gc

#undef GC_PTX_SITE_PARAMS
#undef GC_PTX_SITE

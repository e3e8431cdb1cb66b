// Every wrapper of kernels/ptx.cuh called once: compiled by NVRTC for sm_80 / sm_90
// (tests/test_emulator_ptx.py::test_ptx_wrappers_compile_under_nvrtc) and by the emulator.
#include "common.cuh"

namespace gct {

__global__ void __launch_bounds__(32) every_wrapper(const float* __restrict__ x, float* __restrict__ out) {
    __shared__ __align__(16) unsigned short tile[8 * 4][8];
    __shared__ __align__(16) float st4[32], st8[64], st16[128], stcg[128];
    const int lane = threadIdx.x;
    for (int i = lane; i < 8 * 4 * 8; i += 32) (&tile[0][0])[i] = gc::ptx::cvt_rn_f16_f32(x[i]);
    gc::ptx::cp_async_ca<4>(&st4[lane], x + lane);
    gc::ptx::cp_async_ca<8>(&st8[2 * lane], x + 2 * lane);
    gc::ptx::cp_async_commit_group();
    gc::ptx::cp_async_ca<16>(&st16[4 * lane], x + 4 * lane);
    gc::ptx::cp_async_cg(&stcg[4 * lane], x + 4 * lane);
    gc::ptx::cp_async_commit_group();
    gc::ptx::cp_async_wait_group<1>();
    gc::ptx::cp_async_wait_group<0>();
    gc::ptx::cp_async_ca_zfill<16>(&st16[4 * lane], x, 0);
    gc::ptx::cp_async_cg_zfill(&stcg[4 * lane], x + 4 * lane, 8);
    gc::ptx::cp_async_wait_all();
    __syncthreads();
    unsigned a[4], b[2], b1[1];
    gc::ptx::ldmatrix_x4(a, &tile[lane][0]);
    gc::ptx::ldmatrix_x2(b, &tile[lane % 16][0]);
    gc::ptx::ldmatrix_x1(b1, &tile[lane % 8][0]);
    unsigned at[4], bt[2], bt1[1];
    gc::ptx::ldmatrix_x4_trans(at, &tile[lane][0]);
    gc::ptx::ldmatrix_x2_trans(bt, &tile[lane % 16][0]);
    gc::ptx::ldmatrix_x1_trans(bt1, &tile[lane % 8][0]);
    const float c[4] = {st4[lane], st8[2 * lane + 1], st16[4 * lane], stcg[4 * lane + 1] + stcg[4 * lane + 2]};
    float d[4], e[4], f[4];
    gc::ptx::mma_m16n8k16_f16_f32(d, a, b, c);
    const unsigned ab[4] = {gc::ptx::cvt_rn_bf16x2_f32(c[0], c[1]), gc::ptx::cvt_rn_bf16x2_f32(c[2], c[3]), at[2], at[3]};
    const unsigned bb[2] = {bt[0], bt1[0] ^ b1[0]};
    gc::ptx::mma_m16n8k16_bf16_f32(e, ab, bb, d);
    const unsigned a32[4] = {gc::ptx::cvt_rna_tf32_f32(e[0]), gc::ptx::cvt_rna_tf32_f32(e[1]), gc::ptx::cvt_rna_tf32_f32(e[2]),
                             gc::ptx::cvt_rna_tf32_f32(e[3])};
    const unsigned b32[2] = {gc::ptx::cvt_rna_tf32_f32(c[0]), gc::ptx::cvt_rna_tf32_f32(c[1])};
    gc::ptx::mma_m16n8k8_tf32_f32(f, a32, b32, e);
    const unsigned packed = gc::ptx::cvt_rn_f16x2_f32(f[0], f[1]);
    out[lane] = f[2] + f[3] + gc::ptx::cvt_f32_f16((unsigned short)(packed & 0xffffu)) +
                gc::ptx::cvt_f32_bf16(gc::ptx::cvt_rn_bf16_f32(f[0])) + gc::ptx::rcp_approx_ftz(f[1]) +
                gc::ptx::rsqrt_approx_ftz(f[2] * f[2] + 1.0f) + float(gc::ptx::rcp_approx_ftz(double(f[3])));
}

}  // namespace gct

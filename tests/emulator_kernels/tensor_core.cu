// Tensor-core building blocks on the emulator (tests/test_emulator_ptx.py): a multistage GEMM
// tile (cp.async 3-stage pipeline -> ldmatrix -> mma.sync m16n8k16, f16 or bf16), a tf32 GEMM
// (m16n8k8), an ldmatrix probe and a warp-intrinsics probe.
#include "common.cuh"

namespace gct {

// ------------------------------------------------------------------------------------------
// C[M][N] (float) = A[M][K] * B, 16-bit operands (KIND 0: f16, 1: bf16), fp32 accumulation.
// B_KN: B is stored [K][N] (row-major) and its fragments are loaded with ldmatrix .trans;
// otherwise B is stored [N][K] and loaded with plain ldmatrix (x2).
// Block tile 32 x 32 x 32, 4 warps in a 2 x 2 grid (16 x 16 each: two m16n8 accumulators),
// 3 cp.async stages with one __syncthreads per k tile. M, N multiples of 32; K a multiple of 8
// (the last k tile's missing 16-byte chunks are zero-filled by cp.async's src-size form).
// ------------------------------------------------------------------------------------------
constexpr int BM = 32, BN = 32, BK = 32, STAGES = 3, PAD = 8;

template <int KIND, bool B_KN>
__global__ void __launch_bounds__(128) gemm16(const unsigned short* __restrict__ A, const unsigned short* __restrict__ B,
                                              float* __restrict__ C, int M, int N, int K) {
    __shared__ __align__(16) unsigned short As[STAGES][BM][BK + PAD];
    __shared__ __align__(16) unsigned short Bs[STAGES][32][32 + PAD];  // [k][n] if B_KN else [n][k]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int KT = (K + BK - 1) / BK;

    auto load_stage = [&](int stage, int kt) {
        const int r = tid >> 2, chunk = tid & 3;  // 32 rows x 4 chunks of 8 elements
        {
            const int k = kt * BK + chunk * 8;
            if (k < K) gc::ptx::cp_async_cg(&As[stage][r][chunk * 8], A + (size_t)(m0 + r) * K + k);
            else gc::ptx::cp_async_ca_zfill<16>(&As[stage][r][chunk * 8], A, 0);
        }
        if (B_KN) {
            const int k = kt * BK + r;
            if (k < K) gc::ptx::cp_async_ca<16>(&Bs[stage][r][chunk * 8], B + (size_t)k * N + n0 + chunk * 8);
            else gc::ptx::cp_async_cg_zfill(&Bs[stage][r][chunk * 8], B, 0);
        } else {
            const int k = kt * BK + chunk * 8;
            const int valid = k < K ? 16 : 0;
            gc::ptx::cp_async_ca_zfill<16>(&Bs[stage][r][chunk * 8], valid ? B + (size_t)(n0 + r) * K + k : B, valid);
        }
    };

    float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
    auto compute_stage = [&](int stage) {
        for (int kk = 0; kk < BK; kk += 16) {
            unsigned a[4];
            gc::ptx::ldmatrix_x4(a, &As[stage][16 * wm + (lane & 15)][kk + (lane >> 4) * 8]);
            unsigned b[2][2];
            if (B_KN) {
                unsigned b4[4];
                gc::ptx::ldmatrix_x4_trans(b4, &Bs[stage][kk + (lane & 15)][16 * wn + (lane >> 4) * 8]);
                b[0][0] = b4[0], b[0][1] = b4[1], b[1][0] = b4[2], b[1][1] = b4[3];
            } else {
                for (int j = 0; j < 2; ++j) {
                    unsigned b2[2];
                    gc::ptx::ldmatrix_x2(b2, &Bs[stage][16 * wn + 8 * j + (lane & 7)][kk + ((lane >> 3) & 1) * 8]);
                    b[j][0] = b2[0], b[j][1] = b2[1];
                }
            }
            for (int j = 0; j < 2; ++j) {
                if (KIND == 0) gc::ptx::mma_m16n8k16_f16_f32(acc[j], a, b[j], acc[j]);
                else gc::ptx::mma_m16n8k16_bf16_f32(acc[j], a, b[j], acc[j]);
            }
        }
    };

    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < KT) load_stage(s, s);
        gc::ptx::cp_async_commit_group();
    }
    for (int kt = 0; kt < KT; ++kt) {
        gc::ptx::cp_async_wait_group<STAGES - 2>();  // tile kt has landed (for this thread)
        __syncthreads();                             // ... for every thread; tile kt-1 is consumed
        const int next = kt + STAGES - 1;
        if (next < KT) load_stage(next % STAGES, next);
        gc::ptx::cp_async_commit_group();
        compute_stage(kt % STAGES);
    }
    gc::ptx::cp_async_wait_all();

    const int g = lane >> 2, t = lane & 3;
    for (int j = 0; j < 2; ++j)
        for (int i = 0; i < 4; ++i) {
            const int row = m0 + 16 * wm + g + 8 * (i >> 1), col = n0 + 16 * wn + 8 * j + 2 * t + (i & 1);
            C[(size_t)row * N + col] = acc[j][i];
        }
}

// ------------------------------------------------------------------------------------------
// C[M][N] = tf32(A[M][K]) * tf32(B[K][N]) + C0, one warp per 16 x 8 output tile, operands read
// from global memory into shared with cp.async (4-byte copies), fragments by plain shared loads.
// K a multiple of 8, M of 16, N of 8.
// ------------------------------------------------------------------------------------------
__global__ void __launch_bounds__(32) gemm_tf32(const float* __restrict__ A, const float* __restrict__ B,
                                                const float* __restrict__ C0, float* __restrict__ C, int M, int N, int K) {
    __shared__ __align__(16) float As[16][8];
    __shared__ __align__(16) float Bs[8][8];
    const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    const int m0 = blockIdx.y * 16, n0 = blockIdx.x * 8;
    float acc[4];
    for (int i = 0; i < 4; ++i) acc[i] = C0[(size_t)(m0 + g + 8 * (i >> 1)) * N + n0 + 2 * t + (i & 1)];
    for (int k0 = 0; k0 < K; k0 += 8) {
        for (int e = lane; e < 16 * 8; e += 32) gc::ptx::cp_async_ca<4>(&As[e / 8][e % 8], A + (size_t)(m0 + e / 8) * K + k0 + e % 8);
        for (int e = lane; e < 8 * 8; e += 32) gc::ptx::cp_async_ca<4>(&Bs[e / 8][e % 8], B + (size_t)(k0 + e / 8) * N + n0 + e % 8);
        gc::ptx::cp_async_wait_all();
        __syncwarp();
        const unsigned a[4] = {gc::ptx::cvt_rna_tf32_f32(As[g][t]), gc::ptx::cvt_rna_tf32_f32(As[g + 8][t]),
                               gc::ptx::cvt_rna_tf32_f32(As[g][t + 4]), gc::ptx::cvt_rna_tf32_f32(As[g + 8][t + 4])};
        const unsigned b[2] = {gc::ptx::cvt_rna_tf32_f32(Bs[t][g]), gc::ptx::cvt_rna_tf32_f32(Bs[t + 4][g])};
        gc::ptx::mma_m16n8k8_tf32_f32(acc, a, b, acc);
        __syncwarp();
    }
    for (int i = 0; i < 4; ++i) C[(size_t)(m0 + g + 8 * (i >> 1)) * N + n0 + 2 * t + (i & 1)] = acc[i];
}

// ------------------------------------------------------------------------------------------
// ldmatrix probe: one warp; tile[r][c] = values[r * 8 + c] (32 rows of 8 b16); lane L gives the
// row address &tile[rows[L]][0]. out[v][L][m] = d[m] of lane L for variant v =
// x1, x2, x4, x1.trans, x2.trans, x4.trans (unused registers 0).
// ------------------------------------------------------------------------------------------
__global__ void __launch_bounds__(32) ldmatrix_probe(const unsigned short* __restrict__ values, const int* __restrict__ rows,
                                                     unsigned* __restrict__ out) {
    __shared__ __align__(16) unsigned short tile[32][8];
    const int lane = threadIdx.x;
    for (int i = lane; i < 32 * 8; i += 32) tile[i / 8][i % 8] = values[i];
    __syncwarp();
    const void* row = &tile[rows[lane]][0];
    unsigned d1[1], d2[2], d4[4];
    unsigned* o = out + lane * 4;
    gc::ptx::ldmatrix_x1(d1, row);
    o[0 * 128 + 0] = d1[0];
    gc::ptx::ldmatrix_x2(d2, row);
    o[1 * 128 + 0] = d2[0], o[1 * 128 + 1] = d2[1];
    gc::ptx::ldmatrix_x4(d4, row);
    for (int m = 0; m < 4; ++m) o[2 * 128 + m] = d4[m];
    gc::ptx::ldmatrix_x1_trans(d1, row);
    o[3 * 128 + 0] = d1[0];
    gc::ptx::ldmatrix_x2_trans(d2, row);
    o[4 * 128 + 0] = d2[0], o[4 * 128 + 1] = d2[1];
    gc::ptx::ldmatrix_x4_trans(d4, row);
    for (int m = 0; m < 4; ++m) o[5 * 128 + m] = d4[m];
}

// A warp overwrites the tile right after its ldmatrix: on a GPU every lane already holds its
// fragment (the instruction is warp-synchronous); the emulator must not let lane 0's store reach
// lane 1's fragment. out[L] = d[0] of lane L.
__global__ void __launch_bounds__(32) ldmatrix_then_store(unsigned* __restrict__ out) {
    __shared__ __align__(16) unsigned short tile[8][8];
    const int lane = threadIdx.x;
    for (int i = lane; i < 64; i += 32) tile[i / 8][i % 8] = (unsigned short)i;
    __syncwarp();
    unsigned d[1];
    gc::ptx::ldmatrix_x1(d, &tile[lane & 7][0]);
    tile[lane / 4][2 * (lane % 4)] = 0xdead & 0xffff;  // lane L's own elements: every lane's store
    tile[lane / 4][2 * (lane % 4) + 1] = 0xbeef;
    out[lane] = d[0];
}

// ------------------------------------------------------------------------------------------
// Warp intrinsics probe: 64 threads (two warps); out[tid][slot] as listed in the test.
// ------------------------------------------------------------------------------------------
constexpr int PROBE_SLOTS = 18;

__global__ void __launch_bounds__(64) warp_probe(const int* __restrict__ src_lane, int* __restrict__ out,
                                                 double* __restrict__ outd) {
    __shared__ int s[64];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const unsigned full = 0xffffffffu;
    const int v = lane * 10 + warp * 1000;
    int* o = out + tid * PROBE_SLOTS;
    o[0] = __shfl_sync(full, v, src_lane[tid]);
    o[1] = __shfl_sync(full, v, 3, 8);
    o[2] = __shfl_up_sync(full, v, 3);
    o[3] = __shfl_up_sync(full, v, 2, 16);
    o[4] = __shfl_down_sync(full, v, 5);
    o[5] = __shfl_down_sync(full, v, 3, 8);
    o[6] = __shfl_xor_sync(full, v, 1);
    o[7] = __shfl_xor_sync(full, v, 6, 8);
    o[8] = __shfl_xor_sync(full, v, 16, 16);
    o[9] = (int)__ballot_sync(full, lane % 3 == 0);
    o[10] = __any_sync(full, lane == 7) ? 1 : 0;
    o[11] = __all_sync(full, lane < 32) ? 1 : 0;
    o[12] = __shfl_sync(full, v, 31 - lane, 16);  // srcLane past the width: modulo the width
    o[13] = (int)__ballot_sync(full, v > 150 + warp * 1000);
    s[tid] = v;
    __syncwarp();
    o[14] = s[warp * 32 + (31 - lane)];
    outd[tid] = __shfl_down_sync(full, 0.5 + v, 1);
    o[16] = __any_sync(full, lane > 40) ? 1 : 0;
    o[17] = __all_sync(full, lane != 5) ? 1 : 0;
    __syncwarp();
    o[15] = __shfl_xor_sync(full, lane, 31);
}

// Collectives of part of a warp (disjoint masks in flight at once, then a full-warp one):
// out[tid][0..3] as listed in the test.
__global__ void __launch_bounds__(32) warp_partial_probe(int* __restrict__ out) {
    const int lane = threadIdx.x;
    const int v = lane * 10;
    int* o = out + lane * 4;
    o[0] = lane < 16 ? __shfl_sync(0x0000ffffu, v, 15 - lane) : -1;
    o[1] = (lane & 1) ? (int)__ballot_sync(0xaaaaaaaau, lane % 4 == 1) : -1;
    if (lane < 16) __syncwarp(0x0000ffffu);
    o[2] = __shfl_sync(0xffffffffu, v, 0);
    o[3] = (int)__ballot_sync(0xffffffffu, o[0] > 70);
}

}  // namespace gct

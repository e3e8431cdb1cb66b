// mma_pipeline.cuh: the tensor-core GEMM machinery of the implicit-GEMM kernels
// (conv_implicit_gemm.cu today; the transposed convolution and the weight gradient of issue 14
// are to reuse it).
//
//   gc::Elem16<T>         per 16-bit type: to_float, pack2 (cvt.rn.{f16,bf16}x2.f32), mma
//   gc::MmaTile<...>      CTA tile BM x BN x BK, WARPS_M x WARPS_N warps, each a (BM/WARPS_M) x
//                         (BN/WARPS_N) block of m16n8 accumulators; the swizzled shared layout of
//                         both operands and the per-k-tile multiply (ldmatrix -> mma.sync
//                         m16n8k16, f32 accumulation)
//   gc::run_pipeline      the STAGES-deep cp.async main loop over a Loader's k tiles
//
// Shared layout. A (im2col rows) is stored [BM][BK] with k contiguous: a 64-byte row of four
// 16-byte chunks. ldmatrix reads 8 rows of one chunk at once; unswizzled, rows r and r + 2 would
// share banks (128 bytes of banks span two rows), a 4-way conflict. Storing logical chunk c of
// row r at chunk c ^ ((r >> 1) & 3) puts the 8 rows on the 8 distinct 16-byte bank groups.
// B (weights) is stored [BK][BN] with n contiguous: a row of BN / 8 chunks (8 or 16: a whole
// number of 128-byte bank spans); ldmatrix .trans reads 8 k-rows of one n-chunk, all on one bank
// group unswizzled (8-way); chunk c ^ (k & 7) spreads them (the XOR changes the chunk's bank
// group only, so it holds for either width). Every access to either tile (cp.async, st.shared, ldmatrix) goes
// through a_chunk / b_chunk, so the layouts cannot disagree.
#pragma once
#include "common.cuh"

namespace gc {

template <typename T>
struct Elem16;

template <>
struct Elem16<half> {
    static __device__ __forceinline__ float to_float(unsigned short b) { return ptx::cvt_f32_f16(b); }
    // lo at the lower address once stored
    static __device__ __forceinline__ unsigned pack2(float lo, float hi) { return ptx::cvt_rn_f16x2_f32(hi, lo); }
    static __device__ __forceinline__ unsigned short from_float(float f) { return ptx::cvt_rn_f16_f32(f); }
    static __device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
        ptx::mma_m16n8k16_f16_f32(d, a, b, d);
    }
};

template <>
struct Elem16<bfloat16> {
    static __device__ __forceinline__ float to_float(unsigned short b) { return ptx::cvt_f32_bf16(b); }
    static __device__ __forceinline__ unsigned pack2(float lo, float hi) { return ptx::cvt_rn_bf16x2_f32(hi, lo); }
    static __device__ __forceinline__ unsigned short from_float(float f) { return ptx::cvt_rn_bf16_f32(f); }
    static __device__ __forceinline__ void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
        ptx::mma_m16n8k16_bf16_f32(d, a, b, d);
    }
};

// 16 bytes of 16-bit elements (the unit of cp.async, of the scalar path's st.shared and of an
// ldmatrix row).
struct __align__(16) Chunk16 {
    unsigned w[4];

    // Element i (of 8) from its 16 bits; the element paths fill i = 0..7 in order, so an even i
    // starts its word and an odd one completes it.
    __device__ __forceinline__ void put(int i, unsigned bits) {
        if (i % 2 == 0) w[i / 2] = bits;
        else w[i / 2] |= bits << 16;
    }
};

template <typename T, int BM_, int BN_, int BK_, int STAGES_, int WARPS_M_, int WARPS_N_>
struct MmaTile {
    static constexpr int BM = BM_, BN = BN_, BK = BK_, STAGES = STAGES_;
    static constexpr int WARPS_M = WARPS_M_, WARPS_N = WARPS_N_;
    static constexpr int THREADS = 32 * WARPS_M * WARPS_N;
    static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // one warp's block
    static constexpr int MI = WM / 16, NJ = WN / 8;  // its m16 x n8 accumulators
    static constexpr int A_CHUNKS = BK / 8;  // 16-byte chunks per A row
    static constexpr int B_CHUNKS = BN / 8;  // per B row
    static constexpr int A_STAGE = BM * A_CHUNKS, B_STAGE = BK * B_CHUNKS;  // chunks per stage
    static_assert(BK == 32, "the A swizzle assumes four chunks per row");
    static_assert(BN % 64 == 0, "the B swizzle assumes whole 128-byte rows of eight chunks");
    static_assert(MI >= 1 && NJ % 2 == 0, "warp block: whole m16 rows, pairs of n8 columns");

    // The operand stages (A's, then B's) in one buffer; after the main loop the epilogue's
    // BM x BN 16-bit output tile overlays it from the start.
    struct Shared {
        Chunk16 buf[STAGES * (A_STAGE + B_STAGE)];

        __device__ __forceinline__ Chunk16* a(int stage) { return buf + stage * A_STAGE; }
        __device__ __forceinline__ Chunk16* b(int stage) { return buf + STAGES * A_STAGE + stage * B_STAGE; }
        __device__ __forceinline__ Chunk16* output_tile() { return buf; }
    };
    static_assert(STAGES * (A_STAGE + B_STAGE) >= BM * B_CHUNKS, "the output tile fits over the stages");

    // This thread's warp's block: warps along n fastest.
    static __device__ __forceinline__ int warp_m_of(int warp) { return warp / WARPS_N; }
    static __device__ __forceinline__ int warp_n_of(int warp) { return warp % WARPS_N; }

    static __device__ __forceinline__ int a_chunk(int row, int c) { return row * A_CHUNKS + (c ^ ((row >> 1) & 3)); }
    static __device__ __forceinline__ int b_chunk(int k, int c) { return k * B_CHUNKS + (c ^ (k & 7)); }
    // The output tile [BM][BN], swizzled as B: a warp's 4-byte accumulator writes (8 rows x 4
    // lanes of one n8 block) and the 16-byte reads (8 lanes per row) are both conflict-free.
    static __device__ __forceinline__ int out_chunk(int row, int c) { return row * B_CHUNKS + (c ^ (row & 7)); }

    float acc[MI][NJ][4];

    __device__ __forceinline__ void zero() {
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
            for (int j = 0; j < NJ; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;
    }

    // acc += A_tile * B_tile over one k tile held in stage buffers As / Bs.
    __device__ __forceinline__ void multiply(const Chunk16* As, const Chunk16* Bs, int warp_m, int warp_n, int lane) {
#pragma unroll
        for (int ks = 0; ks < BK / 16; ++ks) {
            unsigned a[MI][4];
#pragma unroll
            for (int i = 0; i < MI; ++i) {
                // lanes 0-15: rows 0-15 of k half 0; lanes 16-31: the same rows, k half 1
                const int row = warp_m * WM + i * 16 + (lane & 15);
                ptx::ldmatrix_x4(a[i], &As[a_chunk(row, 2 * ks + (lane >> 4))]);
            }
            unsigned b[NJ][2];
#pragma unroll
            for (int j = 0; j < NJ; j += 2) {
                // lanes 0-15: k rows 0-15 of n block j; lanes 16-31: of n block j + 1 (.trans gives
                // each lane B[2t..2t+1][g], the col-major B fragment)
                const int k = ks * 16 + (lane & 15);
                const int nc = (warp_n * WN + j * 8) / 8 + (lane >> 4);
                unsigned d[4];
                ptx::ldmatrix_x4_trans(d, &Bs[b_chunk(k, nc)]);
                b[j][0] = d[0]; b[j][1] = d[1]; b[j + 1][0] = d[2]; b[j + 1][1] = d[3];
            }
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int j = 0; j < NJ; ++j) Elem16<T>::mma(acc[i][j], a[i], b[j]);
        }
    }

    // The accumulator element e of (i, j): its row within the CTA tile and its column.
    static __device__ __forceinline__ int acc_row(int warp_m, int lane, int i, int e) {
        return warp_m * WM + i * 16 + (lane >> 2) + 8 * (e >> 1);
    }
    static __device__ __forceinline__ int acc_col(int warp_n, int lane, int j) { return warp_n * WN + j * 8 + 2 * (lane & 3); }
};

// The main loop over k tiles [0, KT): tile kt is loaded STAGES - 1 tiles ahead of its use. The
// Loader's load(Shared&, stage) fills the next k tile (in order: its address walk is incremental)
// by cp.async and/or ordinary stores; its stage was last read in the previous iteration, which
// every thread finished before the barrier of this one. One commit per iteration (empty groups
// included) keeps wait_group<STAGES - 2> meaning "tile kt has landed". Ends with no copy pending
// and a barrier, so the caller may rewrite the stages right after.
template <class Tile, class Loader>
__device__ __forceinline__ void run_pipeline(Tile& tile, typename Tile::Shared& sm, Loader& ld, int KT, int warp_m,
                                             int warp_n, int lane) {
    constexpr int S = Tile::STAGES;
    tile.zero();
#pragma unroll
    for (int s = 0; s < S - 1; ++s) {
        if (s < KT) ld.load(sm, s);
        ptx::cp_async_commit_group();
    }
    for (int kt = 0; kt < KT; ++kt) {
        ptx::cp_async_wait_group<S - 2>();
        __syncthreads();
        const int next = kt + S - 1;
        if (next < KT) ld.load(sm, next % S);
        ptx::cp_async_commit_group();
        const int cur = kt % S;
        tile.multiply(sm.a(cur), sm.b(cur), warp_m, warp_n, lane);
    }
    ptx::cp_async_wait_all();
    __syncthreads();
}

}  // namespace gc

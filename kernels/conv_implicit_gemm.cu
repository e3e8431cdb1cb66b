// conv_implicit_gemm.cu: grouped, strided, dilated N-d convolution on tensor cores (channels_last,
// 16-bit inputs, f32 accumulation), rank-generic (1-D and 2-D run as 3-D with leading sizes 1).
//
//   y[n, o, g*Fg + f] = act(bias[g*Fg + f] + sum_{t, c} x[n, o*s - pad + t*d, g*Cg + c] * w[t, c, g*Fg + f])
//
// As a GEMM: rows m = output pixels (M = N * OD * OH * OW), columns = the Fg filters of one
// group, reduction k = t * Cg + c over taps x channels of the group (K = taps * Cg), flat: the
// weights (*kernel, Cg, F) are then exactly a K x F row-major matrix, and a small Cg (the C = 3
// stem) packs its taps densely into k tiles instead of padding each tap's channels to a tile.
//
// CTA tile 64 pixels x 64 filters x 32 of k, 4 warps (each 32 x 32: 2 x 4 mma.m16n8k16), three
// cp.async stages (mma_pipeline.cuh: swizzled shared layout, ldmatrix, the main loop). Why
// 64 x 64: the three stages take 24 KB, under the 48 KB of static shared memory (no opt-in
// attribute, so the emulator and every device launch it as is) and leave room for 4 CTAs per
// SM at <= 128 registers (3 for the element path of A, IgemmMinBlocks); the layers of the suite
// with few pixels or 64 filters (grouped, late stages at small batch) waste less of a 64-wide
// tile than of a 128-wide one. A 128 x 128 tile for the large dense rows is the next config
// (issue 14). Nothing here has been timed on a GPU yet.
//
// Loads. Each thread owns two rows (pixels) of the A tile and one 16-byte chunk (8 channels) of
// k in each, the same for every k tile: its pixels are decoded once per CTA tile (origin and
// base offset in registers), and its position in k advances incrementally (channel, then tap
// with carries; the tap's spatial offset by precomputed deltas): no division in the main loop.
//   VEC_A (Cg % 8 == 0): a chunk is 8 channels of one tap, one 16-byte cp.async, zero-filled
//     (src-size 0) where the tap lands in padding ('same' of either parity, 'causal') or past K.
//   otherwise: 8 scalar loads, each with its own (tap, channel), packed and stored to the same
//     swizzled chunk (synchronously: the stage being filled was last read in the previous
//     iteration, before this iteration's barrier).
//   VEC_B (Fg % 8 == 0): weights by 16-byte cp.async, else scalar, the same way.
// Padding reads a literal zero times the weight, as conv_direct does (a NaN weight poisons the
// border as the padded oracle's does).
//
// Epilogue: bias, the fused activation (common.cuh, every one), cast with cvt.rn.{f16,bf16}x2 into
// a 64 x 64 output tile in shared memory (over the free operand stages), then 16-byte stores of
// 8 filters each, coalesced along the row (an element path for a partial or unaligned chunk).
//
// Template parameters: T (gc::half; gc::bfloat16 compiled for the audit, not routed until the
// library has a bfloat16 dtype), VEC_A, VEC_B. 32-bit indices only (the table routes larger
// tensors to the FFMA kernels).
#include "common.cuh"
#include "mma_pipeline.cuh"

namespace gc {

template <typename T>
using IgemmShape = MmaTile<T, 64, 64, 32, 3>;  // the one config (T only picks the mma)

// A thread's position in the flat reduction: channel c of tap (kd, kh, kw), whose spatial offset
// (in pixels of the input) is sp; k the flat index. step(n) moves n forward, n < 2 Cg or with a
// carry loop that runs once per whole tap crossed.
struct KWalk {
    int k, c, kw, kh, kd;
    int dz, dy, dx;  // kd * DD, kh * DH, kw * DW
    int sp;          // (dz * H + dy) * W + dx

    __device__ __forceinline__ void start() { k = c = kw = kh = kd = dz = dy = dx = sp = 0; }
};

struct Geometry {
    int Cg, K, KW, KH, DD, DH, DW;
    int D, H, W, C;
    int sp_w, sp_h, sp_d;  // sp deltas of a step in kw, of the kw wrap into kh, of the kh wrap into kd

    __device__ __forceinline__ void step(KWalk& t, int n) const {
        t.k += n;
        t.c += n;
        while (t.c >= Cg) {
            t.c -= Cg;
            ++t.kw;
            t.dx += DW;
            t.sp += sp_w;
            if (t.kw == KW) {
                t.kw = 0;
                t.dx = 0;
                ++t.kh;
                t.dy += DH;
                t.sp += sp_h;
                if (t.kh == KH) {
                    t.kh = 0;
                    t.dy = 0;
                    ++t.kd;
                    t.dz += DD;
                    t.sp += sp_d;
                }
            }
        }
    }

    // Whether tap (dz, dy, dx) of a pixel with origin (d0, h0, w0) lies inside the input. A row
    // past the last pixel has d0 = INT_MIN / 2, so it never does.
    __device__ __forceinline__ bool inside(const KWalk& t, int d0, int h0, int w0) const {
        return unsigned(d0 + t.dz) < unsigned(D) && unsigned(h0 + t.dy) < unsigned(H) && unsigned(w0 + t.dx) < unsigned(W);
    }
};

template <typename T, int VEC_A, int VEC_B>
struct IgemmLoader {
    typedef IgemmShape<T> Tile;
    static constexpr int A_ROWS = Tile::BM * Tile::A_CHUNKS / Tile::THREADS;  // 2
    static constexpr int B_ROWS = Tile::BK * Tile::B_CHUNKS / Tile::THREADS;  // 2
    static constexpr int A_ROW_STEP = Tile::THREADS / Tile::A_CHUNKS;        // 32
    static constexpr int B_ROW_STEP = Tile::THREADS / Tile::B_CHUNKS;        // 16

    const unsigned short* __restrict__ x;
    const unsigned short* __restrict__ w;
    Geometry geo;
    int F, fcount;  // fcount: filters of the group from this tile's first one on
    int a_row0, a_ch, b_row0, b_ch;
    int row_off[A_ROWS];  // offset of the pixel's origin tap, channel 0 of the group
    int d0[A_ROWS], h0[A_ROWS], w0[A_ROWS];
    KWalk a_walk;         // at this thread's A chunk of the next k tile
    int b_k;              // the k of this thread's first B row in the next k tile
    const unsigned short* b_src;  // w at (b_k, first filter of this thread's chunk)

    __device__ __forceinline__ void load(typename Tile::Shared& sm, int stage) {
        Chunk16* As = sm.a[stage];
        Chunk16* Bs = sm.b[stage];
        // A: the im2col tile
        if (VEC_A) {
            const int tap = a_walk.sp * geo.C + a_walk.c;
#pragma unroll
            for (int r = 0; r < A_ROWS; ++r) {
                const bool ok = a_walk.k < geo.K && geo.inside(a_walk, d0[r], h0[r], w0[r]);
                ptx::cp_async_ca_zfill<16>(&As[Tile::a_chunk(a_row0 + r * A_ROW_STEP, a_ch)], ok ? x + row_off[r] + tap : x,
                                           ok ? 16 : 0);
            }
        } else {
            Chunk16 v[A_ROWS];
            KWalk e = a_walk;
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const int tap = e.sp * geo.C + e.c;
#pragma unroll
                for (int r = 0; r < A_ROWS; ++r) {
                    const bool ok = e.k < geo.K && geo.inside(e, d0[r], h0[r], w0[r]);
                    v[r].put(i, ok ? x[row_off[r] + tap] : 0u);
                }
                if (i < 7) geo.step(e, 1);
            }
#pragma unroll
            for (int r = 0; r < A_ROWS; ++r) As[Tile::a_chunk(a_row0 + r * A_ROW_STEP, a_ch)] = v[r];
        }
        geo.step(a_walk, Tile::BK);
        // B: K x F weights, this tile's 64 filters
#pragma unroll
        for (int r = 0; r < B_ROWS; ++r) {
            const int k = b_k + r * B_ROW_STEP;
            const unsigned short* src = b_src + r * B_ROW_STEP * F;
            Chunk16* dst = &Bs[Tile::b_chunk(b_row0 + r * B_ROW_STEP, b_ch)];
            if (VEC_B) {
                const bool ok = k < geo.K && b_ch * 8 < fcount;
                ptx::cp_async_cg_zfill(dst, ok ? src : w, ok ? 16 : 0);
            } else {
                Chunk16 v;
#pragma unroll
                for (int i = 0; i < 8; ++i) {
                    const bool ok = k < geo.K && b_ch * 8 + i < fcount;
                    v.put(i, ok ? src[i] : 0u);
                }
                *dst = v;
            }
        }
        b_k += Tile::BK;
        b_src += Tile::BK * F;
    }
};

// CTAs per SM the register budget is sized for: 4 (<= 128 registers) with vector A loads; 3
// (<= 168) for the element path of A, whose second k walker and 16 loads in flight spill under
// 128 (sm_80: 12 bytes), and whose layers (the C = 3 stem) have short reductions anyway.
template <int VEC_A>
struct IgemmMinBlocks {
    static constexpr int value = VEC_A ? 4 : 3;
};

template <typename T, int VEC_A, int VEC_B>
__global__ void __launch_bounds__(128, IgemmMinBlocks<VEC_A>::value)
conv_implicit_gemm(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y,
                   int N, int C, int F, int groups,
                   int D, int H, int W, int OD, int OH, int OW,
                   int KD, int KH, int KW,
                   int SD, int SH, int SW, int DD, int DH, int DW,
                   int PD, int PH, int PW, int act) {
    typedef IgemmShape<T> Tile;
    typedef IgemmLoader<T, VEC_A, VEC_B> Loader;
    constexpr int BM = Tile::BM, BN = Tile::BN;
    static_assert(Tile::THREADS == 128, "launch bounds assume 128 threads");

    __shared__ typename Tile::Shared sm;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int warp_m = warp >> 1, warp_n = warp & 1;
    const int Cg = C / groups, Fg = F / groups;
    const int P = OD * OH * OW, M = N * P, DHW = D * H * W;
    const int K = KD * KH * KW * Cg;
    const int KT = (K + Tile::BK - 1) / Tile::BK;
    const int m_tiles = (M + BM - 1) / BM;
    const int f_tiles = (Fg + BN - 1) / BN;
    const int col_tiles = groups * f_tiles;
    const unsigned short* bias16 = reinterpret_cast<const unsigned short*>(bias);
    unsigned short* y16 = reinterpret_cast<unsigned short*>(y);

    Loader ld;
    ld.x = reinterpret_cast<const unsigned short*>(x);
    ld.w = reinterpret_cast<const unsigned short*>(w);
    ld.geo.Cg = Cg; ld.geo.K = K; ld.geo.KW = KW; ld.geo.KH = KH;
    ld.geo.DD = DD; ld.geo.DH = DH; ld.geo.DW = DW;
    ld.geo.D = D; ld.geo.H = H; ld.geo.W = W; ld.geo.C = C;
    ld.geo.sp_w = DW;
    ld.geo.sp_h = DH * W - KW * DW;
    ld.geo.sp_d = DD * H * W - KH * DH * W;
    ld.F = F;
    ld.a_row0 = tid / Tile::A_CHUNKS; ld.a_ch = tid % Tile::A_CHUNKS;
    ld.b_row0 = tid / Tile::B_CHUNKS; ld.b_ch = tid % Tile::B_CHUNKS;

    for (int by = blockIdx.y; by < col_tiles; by += gridDim.y) {
        const int g = by / f_tiles;
        const int f0 = (by - g * f_tiles) * BN;
        const int fcol0 = g * Fg + f0;  // first absolute filter of the tile
        for (int bx = blockIdx.x; bx < m_tiles; bx += gridDim.x) {
            const int m0 = bx * BM;
            // This thread's A rows: decoded once per tile.
#pragma unroll
            for (int r = 0; r < Loader::A_ROWS; ++r) {
                const int m = m0 + ld.a_row0 + r * Loader::A_ROW_STEP;
                if (m < M) {
                    int q = m;
                    const int ow = q % OW; q /= OW;
                    const int oh = q % OH; q /= OH;
                    const int od = q % OD;
                    const int n = q / OD;
                    ld.d0[r] = od * SD - PD;
                    ld.h0[r] = oh * SH - PH;
                    ld.w0[r] = ow * SW - PW;
                    ld.row_off[r] = n * DHW * C + ((ld.d0[r] * H + ld.h0[r]) * W + ld.w0[r]) * C + g * Cg;
                } else {
                    ld.d0[r] = -0x40000000;  // never inside (Geometry::inside)
                    ld.h0[r] = ld.w0[r] = 0;
                    ld.row_off[r] = 0;
                }
            }
            ld.a_walk.start();
            ld.geo.step(ld.a_walk, ld.a_ch * 8);
            ld.fcount = Fg - f0;
            ld.b_k = ld.b_row0;
            ld.b_src = ld.w + ld.b_row0 * F + fcol0 + ld.b_ch * 8;

            Tile tile;
            run_pipeline(tile, sm, ld, KT, warp_m, warp_n, lane);

            // Epilogue, 1: bias + activation in f32, cast, into the output tile in shared memory
            // (the operand stages are free: run_pipeline ended with a barrier).
            Chunk16* out_tile = sm.output_tile();
#pragma unroll
            for (int i = 0; i < Tile::MI; ++i)
#pragma unroll
                for (int half_row = 0; half_row < 2; ++half_row) {
                    const int row = Tile::acc_row(warp_m, lane, i, 2 * half_row);
                    const bool live = m0 + row < M;
#pragma unroll
                    for (int j = 0; j < Tile::NJ; ++j) {
                        const int col = Tile::acc_col(warp_n, lane, j);
                        float v[2] = {tile.acc[i][j][2 * half_row], tile.acc[i][j][2 * half_row + 1]};
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            if (!live || f0 + col + e >= Fg) continue;  // never stored: no bias read past F
                            if (bias != nullptr) v[e] += Elem16<T>::to_float(bias16[fcol0 + col + e]);
                            if (act != ACT_LINEAR) v[e] = activate_dispatch<float>(act, v[e]);
                        }
                        reinterpret_cast<unsigned*>(&out_tile[Tile::out_chunk(row, col >> 3)])[(col & 7) >> 1] =
                            Elem16<T>::pack2(v[0], v[1]);
                    }
                }
            __syncthreads();
            // 2: rows of 8 filters, one 16-byte store each (8 lanes write a row's 128 contiguous
            // bytes); element stores for a row's last partial chunk or an unaligned one (F % 8 != 0).
#pragma unroll
            for (int it = 0; it < BM * Tile::B_CHUNKS / Tile::THREADS; ++it) {
                const int idx = tid + it * Tile::THREADS;
                const int row = idx / Tile::B_CHUNKS, c = idx % Tile::B_CHUNKS;
                const int m = m0 + row, f = f0 + c * 8;
                if (m >= M || f >= Fg) continue;
                const Chunk16 v = out_tile[Tile::out_chunk(row, c)];
                unsigned short* out = y16 + m * F + g * Fg + f;
                if (f + 8 <= Fg && (reinterpret_cast<unsigned long long>(out) & 15) == 0) {
                    *reinterpret_cast<Chunk16*>(out) = v;
                } else {
#pragma unroll
                    for (int e = 0; e < 8; ++e)
                        if (f + e < Fg) out[e] = static_cast<unsigned short>(v.w[e / 2] >> (16 * (e % 2)));
                }
            }
            __syncthreads();  // the next tile's loads rewrite the stages
        }
    }
}

}  // namespace gc

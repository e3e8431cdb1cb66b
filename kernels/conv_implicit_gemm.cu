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
// cp.async stages (mma_pipeline.cuh: swizzled shared layout, ldmatrix, the main loop): IGEMM_64;
// the 128 x 128 config IGEMM_128 is below (IgemmTileOf). Why
// 64 x 64: the three stages take 24 KB, under the 48 KB of static shared memory (no opt-in
// attribute, so the emulator and every device launch it as is) and leave room for 4 CTAs per
// SM at <= 128 registers (3 for the element path of A, IgemmMinBlocks); the layers of the suite
// with few pixels or 64 filters (grouped, late stages at small batch) waste less of a 64-wide
// tile than of a 128-wide one. The large dense rows, which fill a wave of SMs with 128 x 128
// tiles, take IGEMM_128 (half the operand bytes per FLOP; 48 KB, 1 CTA of 8 warps per SM).
// Nothing here has been timed on a GPU yet.
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
// Split-K (deterministic, no atomics): where few output tiles meet a long reduction (the host's
// gpuconv/cuda/conv_implicit_gemm.py split_plan, from the algorithm table's split_k_slices), the
// k tiles are cut into S fixed slices. conv_implicit_gemm_partial (grid z = the slices) runs the
// same main loop over its slice's k range and stores the f32 accumulators, without bias, to its
// plane of a workspace (S, M, F); conv_implicit_gemm_sum, memory-bound, adds the S planes in
// slice order and applies the same bias + activation + cast (bias_activate) as the one-pass
// epilogue. The order of every sum is fixed by the problem and the device's SM count: repeated
// runs are bitwise identical. conv_backward_weights.cu's wgrad / wgrad_sum is the same scheme.
//
// Transposed convolution (and so a convolution's input gradient): the host cuts it into its
// stride phases (gpuconv/cuda/conv_transpose_implicit_gemm.py), each a stride-1 convolution of
// the input with the phase's taps of the kernel, flipped; these kernels run each phase and store
// its pixels of the wider output in place (OutputPlacement). No mma multiplies an inserted zero.
//
// Template parameters: T (gc::half; gc::bfloat16), VEC_A, VEC_B (conv_implicit_gemm: IGEMM_64,
// conv_implicit_gemm_128: IGEMM_128, conv_implicit_gemm_partial: IGEMM_64);
// conv_implicit_gemm_sum<T>.
// 32-bit indices only (the table routes larger tensors to the FFMA kernels; the host keeps the
// workspace under 2**31 elements).
#include "common.cuh"
#include "mma_pipeline.cuh"

namespace gc {

// The CTA tile configs (the host's conv_implicit_gemm.TILES; T only picks the mma):
//   IGEMM_64:  64 x 64 x 32, 4 warps (2 x 2) of 32 x 32, 3 stages, 24 KB
//   IGEMM_128: 128 x 128 x 32, 8 warps (2 x 4) of 64 x 32, 3 stages, 48 KB (the static limit:
//              the output tile, 32 KB, overlays the stages), for layers that fill a wave of
//              SMs with 128 x 128 tiles: half the operand bytes per FLOP of the 64 x 64 tile
enum IgemmConfig { IGEMM_64 = 0, IGEMM_128 = 1 };

template <typename T, int CFG>
struct IgemmTileOf;
template <typename T>
struct IgemmTileOf<T, IGEMM_64> {
    typedef MmaTile<T, 64, 64, 32, 3, 2, 2> type;
};
template <typename T>
struct IgemmTileOf<T, IGEMM_128> {
    typedef MmaTile<T, 128, 128, 32, 3, 2, 4> type;
};

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

template <class Tile, int VEC_A, int VEC_B>
struct IgemmLoader {
    static constexpr int A_ROWS = Tile::BM * Tile::A_CHUNKS / Tile::THREADS;  // 2 in both configs
    static constexpr int B_ROWS = Tile::BK * Tile::B_CHUNKS / Tile::THREADS;  // 2
    static constexpr int A_ROW_STEP = Tile::THREADS / Tile::A_CHUNKS;        // 32 / 64
    static constexpr int B_ROW_STEP = Tile::THREADS / Tile::B_CHUNKS;        // 16
    static_assert(A_ROWS * Tile::THREADS == Tile::BM * Tile::A_CHUNKS, "whole A chunks per thread");
    static_assert(B_ROWS * Tile::THREADS == Tile::BK * Tile::B_CHUNKS, "whole B chunks per thread");

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
        Chunk16* As = sm.a(stage);
        Chunk16* Bs = sm.b(stage);
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

// CTAs per SM the register budget is sized for. IGEMM_64: 4 (<= 128 registers) with vector A
// loads; 3 (<= 168) for the element path of A, whose second k walker and 16 loads in flight
// spill under 128 (sm_80: 12 bytes), and whose layers (the C = 3 stem) have short reductions
// anyway. IGEMM_128 (256 threads, 64 accumulators each): 1 (~200 registers, 8 warps per SM);
// at 2 (<= 128 registers) every load path spills 128-164 bytes on sm_80.
template <int VEC_A, int CFG>
struct IgemmMinBlocks {
    static constexpr int value = CFG == IGEMM_128 ? 1 : (VEC_A ? 4 : 3);
};

// The problem as every kernel of this file takes it (the host's tile_engine.window_sizes order).
struct IgemmSizes {
    int N, C, F, groups;
    int D, H, W, OD, OH, OW;
    int KD, KH, KW;
    int SD, SH, SW, DD, DH, DW;
    int PD, PH, PW;
};

// Where output pixel m of the GEMM (n, od, oh, ow of its OD x OH x OW grid) lies in y, counted in
// pixels of F channels. A convolution's output is the grid itself (strided = 0: pixel m). One
// stride phase of a transposed convolution (the host's conv_transpose_implicit_gemm.py) is a
// convolution whose grid is every s-th pixel of the wider output, from an offset: pixel
// n * YN + Y0 + od * YD + oh * YH + ow * YW of y; so each phase stores its pixels of y in place,
// with no phase buffer and no scatter pass. The divisions run once per stored row, not per mma.
struct OutputPlacement {
    int strided;
    int OD, OH, OW;
    int YN, YD, YH, YW, Y0;

    __device__ __forceinline__ int pixel(int m) const {
        if (!strided) return m;
        const int ow = m % OW;
        m /= OW;
        const int oh = m % OH;
        m /= OH;
        const int od = m % OD;
        return (m / OD) * YN + Y0 + od * YD + oh * YH + ow * YW;
    }
};

// Where one CTA tile lies: pixels [m0, m0 + BM) of M, filters [f0, f0 + BN) of group g's Fg
// (absolute column fcol0 = g * Fg + f0), and the slice of the reduction it summed.
struct TileAt {
    int m0, M, g, f0, Fg, fcol0, slice;
};

// Bias (may be null) + the fused activation of one f32 value of absolute filter column fcol: the
// epilogue of the one-pass kernel and of the split-K sum, so that the two differ only in the order
// of their k sums.
template <typename T>
__device__ __forceinline__ float bias_activate(float v, const unsigned short* __restrict__ bias16, int fcol, int act) {
    if (bias16 != nullptr) v += Elem16<T>::to_float(bias16[fcol]);
    return act == ACT_LINEAR ? v : activate_dispatch<float>(act, v);
}

// The main loop of every CTA tile of a launch: grid x over pixel tiles, y over (group, filter
// tile), z over the slices of the reduction (SPLIT: slice z is k tiles [z * k_tiles_per_slice,
// ...) of KT, the last may be shorter, none is empty; else one slice of all KT, as constants,
// which keeps the one-pass kernel's registers those of a kernel without slices); every axis
// grid-strides. Per tile: run_pipeline over the slice's k tiles, then store(tile, at) (which
// must end with a barrier if it used the shared stages).
template <typename T, class Tile, int VEC_A, int VEC_B, bool SPLIT, class Store>
__device__ __forceinline__ void igemm_tiles(typename Tile::Shared& sm, const T* __restrict__ x,
                                            const T* __restrict__ w, const IgemmSizes& z, int k_tiles_per_slice,
                                            Store store) {
    typedef IgemmLoader<Tile, VEC_A, VEC_B> Loader;
    constexpr int BM = Tile::BM, BN = Tile::BN;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int warp_m = Tile::warp_m_of(warp), warp_n = Tile::warp_n_of(warp);
    const int Cg = z.C / z.groups, Fg = z.F / z.groups;
    const int P = z.OD * z.OH * z.OW, M = z.N * P, DHW = z.D * z.H * z.W;
    const int K = z.KD * z.KH * z.KW * Cg;
    const int KT = (K + Tile::BK - 1) / Tile::BK;
    const int slices = SPLIT ? (KT - 1) / k_tiles_per_slice + 1 : 1;
    const int m_tiles = (M + BM - 1) / BM;
    const int f_tiles = (Fg + BN - 1) / BN;
    const int col_tiles = z.groups * f_tiles;

    Loader ld;
    ld.x = reinterpret_cast<const unsigned short*>(x);
    ld.w = reinterpret_cast<const unsigned short*>(w);
    ld.geo.Cg = Cg; ld.geo.K = K; ld.geo.KW = z.KW; ld.geo.KH = z.KH;
    ld.geo.DD = z.DD; ld.geo.DH = z.DH; ld.geo.DW = z.DW;
    ld.geo.D = z.D; ld.geo.H = z.H; ld.geo.W = z.W; ld.geo.C = z.C;
    ld.geo.sp_w = z.DW;
    ld.geo.sp_h = z.DH * z.W - z.KW * z.DW;
    ld.geo.sp_d = z.DD * z.H * z.W - z.KH * z.DH * z.W;
    ld.F = z.F;
    ld.a_row0 = tid / Tile::A_CHUNKS; ld.a_ch = tid % Tile::A_CHUNKS;
    ld.b_row0 = tid / Tile::B_CHUNKS; ld.b_ch = tid % Tile::B_CHUNKS;

    for (int bz = SPLIT ? blockIdx.z : 0; bz < slices; bz += SPLIT ? gridDim.z : 1) {
        const int kt0 = SPLIT ? bz * k_tiles_per_slice : 0;
        const int nkt = !SPLIT ? KT : KT - kt0 < k_tiles_per_slice ? KT - kt0 : k_tiles_per_slice;
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
                        const int ow = q % z.OW; q /= z.OW;
                        const int oh = q % z.OH; q /= z.OH;
                        const int od = q % z.OD;
                        const int n = q / z.OD;
                        ld.d0[r] = od * z.SD - z.PD;
                        ld.h0[r] = oh * z.SH - z.PH;
                        ld.w0[r] = ow * z.SW - z.PW;
                        ld.row_off[r] = n * DHW * z.C + ((ld.d0[r] * z.H + ld.h0[r]) * z.W + ld.w0[r]) * z.C + g * Cg;
                    } else {
                        ld.d0[r] = -0x40000000;  // never inside (Geometry::inside)
                        ld.h0[r] = ld.w0[r] = 0;
                        ld.row_off[r] = 0;
                    }
                }
                // Both walks start at the slice's first k (the A walk's carry loop crosses the
                // taps before it once per tile).
                ld.a_walk.start();
                ld.geo.step(ld.a_walk, kt0 * Tile::BK + ld.a_ch * 8);
                ld.fcount = Fg - f0;
                ld.b_k = kt0 * Tile::BK + ld.b_row0;
                ld.b_src = ld.w + ld.b_k * z.F + fcol0 + ld.b_ch * 8;

                Tile tile;
                run_pipeline(tile, sm, ld, nkt, warp_m, warp_n, lane);
                const TileAt at = {m0, M, g, f0, Fg, fcol0, bz};
                store(tile, at);
            }
        }
    }
}

// The one-pass epilogue: bias + activation in f32, cast with cvt.rn.{f16,bf16}x2 into the output
// tile in shared memory (over the operand stages, free after run_pipeline's final barrier), then
// rows of 8 filters, one 16-byte store each (8 lanes write a row's 128 contiguous bytes); element
// stores for a row's last partial chunk or an unaligned one (F % 8 != 0).
template <typename T, class Tile>
__device__ __forceinline__ void store_output(const Tile& tile, typename Tile::Shared& sm, const TileAt& at,
                                             const unsigned short* __restrict__ bias16,
                                             unsigned short* __restrict__ y16, int F, int act,
                                             const OutputPlacement& place) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int warp_m = Tile::warp_m_of(warp), warp_n = Tile::warp_n_of(warp);
    Chunk16* out_tile = sm.output_tile();
#pragma unroll
    for (int i = 0; i < Tile::MI; ++i)
#pragma unroll
        for (int half_row = 0; half_row < 2; ++half_row) {
            const int row = Tile::acc_row(warp_m, lane, i, 2 * half_row);
            const bool live = at.m0 + row < at.M;
#pragma unroll
            for (int j = 0; j < Tile::NJ; ++j) {
                const int col = Tile::acc_col(warp_n, lane, j);
                float v[2] = {tile.acc[i][j][2 * half_row], tile.acc[i][j][2 * half_row + 1]};
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    if (!live || at.f0 + col + e >= at.Fg) continue;  // never stored: no bias read past F
                    v[e] = bias_activate<T>(v[e], bias16, at.fcol0 + col + e, act);
                }
                reinterpret_cast<unsigned*>(&out_tile[Tile::out_chunk(row, col >> 3)])[(col & 7) >> 1] =
                    Elem16<T>::pack2(v[0], v[1]);
            }
        }
    __syncthreads();
#pragma unroll
    for (int it = 0; it < Tile::BM * Tile::B_CHUNKS / Tile::THREADS; ++it) {
        const int idx = tid + it * Tile::THREADS;
        const int row = idx / Tile::B_CHUNKS, c = idx % Tile::B_CHUNKS;
        const int m = at.m0 + row, f = at.f0 + c * 8;
        if (m >= at.M || f >= at.Fg) continue;
        const Chunk16 v = out_tile[Tile::out_chunk(row, c)];
        unsigned short* out = y16 + place.pixel(m) * F + at.g * at.Fg + f;
        if (f + 8 <= at.Fg && (reinterpret_cast<unsigned long long>(out) & 15) == 0) {
            *reinterpret_cast<Chunk16*>(out) = v;
        } else {
#pragma unroll
            for (int e = 0; e < 8; ++e)
                if (f + e < at.Fg) out[e] = static_cast<unsigned short>(v.w[e / 2] >> (16 * (e % 2)));
        }
    }
    __syncthreads();  // the next tile's loads rewrite the stages
}

// The split-K epilogue of pass 1: the slice's f32 partial sums, without bias or activation, to
// plane at.slice of the workspace (slices, M, F), straight from the accumulators (a pair of
// adjacent filters per 8-byte store where aligned; a warp's stores cover whole 32-byte sectors).
template <class Tile>
__device__ __forceinline__ void store_partial(const Tile& tile, const TileAt& at, float* __restrict__ ws, int F) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int warp_m = Tile::warp_m_of(warp), warp_n = Tile::warp_n_of(warp);
    float* plane = ws + at.slice * at.M * F;  // < 2**31 elements: the host sizes the split so
#pragma unroll
    for (int i = 0; i < Tile::MI; ++i)
#pragma unroll
        for (int half_row = 0; half_row < 2; ++half_row) {
            const int m = at.m0 + Tile::acc_row(warp_m, lane, i, 2 * half_row);
            if (m >= at.M) continue;
#pragma unroll
            for (int j = 0; j < Tile::NJ; ++j) {
                const int col = Tile::acc_col(warp_n, lane, j);
                const int f = at.f0 + col;
                const float* v = &tile.acc[i][j][2 * half_row];
                float* out = plane + m * F + at.fcol0 + col;
                if (f + 1 < at.Fg && (reinterpret_cast<unsigned long long>(out) & 7) == 0) {
                    *reinterpret_cast<float2*>(out) = make_float2(v[0], v[1]);
                } else {
                    if (f < at.Fg) out[0] = v[0];
                    if (f + 1 < at.Fg) out[1] = v[1];
                }
            }
        }
}

#define GC_IGEMM_SIZE_PARAMS                                                                              \
    int N, int C, int F, int groups, int D, int H, int W, int OD, int OH, int OW, int KD, int KH, int KW, \
        int SD, int SH, int SW, int DD, int DH, int DW, int PD, int PH, int PW
#define GC_IGEMM_SIZES {N, C, F, groups, D, H, W, OD, OH, OW, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW}
// The one-pass kernels' and the split-K sum's OutputPlacement, after the sizes (OD, OH, OW: the grid's).
#define GC_IGEMM_PLACEMENT_PARAMS int strided, int YN, int YD, int YH, int YW, int Y0
#define GC_IGEMM_PLACEMENT {strided, OD, OH, OW, YN, YD, YH, YW, Y0}

// One pass: the whole reduction per CTA tile, bias + activation + cast in its epilogue. The body
// of conv_implicit_gemm (IGEMM_64) and conv_implicit_gemm_128 (IGEMM_128): two kernels rather
// than a config parameter, because each needs its own literal __launch_bounds__.
template <typename T, class Tile, int VEC_A, int VEC_B>
__device__ __forceinline__ void one_pass(typename Tile::Shared& sm, const T* __restrict__ x, const T* __restrict__ w,
                                         const T* __restrict__ bias, T* __restrict__ y, const IgemmSizes& z, int act,
                                         const OutputPlacement& place) {
    const unsigned short* bias16 = reinterpret_cast<const unsigned short*>(bias);
    unsigned short* y16 = reinterpret_cast<unsigned short*>(y);
    const int F = z.F;
    igemm_tiles<T, Tile, VEC_A, VEC_B, false>(sm, x, w, z, 0, [&](const Tile& tile, const TileAt& at) {
        store_output<T>(tile, sm, at, bias16, y16, F, act, place);
    });
}

template <typename T, int VEC_A, int VEC_B>
__global__ void __launch_bounds__(128, IgemmMinBlocks<VEC_A, IGEMM_64>::value)
conv_implicit_gemm(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y,
                   GC_IGEMM_SIZE_PARAMS, int act, GC_IGEMM_PLACEMENT_PARAMS) {
    typedef typename IgemmTileOf<T, IGEMM_64>::type Tile;
    static_assert(Tile::THREADS == 128, "launch bounds assume 128 threads");
    __shared__ typename Tile::Shared sm;
    one_pass<T, Tile, VEC_A, VEC_B>(sm, x, w, bias, y, GC_IGEMM_SIZES, act, GC_IGEMM_PLACEMENT);
}

template <typename T, int VEC_A, int VEC_B>
__global__ void __launch_bounds__(256, IgemmMinBlocks<VEC_A, IGEMM_128>::value)
conv_implicit_gemm_128(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                       T* __restrict__ y, GC_IGEMM_SIZE_PARAMS, int act, GC_IGEMM_PLACEMENT_PARAMS) {
    typedef typename IgemmTileOf<T, IGEMM_128>::type Tile;
    static_assert(Tile::THREADS == 256, "launch bounds assume 256 threads");
    __shared__ typename Tile::Shared sm;
    one_pass<T, Tile, VEC_A, VEC_B>(sm, x, w, bias, y, GC_IGEMM_SIZES, act, GC_IGEMM_PLACEMENT);
}

// Split-K, pass 1 (grid z: the slices): each CTA tile's sums over its slice's k tiles, to the
// slice's plane of the f32 workspace ws (slices, M, F). IGEMM_64 only: the host splits where the
// tiles do not fill a wave, the 128 x 128 tile where they do.
template <typename T, int VEC_A, int VEC_B>
__global__ void __launch_bounds__(128, IgemmMinBlocks<VEC_A, IGEMM_64>::value)
conv_implicit_gemm_partial(const T* __restrict__ x, const T* __restrict__ w, float* __restrict__ ws,
                           GC_IGEMM_SIZE_PARAMS, int k_tiles_per_slice) {
    typedef typename IgemmTileOf<T, IGEMM_64>::type Tile;
    static_assert(Tile::THREADS == 128, "launch bounds assume 128 threads");
    __shared__ typename Tile::Shared sm;
    const IgemmSizes z = GC_IGEMM_SIZES;
    igemm_tiles<T, Tile, VEC_A, VEC_B, true>(sm, x, w, z, k_tiles_per_slice,
                                 [&](const Tile& tile, const TileAt& at) { store_partial(tile, at, ws, F); });
}

#undef GC_IGEMM_SIZE_PARAMS
#undef GC_IGEMM_SIZES

// Split-K, pass 2 (memory-bound): element e = m * F + f of the GEMM's output is
// act(bias[f] + sum over s = 0, 1, ... of ws[s * E + e]), the planes added in slice order
// (bitwise repeatable), E = M * F; stored at pixel place.pixel(m) of y (OD, OH, OW: the grid's).
template <typename T>
__global__ void __launch_bounds__(256)
conv_implicit_gemm_sum(const float* __restrict__ ws, const T* __restrict__ bias, T* __restrict__ y, int E, int F,
                       int slices, int act, int OD, int OH, int OW, GC_IGEMM_PLACEMENT_PARAMS) {
    const unsigned short* bias16 = reinterpret_cast<const unsigned short*>(bias);
    unsigned short* y16 = reinterpret_cast<unsigned short*>(y);
    const OutputPlacement place = GC_IGEMM_PLACEMENT;
    for (int e = grid_start_x<int>(); e < E; e += grid_step_x<int>()) {
        float acc = ws[e];
        for (int s = 1; s < slices; ++s) acc += ws[s * E + e];
        const int m = e / F, f = e - m * F;
        y16[place.strided ? place.pixel(m) * F + f : e] = Elem16<T>::from_float(bias_activate<T>(acc, bias16, f, act));
    }
}

#undef GC_IGEMM_PLACEMENT_PARAMS
#undef GC_IGEMM_PLACEMENT

}  // namespace gc

// conv_direct.cu: grouped, strided, dilated N-d convolution (cross-correlation), rank-generic.
//
//   y[n, o, g*Fg + f] = act(bias[g*Fg + f] + sum_{t, c} x[n, o*s - pad + t*d, g*Cg + c] * w[t, c, g*Fg + f])
//
// 1-D and 2-D convolutions run as 3-D ones with leading spatial sizes of 1. Padding ('same',
// causal, asymmetric) is never materialised: a tap that lands outside the input reads a literal
// zero (so a NaN or Inf weight still poisons the output there, as NumPy's padded oracle does).
//
// Work split (see tile_fma.cuh): CTA = BM output pixels x BN output channels of one group;
// reduction chunks = one tap x BK input channels, so the tap's spatial offsets are uniform per
// chunk and each load is one bounds check plus an add. Per-tile pixel coordinates are decoded
// once into shared memory. Loads are coalesced along channels (channels_last) or along pixels
// (channels_first). Grid: x over pixel tiles, y over (group, channel tile); both grid-stride.
//
// Template parameters: T (float, gc::half, double), LAYOUT (gc::Layout), Index (int, long long),
// SHAPE (gc::TileShape). Activation is a run-time argument (common.cuh explains why).
#include "common.cuh"
#include "tile_fma.cuh"

namespace gc {

template <typename Index>
struct PixelRec {
    Index base;     // offset of (n, 0, 0, 0, channel 0); -1 marks a row past the last pixel
    Index d, h, w;  // top-left-front input coordinate of the window (may be negative: padding)
};

template <typename T, int LAYOUT, typename Index, class Tile>
struct DirectLoader {
    typedef typename Traits<T>::acc_t Acc;
    static constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, NT = Tile::THREADS;
    static constexpr int A_LOADS = BM * BK / NT;
    static constexpr int B_LOADS = BN * BK / NT;

    const T* __restrict__ x;
    const T* __restrict__ w;
    const PixelRec<Index>* pix;  // shared memory, BM records
    Index C, F, Cg, cin0, fcol0, fcount;  // fcol0: first absolute output channel of the tile
    Index D, H, W, DHW;
    Index KH, KW, DD, DH, DW;
    Index n_cchunks;
    int tid;
    Acc ra[A_LOADS];
    Acc rb[B_LOADS];

    // (kk, m) of this thread's r-th input element: channel-fastest for channels_last (coalesced
    // along C), pixel-fastest for channels_first (coalesced along W).
    __device__ __forceinline__ void a_coord(int r, int& kk, int& m) const {
        if (LAYOUT == CHANNELS_LAST) {
            kk = tid % BK;
            m = tid / BK + r * (NT / BK);
        } else {
            m = tid % BM;
            kk = tid / BM + r * (NT / BM);
        }
    }

    __device__ __forceinline__ void b_coord(int r, int& kk, int& bn) const {
        bn = tid % BN;
        kk = tid / BN + r * (NT / BN);
    }

    __device__ __forceinline__ void fetch(int q) {
        const Index t = Index(q) / n_cchunks;
        const Index c0 = (Index(q) - t * n_cchunks) * BK;
        const Index kw = t % KW;
        const Index t2 = t / KW;
        const Index kh = t2 % KH;
        const Index kd = t2 / KH;
        const Index od = kd * DD, oh = kh * DH, ow = kw * DW;
#pragma unroll
        for (int r = 0; r < A_LOADS; ++r) {
            int kk, m;
            a_coord(r, kk, m);
            const Index c = c0 + kk;
            const PixelRec<Index> p = pix[m];
            const Index id = p.d + od, ih = p.h + oh, iw = p.w + ow;
            Acc v = Acc(0);
            if (p.base >= 0 && c < Cg && id >= 0 && id < D && ih >= 0 && ih < H && iw >= 0 && iw < W) {
                const Index sp = (id * H + ih) * W + iw;
                const Index off = LAYOUT == CHANNELS_LAST ? p.base + sp * C + cin0 + c : p.base + (cin0 + c) * DHW + sp;
                v = load_acc(x + off);
            }
            ra[r] = v;
        }
#pragma unroll
        for (int r = 0; r < B_LOADS; ++r) {
            int kk, bn;
            b_coord(r, kk, bn);
            const Index c = c0 + kk;
            Acc v = Acc(0);
            if (c < Cg && bn < fcount) v = load_acc(w + (t * Cg + c) * F + fcol0 + bn);
            rb[r] = v;
        }
    }

    __device__ __forceinline__ void stash(Acc* As, Acc* Bs) const {
#pragma unroll
        for (int r = 0; r < A_LOADS; ++r) {
            int kk, m;
            a_coord(r, kk, m);
            As[kk * Tile::LDA + m] = ra[r];
        }
#pragma unroll
        for (int r = 0; r < B_LOADS; ++r) {
            int kk, bn;
            b_coord(r, kk, bn);
            Bs[kk * Tile::LDB + bn] = rb[r];
        }
    }
};

template <typename T, int LAYOUT, typename Index, int SHAPE>
__global__ void __launch_bounds__(256, MinBlocks<T, Index>::value)
conv_direct(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y,
            Index N, Index C, Index F, Index groups,
            Index D, Index H, Index W, Index OD, Index OH, Index OW,
            Index KD, Index KH, Index KW,
            Index SD, Index SH, Index SW, Index DD, Index DH, Index DW,
            Index PD, Index PH, Index PW, int act) {
    typedef typename Traits<T>::acc_t Acc;
    typedef typename TileOf<Acc, SHAPE>::type Tile;
    static_assert(Tile::THREADS == 256, "launch bounds assume 256 threads");
    constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, TM = Tile::TM, TN = Tile::TN;

    __shared__ typename Tile::Shared sm;
    __shared__ PixelRec<Index> pix[BM];

    const int tid = threadIdx.x;
    const Index Cg = C / groups, Fg = F / groups;
    const Index P = OD * OH * OW, M = N * P, DHW = D * H * W;
    const Index T_taps = KD * KH * KW;
    const Index n_cchunks = ceil_div<Index>(Cg, BK);
    const int nq = int(T_taps * n_cchunks);
    const Index m_tiles = ceil_div<Index>(M, BM);
    const Index f_tiles = ceil_div<Index>(Fg, BN);
    const Index col_tiles = groups * f_tiles;

    int tm, tn;
    tile_coords<Tile, LAYOUT == CHANNELS_FIRST>(tid, tm, tn);

    for (Index by = blockIdx.y; by < col_tiles; by += gridDim.y) {
        const Index g = by / f_tiles;
        const Index f0 = (by - g * f_tiles) * BN;
        for (Index bx = blockIdx.x; bx < m_tiles; bx += gridDim.x) {
            const Index m0 = bx * BM;
            for (int i = tid; i < BM; i += Tile::THREADS) {
                const Index m = m0 + i;
                PixelRec<Index> p;
                if (m < M) {
                    Index r = m;
                    const Index ow = r % OW; r /= OW;
                    const Index oh = r % OH; r /= OH;
                    const Index od = r % OD;
                    const Index n = r / OD;
                    p.base = n * DHW * C;
                    p.d = od * SD - PD;
                    p.h = oh * SH - PH;
                    p.w = ow * SW - PW;
                } else {
                    p.base = -1;
                    p.d = p.h = p.w = 0;
                }
                pix[i] = p;
            }
            __syncthreads();

            DirectLoader<T, LAYOUT, Index, Tile> ld;
            ld.x = x; ld.w = w; ld.pix = pix;
            ld.C = C; ld.F = F; ld.Cg = Cg; ld.cin0 = g * Cg;
            ld.fcol0 = g * Fg + f0; ld.fcount = Fg - f0;
            ld.D = D; ld.H = H; ld.W = W; ld.DHW = DHW;
            ld.KH = KH; ld.KW = KW; ld.DD = DD; ld.DH = DH; ld.DW = DW;
            ld.n_cchunks = n_cchunks;
            ld.tid = tid;

            Tile tile;
            tile.run(sm, ld, nq, tm, tn);

            // Epilogue: bias + activation, cast, store. Rows are output pixels, columns channels.
#pragma unroll
            for (int i = 0; i < TM; ++i) {
                const Index m = m0 + tm * TM + i;
                if (m >= M) continue;
                const Index n = m / P;
                const Index p = m - n * P;
#pragma unroll
                for (int j = 0; j < TN; ++j) {
                    const Index f = f0 + tn * TN + j;
                    if (f >= Fg) continue;
                    const Index fo = g * Fg + f;
                    const Acc v = epilogue<T>(tile.acc[i][j], bias, fo, act);
                    const Index off = LAYOUT == CHANNELS_LAST ? m * F + fo : (n * F + fo) * P + p;
                    store_from_acc(y + off, v);
                }
            }
            __syncthreads();  // the next tile rewrites pix[]
        }
    }
}

}  // namespace gc

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

template <typename T, int LAYOUT, typename Index, class Tile>
struct DirectLoader : LoaderBase<T, LAYOUT, Index, Tile> {
    typedef LoaderBase<T, LAYOUT, Index, Tile> Base;
    typedef typename Base::Acc Acc;
    static constexpr int BN = Tile::BN, NT = Tile::THREADS;

    const T* __restrict__ w;
    Index F, fcol0, fcount;  // fcol0: first absolute output channel of the tile
    Index KH, KW, DD, DH, DW;
    Index n_cchunks;

    // Weights are (t, c, f): coalesced along f, so channel-fastest.
    __device__ __forceinline__ void b_coord(int r, int& kk, int& bn) const {
        bn = this->tid % BN;
        kk = this->tid / BN + r * (NT / BN);
    }

    __device__ __forceinline__ void fetch(int q) {
        const Index t = Index(q) / n_cchunks;
        const Index c0 = (Index(q) - t * n_cchunks) * Base::BK;
        const Index kw = t % KW;
        const Index t2 = t / KW;
        const Index kh = t2 % KH;
        const Index kd = t2 / KH;
        this->fetch_input(c0, kd * DD, kh * DH, kw * DW);
#pragma unroll
        for (int r = 0; r < Base::B_LOADS; ++r) {
            int kk, bn;
            b_coord(r, kk, bn);
            const Index c = c0 + kk;
            Acc v = Acc(0);
            if (c < this->Cg && bn < fcount) v = load_acc(w + (t * this->Cg + c) * F + fcol0 + bn);
            this->rb[r] = v;
        }
    }

    __device__ __forceinline__ void stash(Acc* As, Acc* Bs) const { this->stash_as(*this, As, Bs); }
};

template <typename T, int LAYOUT, typename Index, int SHAPE>
__global__ void __launch_bounds__(256, MinBlocks<T, Index>::value)
conv_direct(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y,
            Index N, Index C, Index F, Index groups,
            Index D, Index H, Index W, Index OD, Index OH, Index OW,
            Index KD, Index KH, Index KW,
            Index SD, Index SH, Index SW, Index DD, Index DH, Index DW,
            Index PD, Index PH, Index PW, int act,
            const T* __restrict__ x_out, int x_act) {
    typedef typename Traits<T>::acc_t Acc;
    typedef typename TileOf<Acc, SHAPE>::type Tile;
    static_assert(Tile::THREADS == 256, "launch bounds assume 256 threads");
    constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK;

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
            fill_pixels<Tile>(pix, m0, M, tid, [&](Index m) {
                Index r = m;
                const Index ow = r % OW; r /= OW;
                const Index oh = r % OH; r /= OH;
                const Index od = r % OD;
                const Index n = r / OD;
                PixelRec<Index> p;
                p.base = n * DHW * C;
                p.d = od * SD - PD;
                p.h = oh * SH - PH;
                p.w = ow * SW - PW;
                return p;
            });
            __syncthreads();

            DirectLoader<T, LAYOUT, Index, Tile> ld;
            ld.x = x; ld.x_out = x_out; ld.x_act = x_act; ld.w = w; ld.pix = pix;
            ld.C = C; ld.F = F; ld.Cg = Cg; ld.cin0 = g * Cg;
            ld.fcol0 = g * Fg + f0; ld.fcount = Fg - f0;
            ld.D = D; ld.H = H; ld.W = W; ld.DHW = DHW;
            ld.KH = KH; ld.KW = KW; ld.DD = DD; ld.DH = DH; ld.DW = DW;
            ld.n_cchunks = n_cchunks;
            ld.tid = tid;

            Tile tile;
            tile.run(sm, ld, nq, tm, tn);

            // Epilogue: bias + activation, cast, store. Rows are output pixels, columns channels.
            store_tile<T, LAYOUT>(tile, y, bias, act, m0, M, tm, tn, g, f0, Fg, F, P, [&](Index m, Index& n, Index& s) {
                n = m / P;
                s = m - n * P;
            });
            __syncthreads();  // the next tile rewrites pix[]
        }
    }
}

}  // namespace gc

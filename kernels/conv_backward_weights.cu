// conv_backward_weights.cu: the weight gradient of conv_direct.cu's convolution, deterministic.
//
//   dW[t, c, g*Fg + f] = sum_{n, o} x[n, o*s + t*d - pad, g*Cg + c] * dy[n, o, g*Fg + f]
//
// With a fused activation (act = ACT_RELU / ACT_RELU6, y the forward's output) dy is read as
// dy * act'(y) (common.cuh output_derivative): the derivative costs one more load per dy element
// here instead of a separate elementwise pass and a masked copy of dy. x_act / x_out do the same
// for the x operand: the kernel gradient of a transposed convolution with a fused activation is
// this kernel with the roles exchanged, x being that op's output gradient.
//
// An implicit GEMM per group: rows = (tap, channel) pairs t*Cg + c (the kernel's own row order),
// columns = the group's filters, reduction = the N*P (batch x output pixel) positions in chunks
// of BK positions. It runs on tile_fma.cuh's engine (TileFMA::run, store_tile) with its own
// loader, because here the pixels are the reduction axis rather than the rows.
//
// Determinism without atomics: the reduction is cut into a fixed number of slices (grid z; the
// host chooses it from the problem and the SM count, gpuconv/cuda/conv_backward.py), each slice
// writes its partial tile to its own plane of a workspace in the accumulation type, and
// wgrad_sum adds the planes in slice order and casts. A slice is a whole number of chunks, so
// only the reduction's last chunk is partial.
//
// Shared tables. Each CTA decodes its rows once into `rows` (PixelRec: base = the channel's
// offset within an image, d/h/w = the tap's dilated offsets). The chunk's BK positions are decoded
// into a double-buffered table: chunk j's lives in slot j & 1 and is written by the first BK
// threads while they stash chunk j - 1, so it is visible after that chunk's barrier, before
// fetch(j) reads it; slot j & 1 was last read by fetch(j - 2), before the previous barrier.
//
// Template parameters: T (float, gc::half, double), LAYOUT (gc::Layout), Index (int, long long),
// SHAPE (gc::TileShape); wgrad_sum<T, Index>.
#include "common.cuh"
#include "tile_fma.cuh"

namespace gc {

// LoaderBase gives the registers, x, the input extents and the stash; its `pix` holds this
// loader's BM row records (Cg and cin0 are unused: a row record carries its channel). a_coord
// shadows the base's, because here the rows, not the reduction, run along the input's channels.
template <typename T, int LAYOUT, typename Index, class Tile>
struct WgradLoader : LoaderBase<T, LAYOUT, Index, Tile> {
    typedef LoaderBase<T, LAYOUT, Index, Tile> Base;
    typedef typename Base::Acc Acc;
    static constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, NT = Tile::THREADS;
    static_assert(NT % BM == 0 && NT % BN == 0 && NT % BK == 0, "thread maps must divide");

    const T* __restrict__ dy;
    const T* __restrict__ yo;     // the forward output, read only when act != ACT_LINEAR
    int act;                      // the fused activation whose derivative dy is multiplied by
    PixelRec<Index>* pos;         // shared, 2 x BK records: x image base (-1: past the end), window origin
    Index* dyoff;                 // shared, 2 x BK: the position's dy offset at channel 0
    Index F, P, K;                // K = N * P positions
    Index fcol0, fcount;
    Index OD, OH, OW, SD, SH, SW, PD, PH, PW;
    Index k0;                     // the slice's first position
    int last;                     // the relative chunk fetched most recently

    // Input chunk: coalesced along channels (rows) for channels_last, along positions otherwise.
    __device__ __forceinline__ void a_coord(int r, int& kk, int& m) const {
        if (LAYOUT == CHANNELS_LAST) {
            m = this->tid % BM;
            kk = this->tid / BM + r * (NT / BM);
        } else {
            kk = this->tid % BK;
            m = this->tid / BK + r * (NT / BK);
        }
    }

    // Output gradient chunk: along filters for channels_last, along positions otherwise.
    __device__ __forceinline__ void b_coord(int r, int& kk, int& bn) const {
        if (LAYOUT == CHANNELS_LAST) {
            bn = this->tid % BN;
            kk = this->tid / BN + r * (NT / BN);
        } else {
            kk = this->tid % BK;
            bn = this->tid / BK + r * (NT / BK);
        }
    }

    // Table slot `slot` <- the positions of relative chunk q (threads tid < BK, one each).
    __device__ __forceinline__ void decode(int q, int slot) const {
        const int tid = this->tid;
        if (tid >= BK) return;
        const Index k = k0 + Index(q) * BK + tid;
        PixelRec<Index> p;
        Index off = 0;
        if (k < K) {
            Index r = k;
            const Index ow = r % OW; r /= OW;
            const Index oh = r % OH; r /= OH;
            const Index od = r % OD;
            const Index n = r / OD;
            p.base = n * this->DHW * this->C;
            p.d = od * SD - PD;
            p.h = oh * SH - PH;
            p.w = ow * SW - PW;
            off = LAYOUT == CHANNELS_LAST ? k * F : n * F * P + (k - n * P);
        } else {
            p.base = -1;
            p.d = p.h = p.w = 0;
        }
        pos[slot * BK + tid] = p;
        dyoff[slot * BK + tid] = off;
    }

    __device__ __forceinline__ void fetch(int q) {
        last = q;
        const PixelRec<Index>* pt = pos + (q & 1) * BK;
        const Index* dt = dyoff + (q & 1) * BK;
#pragma unroll
        for (int r = 0; r < Base::A_LOADS; ++r) {
            int kk, m;
            a_coord(r, kk, m);
            const PixelRec<Index> p = pt[kk];
            const PixelRec<Index> row = this->pix[m];
            const Index id = p.d + row.d, ih = p.h + row.h, iw = p.w + row.w;
            Acc v = Acc(0);
            if (p.base >= 0 && row.base >= 0 && id >= 0 && id < this->D && ih >= 0 && ih < this->H && iw >= 0 &&
                iw < this->W) {
                const Index sp = (id * this->H + ih) * this->W + iw;
                const Index cl_off = p.base + sp * this->C + row.base, cf_off = p.base + row.base + sp;
                const Index off = LAYOUT == CHANNELS_LAST ? cl_off : cf_off;
                v = load_acc(this->x + off);
                if (this->x_act != ACT_LINEAR) v *= output_derivative(this->x_act, load_acc(this->x_out + off));
            }
            this->ra[r] = v;
        }
#pragma unroll
        for (int r = 0; r < Base::B_LOADS; ++r) {
            int kk, bn;
            b_coord(r, kk, bn);
            Acc v = Acc(0);
            if (pt[kk].base >= 0 && bn < fcount) {
                const Index f = fcol0 + bn;
                const Index o = dt[kk] + (LAYOUT == CHANNELS_LAST ? f : f * P);
                v = load_acc(dy + o);
                if (act != ACT_LINEAR) v *= output_derivative(act, load_acc(yo + o));
            }
            this->rb[r] = v;
        }
    }

    // registers -> shared memory, and the position table of the chunk after the stashed one.
    __device__ __forceinline__ void stash(Acc* As, Acc* Bs) const {
        this->stash_as(*this, As, Bs);
        decode(last + 1, (last + 1) & 1);
    }
};

// Pass 1: grid x over row tiles of the T*Cg rows, y over (group, filter tile), z over slices;
// every axis grid-strides. Slice z covers chunks [z * chunks_per_slice, ...) of the reduction and
// writes rows (t, c), columns g*Fg + f of workspace plane z, (slices, T*Cg, F) in Acc.
template <typename T, int LAYOUT, typename Index, int SHAPE>
__global__ void __launch_bounds__(256, MinBlocks<T, Index>::value)
conv_wgrad(const T* __restrict__ x, const T* __restrict__ x_out, int x_act,
           const T* __restrict__ dy, const T* __restrict__ yo, int act,
           typename Traits<T>::acc_t* __restrict__ ws, Index N, Index C, Index F, Index groups,
           Index D, Index H, Index W, Index OD, Index OH, Index OW,
           Index KD, Index KH, Index KW,
           Index SD, Index SH, Index SW, Index DD, Index DH, Index DW,
           Index PD, Index PH, Index PW, Index slices, Index chunks_per_slice) {
    typedef typename Traits<T>::acc_t Acc;
    typedef typename TileOf<Acc, SHAPE>::type Tile;
    static_assert(Tile::THREADS == 256, "launch bounds assume 256 threads");
    constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK;

    __shared__ typename Tile::Shared sm;
    __shared__ PixelRec<Index> rows[BM];
    __shared__ PixelRec<Index> pos[2 * BK];
    __shared__ Index dyoff[2 * BK];

    const int tid = threadIdx.x;
    const Index Cg = C / groups, Fg = F / groups;
    const Index P = OD * OH * OW, K = N * P, DHW = D * H * W;
    const Index Mrows = KD * KH * KW * Cg;
    const Index chunks = ceil_div<Index>(K, BK);
    const Index m_tiles = ceil_div<Index>(Mrows, BM);
    const Index f_tiles = ceil_div<Index>(Fg, BN);
    const Index col_tiles = groups * f_tiles;

    int tm, tn;
    tile_coords<Tile, false>(tid, tm, tn);  // column-fast: coalesced stores along F

    for (Index bz = blockIdx.z; bz < slices; bz += gridDim.z) {
        const Index q0 = bz * chunks_per_slice;
        const Index q1 = q0 + chunks_per_slice < chunks ? q0 + chunks_per_slice : chunks;
        const int nq = q1 > q0 ? int(q1 - q0) : 0;
        for (Index by = blockIdx.y; by < col_tiles; by += gridDim.y) {
            const Index g = by / f_tiles;
            const Index f0 = (by - g * f_tiles) * BN;
            for (Index bx = blockIdx.x; bx < m_tiles; bx += gridDim.x) {
                const Index m0 = bx * BM;
                fill_pixels<Tile>(rows, m0, Mrows, tid, [&](Index m) {
                    const Index t = m / Cg;
                    const Index c = m - t * Cg;
                    const Index kw = t % KW;
                    const Index t2 = t / KW;
                    PixelRec<Index> p;
                    p.base = LAYOUT == CHANNELS_LAST ? g * Cg + c : (g * Cg + c) * DHW;
                    p.d = (t2 / KH) * DD;
                    p.h = (t2 % KH) * DH;
                    p.w = kw * DW;
                    return p;
                });

                WgradLoader<T, LAYOUT, Index, Tile> ld;
                ld.x = x; ld.x_out = x_out; ld.x_act = x_act; ld.dy = dy; ld.yo = yo; ld.act = act; ld.pix = rows; ld.pos = pos; ld.dyoff = dyoff;
                ld.C = C; ld.F = F; ld.P = P; ld.K = K;
                ld.fcol0 = g * Fg + f0; ld.fcount = Fg - f0;
                ld.D = D; ld.H = H; ld.W = W; ld.DHW = DHW; ld.OD = OD; ld.OH = OH; ld.OW = OW;
                ld.SD = SD; ld.SH = SH; ld.SW = SW; ld.PD = PD; ld.PH = PH; ld.PW = PW;
                ld.k0 = q0 * BK;
                ld.tid = tid;
                ld.last = -1;
                ld.decode(0, 0);
                __syncthreads();

                Tile tile;
                tile.run(sm, ld, nq, tm, tn);

                // The slice's partial sums, unscaled and uncast: rows m -> plane bz, row m.
                store_tile<Acc, CHANNELS_LAST>(tile, ws, static_cast<const Acc*>(nullptr), int(ACT_LINEAR), m0,
                                               Mrows, tm, tn, g, f0, Fg, F, Index(1),
                                               [&](Index m, Index& n, Index& s) {
                                                   n = bz * Mrows + m;
                                                   s = 0;
                                               });
                __syncthreads();  // the next tile rewrites rows[] and the position table
            }
        }
    }
}

// Pass 2: dw[e] = sum over s = 0, 1, ... of ws[s * E + e], in that order, cast to T.
template <typename T, typename Index>
__global__ void __launch_bounds__(256)
wgrad_sum(const typename Traits<T>::acc_t* __restrict__ ws, T* __restrict__ dw, Index E, Index slices) {
    typedef typename Traits<T>::acc_t Acc;
    for (Index e = grid_start_x<Index>(); e < E; e += grid_step_x<Index>()) {
        Acc acc = ws[e];
        for (Index s = 1; s < slices; ++s) acc += ws[s * E + e];
        store_from_acc(dw + e, acc);
    }
}

}  // namespace gc

// tile_fma.cuh: the SIMT output-tile engine shared by conv_direct.cu and conv_transpose.cu
// (TileFMA, LoaderBase, fill_pixels, store_tile).
//
// The convolutions are run as implicit GEMMs: rows = output pixels (BM per CTA), columns =
// output channels of one group (BN per CTA), reduction = taps x input channels of the group in
// chunks of BK channels of one tap. A kernel supplies a Loader that knows its geometry:
//     fetch(q)          global memory -> registers for reduction chunk q (zeros where out of range)
//     stash(As, Bs)     registers -> shared memory, As[BK][LDA] (k-major pixels), Bs[BK][LDB]
// and this engine runs the double-buffered loop: chunk q+1 is in flight from global memory
// while chunk q is multiplied out of shared memory, with one barrier per chunk.
//
// Taps outside the input. conv_direct's loader zero-fills them: a padded cell is a literal zero
// times its weight (the np.pad oracle), so a NaN/Inf weight poisons the border as it does there.
// A transposed convolution scatters: an output gets contributions only from the input pixels that
// reach it, so such a tap must contribute nothing, not 0 * w (which is NaN for w = NaN or Inf).
// A loader declaring SKIPS_OUTSIDE_TAPS keeps in `live` a TM-bit mask of the thread's tile rows
// that its last fetched chunk reaches; the engine multiplies the whole register tile when all are
// reached (nearly every chunk), skips the chunk when none is, and masks rows otherwise.
//
// Each thread owns a TM x TN register tile of contiguous rows and columns, so its per-chunk
// fragments are read with 16-byte shared loads (float4 / double2): TM/4 + TN/4 loads feed TM*TN
// FMAs. Row pitches carry a 4-element pad: it keeps rows 16-byte aligned for those loads and
// breaks the 32-way bank conflict a k-fastest stash into a 64-wide row would otherwise cause.
#pragma once
#include "common.cuh"

namespace gc {

// N contiguous values from 16-byte aligned shared memory.
template <int N>
__device__ __forceinline__ void lds(float (&dst)[N], const float* src) {
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int i = 0; i < N / 4; ++i) {
            float4 v = reinterpret_cast<const float4*>(src)[i];
            dst[4 * i] = v.x; dst[4 * i + 1] = v.y; dst[4 * i + 2] = v.z; dst[4 * i + 3] = v.w;
        }
    } else if constexpr (N % 2 == 0) {
#pragma unroll
        for (int i = 0; i < N / 2; ++i) {
            float2 v = reinterpret_cast<const float2*>(src)[i];
            dst[2 * i] = v.x; dst[2 * i + 1] = v.y;
        }
    } else {
#pragma unroll
        for (int i = 0; i < N; ++i) dst[i] = src[i];
    }
}

template <int N>
__device__ __forceinline__ void lds(double (&dst)[N], const double* src) {
    if constexpr (N % 2 == 0) {
#pragma unroll
        for (int i = 0; i < N / 2; ++i) {
            double2 v = reinterpret_cast<const double2*>(src)[i];
            dst[2 * i] = v.x; dst[2 * i + 1] = v.y;
        }
    } else {
#pragma unroll
        for (int i = 0; i < N; ++i) dst[i] = src[i];
    }
}

template <typename Acc, int BM_, int BN_, int BK_, int TM_, int TN_>
struct TileFMA {
    static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
    static constexpr int THREADS = (BM / TM) * (BN / TN);
    static constexpr int PAD = 4;
    static constexpr int LDA = BM + PAD;
    static constexpr int LDB = BN + PAD;
    static constexpr int A_STAGE = BK * LDA;  // elements of one As buffer
    static constexpr int B_STAGE = BK * LDB;
    static_assert(BM % TM == 0 && BN % TN == 0, "tile must divide");
    static_assert((BM * BK) % THREADS == 0 && (BN * BK) % THREADS == 0, "loads must divide evenly");

    struct Shared {
        __align__(16) Acc a[2][A_STAGE];
        __align__(16) Acc b[2][B_STAGE];
    };

    Acc acc[TM][TN];

    __device__ __forceinline__ void zero() {
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = Acc(0);
    }

    // acc += As^T Bs over one BK chunk; (tm, tn) is the thread's tile coordinate.
    __device__ __forceinline__ void multiply(const Acc* As, const Acc* Bs, int tm, int tn) {
#pragma unroll 4
        for (int kk = 0; kk < BK; ++kk) {
            Acc a[TM], b[TN];
            lds<TM>(a, As + kk * LDA + tm * TM);
            lds<TN>(b, Bs + kk * LDB + tn * TN);
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = m_fma(a[i], b[j], acc[i][j]);
        }
    }

    // multiply() restricted to the rows i with bit i of `rows` set (the others get nothing).
    __device__ __forceinline__ void multiply_rows(const Acc* As, const Acc* Bs, int tm, int tn, unsigned rows) {
#pragma unroll 1
        for (int kk = 0; kk < BK; ++kk) {
            Acc a[TM], b[TN];
            lds<TM>(a, As + kk * LDA + tm * TM);
            lds<TN>(b, Bs + kk * LDB + tn * TN);
#pragma unroll
            for (int i = 0; i < TM; ++i)
                if (rows & (1u << i))
#pragma unroll
                    for (int j = 0; j < TN; ++j) acc[i][j] = m_fma(a[i], b[j], acc[i][j]);
        }
    }

    static constexpr unsigned ALL_ROWS = (1u << TM) - 1u;

    // The double-buffered reduction over chunks [0, nq). Ends with a barrier, so the caller may
    // reuse shared memory (its own tables included) right after. Every thread reaches every
    // barrier: a skipped chunk skips only the thread's arithmetic, never its loads or barriers.
    template <class Loader>
    __device__ __forceinline__ void run(Shared& sm, Loader& ld, int nq, int tm, int tn) {
        zero();
        if (nq <= 0) return;
        ld.fetch(0);
        ld.stash(sm.a[0], sm.b[0]);
        __syncthreads();
        for (int q = 0; q < nq; ++q) {
            const int cur = q & 1;
            const bool more = q + 1 < nq;
            if constexpr (Loader::SKIPS_OUTSIDE_TAPS) {
                const unsigned rows = ld.live;  // chunk q's, read before fetch(q + 1) replaces it
                if (more) ld.fetch(q + 1);
                if (rows == ALL_ROWS)
                    multiply(sm.a[cur], sm.b[cur], tm, tn);
                else if (rows != 0u)
                    multiply_rows(sm.a[cur], sm.b[cur], tm, tn, rows);
            } else {
                if (more) ld.fetch(q + 1);
                multiply(sm.a[cur], sm.b[cur], tm, tn);
            }
            if (more) ld.stash(sm.a[cur ^ 1], sm.b[cur ^ 1]);
            __syncthreads();
        }
    }
};

// Thread -> (tm, tn) of the register tile. ROWS_FAST puts consecutive threads on consecutive
// row groups (pixels: coalesced channels_first stores); otherwise on column groups (channels:
// coalesced channels_last stores).
template <class Tile, bool ROWS_FAST>
__device__ __forceinline__ void tile_coords(int tid, int& tm, int& tn) {
    if (ROWS_FAST) {
        tm = tid % (Tile::BM / Tile::TM);
        tn = tid / (Tile::BM / Tile::TM);
    } else {
        tn = tid % (Tile::BN / Tile::TN);
        tm = tid / (Tile::BN / Tile::TN);
    }
}

// One output pixel of a CTA's tile, decoded once into shared memory by the kernel.
template <typename Index>
struct PixelRec {
    Index base;     // offset of (n, 0, 0, 0, channel 0) in x; -1 marks a row past the last pixel
    Index d, h, w;  // the kernel's input-coordinate origin of the pixel (conv_direct: window corner,
                    // may be negative; conv_transpose: q per dim, the input index is q - e(t))
};

// Fills pix[0, BM) for the tile starting at output row m0 of M: decode(m) gives the record of a
// live row, rows past M are marked with base = -1.
template <class Tile, typename Index, class Decode>
__device__ __forceinline__ void fill_pixels(PixelRec<Index>* pix, Index m0, Index M, int tid, Decode decode) {
    for (int i = tid; i < Tile::BM; i += Tile::THREADS) {
        const Index m = m0 + i;
        PixelRec<Index> p;
        if (m < M) {
            p = decode(m);
        } else {
            p.base = -1;
            p.d = p.h = p.w = 0;
        }
        pix[i] = p;
    }
}

// What the convolution loaders share: the fetch registers, the thread -> (k, pixel) map of the
// input chunk, the guarded input gather, and the stash into shared memory. A loader derives from
// it, adds its weight indexing (b_coord, fetch) and the geometry its fetch needs.
//
// The input may be an output gradient dy whose forward op fused a relu or relu6 (the input
// gradient of such a convolution, run as this engine's transposed convolution, and the other way
// round): with x_act = ACT_RELU / ACT_RELU6 each loaded element is multiplied by act'(y), y at
// the same offset of x_out (common.cuh output_derivative), so no masked copy of dy is made.
// x_act = ACT_LINEAR (every forward launch) loads x alone.
template <typename T, int LAYOUT, typename Index, class Tile>
struct LoaderBase {
    typedef typename Traits<T>::acc_t Acc;
    static constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, NT = Tile::THREADS;
    // false: a tap outside the input is a zero-filled load times its weight (see the top of the file).
    static constexpr bool SKIPS_OUTSIDE_TAPS = false;
    static constexpr int A_LOADS = BM * BK / NT;
    static constexpr int B_LOADS = BN * BK / NT;

    const T* __restrict__ x;
    const T* __restrict__ x_out;  // the forward output whose activation's derivative applies to x
    int x_act;                    // that activation's code, ACT_LINEAR for none
    const PixelRec<Index>* pix;  // shared memory, BM records
    Index C, Cg, cin0;           // cin0: first absolute input channel of the group
    Index D, H, W, DHW;
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

    // ra <- the input chunk of channels c0.. at each pixel record's origin moved by (od, oh, ow);
    // zeros outside the input (padding) and past the group's channels or the last pixel.
    __device__ __forceinline__ void fetch_input(Index c0, Index od, Index oh, Index ow) {
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
                if (x_act != ACT_LINEAR) v *= output_derivative(x_act, load_acc(x_out + off));
            }
            ra[r] = v;
        }
    }

    // registers -> shared memory; b_coord is the derived loader's weight map, a_coord this one's
    // unless the derived loader maps its input chunk otherwise (conv_backward_weights.cu).
    template <class Self>
    __device__ __forceinline__ void stash_as(const Self& self, Acc* As, Acc* Bs) const {
#pragma unroll
        for (int r = 0; r < A_LOADS; ++r) {
            int kk, m;
            self.a_coord(r, kk, m);
            As[kk * Tile::LDA + m] = ra[r];
        }
#pragma unroll
        for (int r = 0; r < B_LOADS; ++r) {
            int kk, bn;
            self.b_coord(r, kk, bn);
            Bs[kk * Tile::LDB + bn] = rb[r];
        }
    }
};

// The epilogue of both convolutions: bias + activation, cast, store of the thread's TM x TN
// tile. Rows are output pixels m0 + tm*TM + i < M, columns channels f0 + tn*TN + j < Fg of group
// g. row_pixel(m, n, s) gives row m's batch item n and spatial offset s among S output pixels.
template <typename T, int LAYOUT, class Tile, typename Index, class RowPixel>
__device__ __forceinline__ void store_tile(const Tile& tile, T* __restrict__ y, const T* __restrict__ bias, int act,
                                           Index m0, Index M, int tm, int tn, Index g, Index f0, Index Fg, Index F,
                                           Index S, RowPixel row_pixel) {
    typedef typename Traits<T>::acc_t Acc;
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
        const Index m = m0 + tm * Tile::TM + i;
        if (m >= M) continue;
        Index n, s;
        row_pixel(m, n, s);
#pragma unroll
        for (int j = 0; j < Tile::TN; ++j) {
            const Index f = f0 + tn * Tile::TN + j;
            if (f >= Fg) continue;
            const Index fo = g * Fg + f;
            const Acc v = epilogue<T>(tile.acc[i][j], bias, fo, act);
            const Index off = LAYOUT == CHANNELS_LAST ? (n * S + s) * F + fo : (n * F + fo) * S + s;
            store_from_acc(y + off, v);
        }
    }
}

// The tile shapes the host may choose (gpuconv/cuda/algorithms.py names them by the same ids).
//   WIDE:   64 pixels x 64 channels, 4x4 per thread: dense layers with >= 64 channels per group.
//   NARROW: 256 pixels x 16 channels, 8x2 per thread: grouped layers with few channels per group.
enum TileShape { TILE_WIDE = 0, TILE_NARROW = 1 };

template <typename Acc, int SHAPE>
struct TileOf;
template <typename Acc>
struct TileOf<Acc, TILE_WIDE> {
    typedef TileFMA<Acc, 64, 64, 16, 4, 4> type;
};
template <typename Acc>
struct TileOf<Acc, TILE_NARROW> {
    typedef TileFMA<Acc, 256, 16, 16, 8, 2> type;
};

// Blocks per SM the register budget is sized for (__launch_bounds__). Two 256-thread CTAs
// (<= 128 registers) for float accumulation with 32-bit indices, the variants that carry the
// speed. One (<= 255 registers) for double (its 4x4 tile alone is 32 register pairs) and for
// 64-bit indices (tensors past 2 GiB, where 64-bit address arithmetic would spill under 128).
template <typename T, typename Index>
struct MinBlocks {
    static constexpr int value = 2;
};
template <typename Index>
struct MinBlocks<double, Index> {
    static constexpr int value = 1;
};
template <typename T>
struct MinBlocks<T, long long> {
    static constexpr int value = 1;
};
template <>
struct MinBlocks<double, long long> {
    static constexpr int value = 1;
};

}  // namespace gc

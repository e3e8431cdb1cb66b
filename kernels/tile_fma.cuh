// tile_fma.cuh: the SIMT output-tile engine shared by conv_direct.cu and conv_transpose.cu.
//
// The convolutions are run as implicit GEMMs: rows = output pixels (BM per CTA), columns =
// output channels of one group (BN per CTA), reduction = taps x input channels of the group in
// chunks of BK channels of one tap. A kernel supplies a Loader that knows its geometry:
//     fetch(q)          global memory -> registers for reduction chunk q (zeros where out of range)
//     stash(As, Bs)     registers -> shared memory, As[BK][LDA] (k-major pixels), Bs[BK][LDB]
// and this engine runs the double-buffered loop: chunk q+1 is in flight from global memory
// while chunk q is multiplied out of shared memory, with one barrier per chunk.
//
// Each thread owns a TM x TN register tile of contiguous rows and columns, so its per-chunk
// fragments are read with 16-byte shared loads (float4 / double2): TM/4 + TN/4 loads feed TM*TN
// FMAs. Row pitches carry a 4-element pad: it keeps rows 16-byte aligned for those loads and
// breaks the 32-way bank conflict a k-fastest stash into a 64-wide row would otherwise cause.
#pragma once
#include "common.cuh"

namespace gc {

__device__ __forceinline__ float m_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double m_fma(double a, double b, double c) { return fma(a, b, c); }

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

    // The double-buffered reduction over chunks [0, nq). Ends with a barrier, so the caller may
    // reuse shared memory (its own tables included) right after.
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
            if (more) ld.fetch(q + 1);
            multiply(sm.a[cur], sm.b[cur], tm, tn);
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

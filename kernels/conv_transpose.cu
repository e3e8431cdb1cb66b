// conv_transpose.cu: grouped, strided, dilated N-d transposed convolution, rank-generic.
//
// Definition (the adjoint of conv_direct, Keras' output length and crop):
//   full[i*s + t*d] += w[t, f, c] * x[i, c]  (per group), full length (I-1)*s + (k-1)*d + 1,
//   y[o] = act(bias + full[o + crop]), 0 + bias where o + crop lies outside `full`.
//
// Gather form, decomposed by stride phase. Output o receives tap t exactly when
// (o + crop - t*d) % s == 0, from input i = (o + crop - t*d) / s. Outputs with the same phase
// r = (o + crop) % s share one tap set: the t with t*d = r (mod s), an arithmetic progression
// t0 + u*(s / gcd(s, d)). So a CTA works on outputs of one phase (grid z), runs a dense implicit
// GEMM over exactly those taps (no multiply by an inserted zero, no atomics, no scatter), and
// i = q - e(t) with q = (o + crop - r) / s per output and e(t) = (t*d - r) / s per tap.
// Outputs no tap reaches (or beyond `full`) see an empty reduction and get bias + activation.
// A tap of the phase whose input index q - e(t) lies outside the input contributes nothing to that
// output (scatter semantics: only input pixels that exist reach an output), not a zero times its
// weight, so a NaN or Inf weight poisons exactly the outputs its input pixels reach
// (SKIPS_OUTSIDE_TAPS in tile_fma.cuh; the check is per chunk, per thread, from the bounds of the
// thread's rows, and row by row only for threads on the input's border).
//
// Template parameters as conv_direct.cu: T, LAYOUT, Index, SHAPE; the activation is run time.
#include "common.cuh"
#include "tile_fma.cuh"

namespace gc {

// One spatial dimension of one phase.
template <typename Index>
struct PhaseDim {
    Index ofirst;  // first output index of the phase
    Index q0;      // (ofirst + crop - r) / s
    Index count;   // outputs of the phase
    Index t0;      // first tap of the phase
    Index step;    // tap step s / gcd(s, d)
    Index ntaps;   // taps of the phase
    Index r;       // the phase itself
};

template <typename Index>
__device__ __forceinline__ Index gcd_of(Index a, Index b) {
    while (b != 0) {
        const Index t = a % b;
        a = b;
        b = t;
    }
    return a;
}

template <typename Index>
__device__ __forceinline__ PhaseDim<Index> phase_dim(Index r, Index s, Index dil, Index k, Index crop, Index O) {
    PhaseDim<Index> p;
    p.r = r;
    p.ofirst = floor_mod<Index>(r - crop, s);
    p.count = O > p.ofirst ? ceil_div<Index>(O - p.ofirst, s) : Index(0);
    p.q0 = (p.ofirst + crop - r) / s;
    p.step = s / gcd_of<Index>(s, dil);
    p.t0 = -1;
    for (Index t = 0; t < p.step && t < k; ++t) {
        if ((t * dil) % s == r) {
            p.t0 = t;
            break;
        }
    }
    p.ntaps = p.t0 < 0 ? Index(0) : ceil_div<Index>(k - p.t0, p.step);
    return p;
}

// The tap offsets e of one row group (the TM tile rows of the threads with one tm) for which every
// live row reads an existing input pixel: q - e in [0, extent) for each of its q, i.e. e in
// [lo, hi] with lo = max(q_max - extent + 1, 0) and hi = q_min, per dim, packed as hi << 16 | lo
// (0xFFFF: empty). Offsets past 0xFFFE and groups without live rows take the row-by-row test.
// Kept in shared memory, not registers: the 32-bit tiles already run at their 128-register cap.
struct TapWindow {
    unsigned d, h, w;

    template <typename Index>
    static __device__ __forceinline__ unsigned pack(Index qmin, Index qmax, Index extent) {
        const Index lo = qmax - extent + 1 > 0 ? qmax - extent + 1 : Index(0);
        const Index hi = qmin < Index(0xFFFE) ? qmin : Index(0xFFFE);
        return lo <= hi ? (unsigned(hi) << 16) | unsigned(lo) : 0xFFFFu;
    }

    template <typename Index>
    static __device__ __forceinline__ bool in(unsigned win, Index e) {
        return e >= Index(win & 0xFFFFu) && e <= Index(win >> 16);
    }

    template <typename Index>
    __device__ __forceinline__ bool holds(Index ed, Index eh, Index ew) const {
        return in(d, ed) && in(h, eh) && in(w, ew);
    }
};

// win[g] for the rows g*TM .. g*TM + TM - 1 of pix[] (after pix[] is filled and a barrier).
template <int TM, typename Index>
__device__ __forceinline__ TapWindow tap_window(const PixelRec<Index>* pix, int g, Index D, Index H, Index W) {
    bool any = false;
    Index lo_d = 0, hi_d = 0, lo_h = 0, hi_h = 0, lo_w = 0, hi_w = 0;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const PixelRec<Index> p = pix[g * TM + i];
        if (p.base < 0) continue;
        if (!any || p.d < lo_d) lo_d = p.d;
        if (!any || p.d > hi_d) hi_d = p.d;
        if (!any || p.h < lo_h) lo_h = p.h;
        if (!any || p.h > hi_h) hi_h = p.h;
        if (!any || p.w < lo_w) lo_w = p.w;
        if (!any || p.w > hi_w) hi_w = p.w;
        any = true;
    }
    TapWindow t;
    t.d = any ? TapWindow::pack(lo_d, hi_d, D) : 0xFFFFu;
    t.h = any ? TapWindow::pack(lo_h, hi_h, H) : 0xFFFFu;
    t.w = any ? TapWindow::pack(lo_w, hi_w, W) : 0xFFFFu;
    return t;
}

template <typename T, int LAYOUT, typename Index, class Tile>
struct TransposeLoader : LoaderBase<T, LAYOUT, Index, Tile> {
    typedef LoaderBase<T, LAYOUT, Index, Tile> Base;
    typedef typename Base::Acc Acc;
    static constexpr int BK = Tile::BK, NT = Tile::THREADS, TM = Tile::TM;
    static constexpr bool SKIPS_OUTSIDE_TAPS = true;

    const T* __restrict__ w;
    Index Fg, f0, fcount;
    Index KH, KW, SD, SH, SW, DD, DH, DW;
    PhaseDim<Index> pd, ph, pw;
    Index n_cchunks;
    unsigned live;           // rows the last fetched chunk reaches (bit i: the thread's tile row i)
    const TapWindow* win;    // shared memory, one per row group (tap_window)

    __device__ __forceinline__ int row_group() const {
        int tm, tn;
        tile_coords<Tile, LAYOUT == CHANNELS_FIRST>(this->tid, tm, tn);
        return tm;
    }

    // Which of this thread's rows read an input pixel that exists at tap offset e = (ed, eh, ew).
    __device__ __forceinline__ unsigned reached_rows(Index ed, Index eh, Index ew) const {
        const int tm = row_group();
        const TapWindow wnd = win[tm];
        if (wnd.holds(ed, eh, ew)) return (1u << TM) - 1u;
        const int r0 = tm * TM;  // on the input's border: row by row
        unsigned rows = 0u;
#pragma unroll 1
        for (int i = 0; i < TM; ++i) {
            const PixelRec<Index> p = this->pix[r0 + i];
            const Index id = p.d - ed, ih = p.h - eh, iw = p.w - ew;
            if (p.base >= 0 && id >= 0 && id < this->D && ih >= 0 && ih < this->H && iw >= 0 && iw < this->W)
                rows |= 1u << i;
        }
        return rows;
    }

    // Weights are (t, f, c): coalesced along c, so channel-fastest.
    __device__ __forceinline__ void b_coord(int r, int& kk, int& bn) const {
        kk = this->tid % BK;
        bn = this->tid / BK + r * (NT / BK);
    }

    __device__ __forceinline__ void fetch(int q) {
        const Index u = Index(q) / n_cchunks;
        const Index c0 = (Index(q) - u * n_cchunks) * BK;
        const Index uw = u % pw.ntaps;
        const Index u2 = u / pw.ntaps;
        const Index uh = u2 % ph.ntaps;
        const Index ud = u2 / ph.ntaps;
        const Index td = pd.t0 + ud * pd.step, th = ph.t0 + uh * ph.step, tw = pw.t0 + uw * pw.step;
        const Index ed = (td * DD - pd.r) / SD, eh = (th * DH - ph.r) / SH, ew = (tw * DW - pw.r) / SW;
        const Index t = (td * KH + th) * KW + tw;
        live = reached_rows(ed, eh, ew);
        this->fetch_input(c0, -ed, -eh, -ew);  // input index q - e(t)
#pragma unroll
        for (int r = 0; r < Base::B_LOADS; ++r) {
            int kk, bn;
            b_coord(r, kk, bn);
            const Index c = c0 + kk;
            Acc v = Acc(0);
            if (c < this->Cg && bn < fcount) v = load_acc(w + (t * Fg + f0 + bn) * this->C + this->cin0 + c);
            this->rb[r] = v;
        }
    }

    __device__ __forceinline__ void stash(Acc* As, Acc* Bs) const { this->stash_as(*this, As, Bs); }
};

template <typename T, int LAYOUT, typename Index, int SHAPE>
__global__ void __launch_bounds__(256, MinBlocks<T, Index>::value)
conv_transpose(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y,
               Index N, Index C, Index F, Index groups,
               Index D, Index H, Index W, Index OD, Index OH, Index OW,
               Index KD, Index KH, Index KW,
               Index SD, Index SH, Index SW, Index DD, Index DH, Index DW,
               Index CD, Index CH, Index CW, int act,
               const T* __restrict__ x_out, int x_act) {
    typedef typename Traits<T>::acc_t Acc;
    typedef typename TileOf<Acc, SHAPE>::type Tile;
    static_assert(Tile::THREADS == 256, "launch bounds assume 256 threads");
    constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK;

    __shared__ typename Tile::Shared sm;
    __shared__ PixelRec<Index> pix[BM];
    __shared__ TapWindow win[BM / Tile::TM];

    const int tid = threadIdx.x;
    const Index Cg = C / groups, Fg = F / groups;
    const Index DHW = D * H * W, OP = OD * OH * OW;
    const Index n_cchunks = ceil_div<Index>(Cg, BK);
    const Index f_tiles = ceil_div<Index>(Fg, BN);
    const Index col_tiles = groups * f_tiles;
    const Index phases = SD * SH * SW;
    // Pixel tiles of the largest phase; smaller phases leave their trailing CTAs idle.
    const Index m_tiles = ceil_div<Index>(N * ceil_div<Index>(OD, SD) * ceil_div<Index>(OH, SH) * ceil_div<Index>(OW, SW), BM);

    int tm, tn;
    tile_coords<Tile, LAYOUT == CHANNELS_FIRST>(tid, tm, tn);

    for (Index bz = blockIdx.z; bz < phases; bz += gridDim.z) {
        const Index rw = bz % SW;
        const Index rh = (bz / SW) % SH;
        const Index rd = bz / (SW * SH);
        const PhaseDim<Index> pd = phase_dim<Index>(rd, SD, DD, KD, CD, OD);
        const PhaseDim<Index> ph = phase_dim<Index>(rh, SH, DH, KH, CH, OH);
        const PhaseDim<Index> pw = phase_dim<Index>(rw, SW, DW, KW, CW, OW);
        const Index Pph = pd.count * ph.count * pw.count;
        const Index M = N * Pph;
        const int nq = int(pd.ntaps * ph.ntaps * pw.ntaps * n_cchunks);
        for (Index by = blockIdx.y; by < col_tiles; by += gridDim.y) {
            const Index g = by / f_tiles;
            const Index f0 = (by - g * f_tiles) * BN;
            for (Index bx = blockIdx.x; bx < m_tiles; bx += gridDim.x) {
                const Index m0 = bx * BM;
                if (m0 >= M) break;  // uniform across the CTA: no barrier is skipped by part of it
                fill_pixels<Tile>(pix, m0, M, tid, [&](Index m) {
                    Index r = m;
                    const Index jw = r % pw.count; r /= pw.count;
                    const Index jh = r % ph.count; r /= ph.count;
                    const Index jd = r % pd.count;
                    const Index n = r / pd.count;
                    PixelRec<Index> p;
                    p.base = n * DHW * C;
                    p.d = pd.q0 + jd;
                    p.h = ph.q0 + jh;
                    p.w = pw.q0 + jw;
                    return p;
                });
                __syncthreads();
                if (tid < BM / Tile::TM) win[tid] = tap_window<Tile::TM>(pix, tid, D, H, W);
                __syncthreads();

                TransposeLoader<T, LAYOUT, Index, Tile> ld;
                ld.x = x; ld.x_out = x_out; ld.x_act = x_act; ld.w = w; ld.pix = pix;
                ld.C = C; ld.Cg = Cg; ld.Fg = Fg; ld.cin0 = g * Cg; ld.f0 = f0; ld.fcount = Fg - f0;
                ld.D = D; ld.H = H; ld.W = W; ld.DHW = DHW;
                ld.KH = KH; ld.KW = KW; ld.SD = SD; ld.SH = SH; ld.SW = SW; ld.DD = DD; ld.DH = DH; ld.DW = DW;
                ld.pd = pd; ld.ph = ph; ld.pw = pw;
                ld.n_cchunks = n_cchunks;
                ld.tid = tid;
                ld.win = win;

                Tile tile;
                tile.run(sm, ld, nq, tm, tn);

                store_tile<T, LAYOUT>(tile, y, bias, act, m0, M, tm, tn, g, f0, Fg, F, OP,
                                      [&](Index m, Index& n, Index& sp) {
                    Index r = m;
                    const Index jw = r % pw.count; r /= pw.count;
                    const Index jh = r % ph.count; r /= ph.count;
                    const Index jd = r % pd.count;
                    n = r / pd.count;
                    sp = ((pd.ofirst + jd * SD) * OH + (ph.ofirst + jh * SH)) * OW + (pw.ofirst + jw * SW);
                });
                __syncthreads();  // the next tile rewrites pix[]
            }
        }
    }
}

}  // namespace gc

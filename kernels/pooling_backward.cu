// pooling_backward.cu: the input gradient of max and average pooling (pooling.cu), 1-D/2-D/3-D,
// both layouts.
//
// Written as a gather so that no two threads write one cell (no floating-point atomics: the
// result is bitwise reproducible): one thread per (input cell, group of V channels), vectorised
// along channels in channels_last exactly like the forward kernel. Each thread walks the outputs
// whose windows contain its cell (window_backward.cuh) in row-major order and adds
//   max      dy[o] when its cell is the window's FIRST maximum in row-major window order among
//            the real cells (padding never wins); a NaN is the maximum and the first NaN wins.
//            The argmax is recomputed from x per window instead of stored by the forward: the
//            forward stays a plain reduction, and the windows a thread re-reads sit in cache.
//   average  dy[o] / (real cells of o's window), the count the forward divides by.
// float16 accumulates in float32.
#include "common.cuh"
#include "memory_bound.cuh"
#include "window_backward.cuh"

namespace gc {

enum PoolBackwardMode { POOL_BACKWARD_MAX = 0, POOL_BACKWARD_AVERAGE = 1 };

// Per lane, the row-major position inside the clipped window [lo, hi) of its first maximum.
// Positions are counted over the real cells only, so the caller compares with its own cell's
// position in the same clipped window.
template <typename T, int V, typename Index>
__device__ __forceinline__ void first_argmax(const T* __restrict__ x, const Tensor5<Index>& xt, Index n, Index c,
                                             int d_lo, int d_hi, int h_lo, int h_hi, int w_lo, int w_hi,
                                             int (&winner)[V]) {
    typedef typename Traits<T>::acc_t A;
    A best[V];
#pragma unroll
    for (int v = 0; v < V; ++v) {
        best[v] = A(0);  // replaced by the first cell (pos == 0)
        winner[v] = -1;
    }
    int pos = 0;
    for (int d = d_lo; d < d_hi; ++d)
        for (int h = h_lo; h < h_hi; ++h)
            for (int w = w_lo; w < w_hi; ++w, ++pos) {
                const AccVec<T, V> xv = widen<T, V>(load_vec<T, V>(x + xt.at(n, c, Index(d), Index(h), Index(w))));
#pragma unroll
                for (int v = 0; v < V; ++v) {
                    // Strictly greater keeps the first of tied maxima; once best is NaN nothing
                    // replaces it, and the first NaN replaces any number.
                    if (pos == 0 || (best[v] == best[v] && (xv.v[v] > best[v] || xv.v[v] != xv.v[v]))) {
                        best[v] = xv.v[v];
                        winner[v] = pos;
                    }
                }
            }
}

template <typename T, typename Index, int V, int MODE>
__global__ void __launch_bounds__(256, 2) pool_backward(const T* __restrict__ x, const T* __restrict__ dy,
                                                     T* __restrict__ dx, Index N, int C, int ID, int IH, int IW,
                                                     int OD, int OH, int OW, int KD, int KH, int KW, int SD, int SH,
                                                     int SW, int pad_d, int pad_h, int pad_w, int channels_last) {
    typedef typename Traits<T>::acc_t A;
    const bool cl = channels_last != 0;
    const Tensor5<Index> xt(Index(C), Index(ID), Index(IH), Index(IW), cl);
    const Tensor5<Index> yt(Index(C), Index(OD), Index(OH), Index(OW), cl);
    for_each_input_vector<T, V>(dx, xt, N, C, ID, IH, IW, cl, [&](const Pixel5<Index>& p) {
        const int d = int(p.d), h = int(p.h), w = int(p.w);
        const OutputRange rd = covering_outputs(d, pad_d, KD, SD, OD);
        const OutputRange rh = covering_outputs(h, pad_h, KH, SH, OH);
        const OutputRange rw = covering_outputs(w, pad_w, KW, SW, OW);
        AccVec<T, V> acc = zero_acc<T, V>();
        for (int od = rd.lo; od <= rd.hi; ++od)
            for (int oh = rh.lo; oh <= rh.hi; ++oh)
                for (int ow = rw.lo; ow <= rw.hi; ++ow) {
                    // o's window clipped to the real cells, as the forward kernel clips it.
                    const int d0 = od * SD - pad_d, h0 = oh * SH - pad_h, w0 = ow * SW - pad_w;
                    const int d_lo = max(d0, 0), d_hi = min(d0 + KD, ID);
                    const int h_lo = max(h0, 0), h_hi = min(h0 + KH, IH);
                    const int w_lo = max(w0, 0), w_hi = min(w0 + KW, IW);
                    const AccVec<T, V> g =
                        widen<T, V>(load_vec<T, V>(dy + yt.at(p.n, p.c, Index(od), Index(oh), Index(ow))));
                    if (MODE == POOL_BACKWARD_MAX) {
                        int winner[V];
                        first_argmax<T, V>(x, xt, p.n, p.c, d_lo, d_hi, h_lo, h_hi, w_lo, w_hi, winner);
                        const int mine = ((d - d_lo) * (h_hi - h_lo) + (h - h_lo)) * (w_hi - w_lo) + (w - w_lo);
#pragma unroll
                        for (int v = 0; v < V; ++v)
                            if (winner[v] == mine) acc.v[v] += g.v[v];
                    } else {
                        const A inv = reciprocal(A((d_hi - d_lo) * (h_hi - h_lo) * (w_hi - w_lo)));
#pragma unroll
                        for (int v = 0; v < V; ++v) acc.v[v] += g.v[v] * inv;
                    }
                }
        return acc;
    });
}

}  // namespace gc

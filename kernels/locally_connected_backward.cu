// locally_connected_backward.cu: the gradients of locally connected 1-D/2-D/3-D
// (locally_connected.cu: y[n, p, f] = sum_k patch(n, p)[k] * w[p, k, f], Keras 2 layout,
// patch order (*k, C) for channels_last and (C, *k) for channels_first). dy is the gradient of
// the pre-activation output: the bias and activation are the caller's.
//
// Both are gathers, one thread per element of the gradient, each summing its terms in a fixed
// order (no atomics: bitwise reproducible); float16 accumulates in float32.
//   input    dx[n, c, cell] = sum over the positions p whose window holds the cell (row-major,
//            window_backward.cuh), then over f: dy[n, p, f] * w[p, k(cell - p's origin, c), f]
//   weights  dw[p, k, f] = sum over n: patch(n, p)[k] * dy[n, p, f]; consecutive threads take
//            consecutive f (coalesced dw stores and channels_last dy loads). A padded cell is a
//            literal zero times dy, as in the forward.
#include "common.cuh"
#include "memory_bound.cuh"
#include "window_backward.cuh"

namespace gc {

// Offset of dy[n, pos, f]: channels_last (N, *out, F), channels_first (N, F, *out).
template <typename Index>
__device__ __forceinline__ Index lc_output_at(bool cl, Index n, Index pos, Index f, Index positions, Index F) {
    return cl ? (n * positions + pos) * F + f : (n * F + f) * positions + pos;
}

enum LcGradient { LC_GRAD_INPUT = 0, LC_GRAD_WEIGHTS = 1 };

// One kernel per gradient GRAD: (a, b) = (dy, w) -> dx for LC_GRAD_INPUT, (x, dy) -> dw for
// LC_GRAD_WEIGHTS; the geometry arguments are the forward's.
template <typename T, typename Index, int GRAD>
__global__ void __launch_bounds__(256, 2) locally_connected_backward(
    const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, Index N, int C, int F, int ID, int IH,
    int IW, int OD, int OH, int OW, int KD, int KH, int KW, int SD, int SH, int SW, int pad_d, int pad_h, int pad_w,
    int channels_last) {
    typedef typename Traits<T>::acc_t A;
    const bool cl = channels_last != 0;
    const Tensor5<Index> xt(Index(C), Index(ID), Index(IH), Index(IW), cl);
    const Index positions = Index(OD) * OH * OW;
    const int taps = KD * KH * KW;
    const Index K = Index(taps) * C;
    const Index total = GRAD == LC_GRAD_INPUT ? vector_work_items<1>(N, C, ID, IH, IW) : positions * K * F;

    for (Index i = grid_start_x<Index>(); i < total; i += grid_step_x<Index>()) {
        A acc = A(0);
        if (GRAD == LC_GRAD_INPUT) {
            const T* __restrict__ dy = a;
            const T* __restrict__ w = b;
            const Pixel5<Index> p = decode_vector_work<1>(i, C, ID, IH, IW, cl);
            const int d = int(p.d), h = int(p.h), ww = int(p.w), c = int(p.c);
            const OutputRange rd = covering_outputs(d, pad_d, KD, SD, OD);
            const OutputRange rh = covering_outputs(h, pad_h, KH, SH, OH);
            const OutputRange rw = covering_outputs(ww, pad_w, KW, SW, OW);
            for (int od = rd.lo; od <= rd.hi; ++od)
                for (int oh = rh.lo; oh <= rh.hi; ++oh)
                    for (int ow = rw.lo; ow <= rw.hi; ++ow) {
                        const int tap = ((d - (od * SD - pad_d)) * KH + (h - (oh * SH - pad_h))) * KW +
                                        (ww - (ow * SW - pad_w));
                        const Index pos = (Index(od) * OH + oh) * OW + ow;
                        const Index k = cl ? Index(tap) * C + c : Index(c) * taps + tap;
                        const T* wrow = w + (pos * K + k) * F;
                        for (int f = 0; f < F; ++f)
                            acc += load_acc(dy + lc_output_at(cl, p.n, pos, Index(f), positions, Index(F))) *
                                   load_acc(wrow + f);
                    }
            store_from_acc(out + xt.at(p.n, p.c, p.d, p.h, p.w), acc);
        } else {
            const T* __restrict__ x = a;
            const T* __restrict__ dy = b;
            Index rest = i;
            const Index f = take_mod(rest, Index(F));
            const int kk = int(take_mod(rest, K));  // K = taps * C fits int (the host checks)
            const Index pos = rest;
            const int tap = cl ? kk / C : kk % taps, c = cl ? kk % C : kk / taps;
            int q = int(pos);
            const int ow = q % OW; q /= OW;
            const int oh = q % OH;
            const int od = q / OH;
            const int e = tap % KW, bb = (tap / KW) % KH, aa = tap / (KW * KH);
            const int d = od * SD - pad_d + aa, h = oh * SH - pad_h + bb, ww = ow * SW - pad_w + e;
            const bool real = in_range(d, ID) && in_range(h, IH) && in_range(ww, IW);
            const Index xoff = real ? xt.at(Index(0), Index(c), Index(d), Index(h), Index(ww)) : Index(0);
            for (Index n = 0; n < N; ++n) {
                const A xv = real ? load_acc(x + n * xt.sn + xoff) : A(0);
                acc += xv * load_acc(dy + lc_output_at(cl, n, pos, f, positions, Index(F)));
            }
            store_from_acc(out + i, acc);
        }
    }
}

}  // namespace gc

// upsample_backward.cu: the input gradient of UpSampling1D/2D/3D (upsample.cu), the exact
// adjoint of its forward: nearest sums each input cell's size block; bilinear (2-D) and
// trilinear (3-D) give each output's gradient to the cells the forward read, with the forward's
// half-pixel weights and edge clamp.
//
// A gather (no atomics: bitwise reproducible): one thread per (input cell, group of V channels),
// vectorised along channels in channels_last like the forward. Along an interpolated dimension
// the outputs reading cell i lie within about one input cell of it; the thread walks a
// conservative range of them in increasing order, recomputes each output's two taps with the
// forward's formula and keeps those that read i, so the weights are the forward's. A tap of
// weight 0 still counts (the forward reads it: 0 * an Inf gradient is NaN, as in the adjoint of
// the NumPy formula). float16 accumulates in float32.
#include "common.cuh"
#include "memory_bound.cuh"

namespace gc {

enum UpsampleBackwardMode { UPSAMPLE_BACKWARD_NEAREST = 0, UPSAMPLE_BACKWARD_BILINEAR = 2,
                            UPSAMPLE_BACKWARD_TRILINEAR = 3 };

// The outputs of one dimension that may read input cell i: [lo, hi] inclusive.
struct SourceRange {
    int lo, hi;
};

__device__ __forceinline__ SourceRange nearest_readers(int i, int size) {
    SourceRange r;
    r.lo = i * size;
    r.hi = i * size + size - 1;
    return r;
}

// Output o reads cells floor(src) and floor(src) + 1 with src = (o + 0.5) / size - 0.5 clamped to
// [0, length - 1]: i is read for src in [i - 1, i + 1), i.e. o in [(i - 1/2) size - 1/2,
// (i + 3/2) size - 1/2); one output of margin on each side absorbs the rounding of src.
__device__ __forceinline__ SourceRange linear_readers(int i, int size, int length) {
    SourceRange r;
    r.lo = max(0, floor_div((2 * i - 1) * size - 1, 2) - 1);
    r.hi = min(length * size - 1, ((2 * i + 3) * size) / 2 + 1);
    return r;
}

// The weight with which output o reads cell i along one interpolated dimension (the sum of its
// two taps' weights when both are i, at the last cell); false when o reads other cells only.
template <typename A>
__device__ __forceinline__ bool linear_weight(int o, int size, int length, int i, A& weight) {
    A src = (A(o) + A(0.5)) / A(size) - A(0.5);
    src = src < A(0) ? A(0) : (src > A(length - 1) ? A(length - 1) : src);
    const A fl = floor(src);
    const A f = src - fl;
    const int i0 = int(fl), i1 = min(i0 + 1, length - 1);
    weight = (i0 == i ? A(1) - f : A(0)) + (i1 == i ? f : A(0));
    return i0 == i || i1 == i;
}

__device__ __forceinline__ SourceRange readers(bool linear, int i, int size, int length) {
    return linear ? linear_readers(i, size, length) : nearest_readers(i, size);
}

template <typename A>
__device__ __forceinline__ bool reader_weight(bool linear, int o, int size, int length, int i, A& weight) {
    if (!linear) {
        weight = A(1);  // nearest: every output of the block copies i
        return true;
    }
    return linear_weight<A>(o, size, length, i, weight);
}

template <typename T, typename Index, int V, int MODE>
__global__ void __launch_bounds__(256, 2) upsample_backward(const T* __restrict__ dy, T* __restrict__ dx, Index N,
                                                         int C, int ID, int IH, int IW, int SD, int SH, int SW,
                                                         int channels_last) {
    typedef typename Traits<T>::acc_t A;
    const bool cl = channels_last != 0;
    // Depth is interpolated only in 3-D; in 2-D it is the unit dimension of the 5-D view.
    const bool lin_d = MODE == UPSAMPLE_BACKWARD_TRILINEAR, lin_hw = MODE != UPSAMPLE_BACKWARD_NEAREST;
    const int OD = ID * SD, OH = IH * SH, OW = IW * SW;
    const Tensor5<Index> xt(Index(C), Index(ID), Index(IH), Index(IW), cl);
    const Tensor5<Index> yt(Index(C), Index(OD), Index(OH), Index(OW), cl);
    for_each_input_vector<T, V>(dx, xt, N, C, ID, IH, IW, cl, [&](const Pixel5<Index>& p) {
        const int d = int(p.d), h = int(p.h), w = int(p.w);
        const SourceRange rd = readers(lin_d, d, SD, ID);
        const SourceRange rh = readers(lin_hw, h, SH, IH);
        const SourceRange rw = readers(lin_hw, w, SW, IW);
        AccVec<T, V> acc = zero_acc<T, V>();
        for (int od = rd.lo; od <= rd.hi; ++od) {
            A wd;
            if (!reader_weight<A>(lin_d, od, SD, ID, d, wd)) continue;
            for (int oh = rh.lo; oh <= rh.hi; ++oh) {
                A wh;
                if (!reader_weight<A>(lin_hw, oh, SH, IH, h, wh)) continue;
                wh = wd * wh;  // the forward's product order: (wd * wh) * ww
                for (int ow = rw.lo; ow <= rw.hi; ++ow) {
                    A ww;
                    if (!reader_weight<A>(lin_hw, ow, SW, IW, w, ww)) continue;
                    const A wgt = wh * ww;
                    const AccVec<T, V> g =
                        widen<T, V>(load_vec<T, V>(dy + yt.at(p.n, p.c, Index(od), Index(oh), Index(ow))));
#pragma unroll
                    for (int v = 0; v < V; ++v) acc.v[v] += wgt * g.v[v];
                }
            }
        }
        return acc;
    });
}

}  // namespace gc

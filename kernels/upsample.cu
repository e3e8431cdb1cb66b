// upsample.cu: UpSampling1D/2D/3D, nearest, bilinear (2-D) and trilinear (3-D), both layouts.
//
// One thread per (output pixel, group of V channels), vectorised along channels in
// channels_last exactly like pooling.cu. Interpolation uses half-pixel centres
// (align_corners=False) with edge clamping, the rule of Keras' resize path:
//   src = clamp((o + 0.5) / size - 0.5, 0, L - 1),  i0 = floor(src),  f = src - i0,
//   value = (1 - f) * x[i0] + f * x[min(i0 + 1, L - 1)]           per interpolated dim,
// e.g. [1, 2] x2 -> [1, 1.25, 1.75, 2]. Every corner is read even at weight 0, so a NaN next to a
// sampled cell propagates the way a NumPy formula over both neighbours does.
#include "common.cuh"
#include "memory_bound.cuh"

namespace gc {

enum UpsampleMode { UPSAMPLE_NEAREST = 0, UPSAMPLE_BILINEAR = 2, UPSAMPLE_TRILINEAR = 3 };

// The two source cells and the weight of the second along one dimension. The source coordinate
// is clamped to [0, length - 1] before it is split (the oracle's rule, gpuconv/cpu/upsampling.py):
// at the leading edge that gives cells (0, 1) with weights (1, 0), so a NaN/Inf in cell 1 reaches
// output 0 through its zero weight exactly as it does in NumPy. (Splitting the unclamped -0.25
// and clamping the cells instead would read cell 0 twice and hide that NaN.)
template <typename A>
struct LinearTaps {
    int i0, i1;
    A f;
};

template <typename A>
__device__ __forceinline__ LinearTaps<A> linear_taps(int o, int size, int length) {
    A src = (A(o) + A(0.5)) / A(size) - A(0.5);
    src = src < A(0) ? A(0) : (src > A(length - 1) ? A(length - 1) : src);
    const A fl = floor(src);
    LinearTaps<A> t;
    t.f = src - fl;
    t.i0 = int(fl);
    t.i1 = min(t.i0 + 1, length - 1);
    return t;
}

template <typename T, typename Index, int V, int MODE>
__global__ void __launch_bounds__(256, 2) upsample(const T* __restrict__ x, T* __restrict__ y, Index N, int C, int ID,
                                                int IH, int IW, int SD, int SH, int SW, int channels_last) {
    typedef typename Traits<T>::acc_t A;
    const bool cl = channels_last != 0;
    const int OD = ID * SD, OH = IH * SH, OW = IW * SW;
    const Tensor5<Index> xt(Index(C), Index(ID), Index(IH), Index(IW), cl);
    const Tensor5<Index> yt(Index(C), Index(OD), Index(OH), Index(OW), cl);
    const Index total = vector_work_items<V>(N, C, OD, OH, OW);

    for (Index i = grid_start_x<Index>(); i < total; i += grid_step_x<Index>()) {
        const Pixel5<Index> o = decode_vector_work<V>(i, C, OD, OH, OW, cl);
        const Index c = o.c;
        AccVec<T, V> acc;
        if (MODE == UPSAMPLE_NEAREST) {
            acc = widen<T, V>(load_vec<T, V>(
                x + xt.at(o.n, c, Index(int(o.d) / SD), Index(int(o.h) / SH), Index(int(o.w) / SW))));
        } else {
            // Depth is interpolated only in 3-D; in 2-D it is the unit dimension of the 5-D view.
            LinearTaps<A> td;
            if (MODE == UPSAMPLE_TRILINEAR) {
                td = linear_taps<A>(int(o.d), SD, ID);
            } else {
                td.i0 = td.i1 = int(o.d) / SD;
                td.f = A(0);
            }
            const LinearTaps<A> th = linear_taps<A>(int(o.h), SH, IH);
            const LinearTaps<A> tw = linear_taps<A>(int(o.w), SW, IW);
            acc = zero_acc<T, V>();
            const int nd = MODE == UPSAMPLE_TRILINEAR ? 2 : 1;
            for (int a = 0; a < nd; ++a) {
                const int d = a ? td.i1 : td.i0;
                const A wd = nd == 1 ? A(1) : (a ? td.f : A(1) - td.f);
#pragma unroll
                for (int b = 0; b < 2; ++b) {
                    const int h = b ? th.i1 : th.i0;
                    const A wh = wd * (b ? th.f : A(1) - th.f);
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const int w = e ? tw.i1 : tw.i0;
                        const A wgt = wh * (e ? tw.f : A(1) - tw.f);
                        const AccVec<T, V> xv =
                            widen<T, V>(load_vec<T, V>(x + xt.at(o.n, c, Index(d), Index(h), Index(w))));
#pragma unroll
                        for (int v = 0; v < V; ++v) acc.v[v] += wgt * xv.v[v];
                    }
                }
            }
        }
        store_acc_vec<T, V>(y, yt.at(o.n, c, o.d, o.h, o.w), acc);
    }
}

}  // namespace gc

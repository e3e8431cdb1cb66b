// pooling.cu: max and average pooling, 1-D/2-D/3-D, both layouts.
//
// One thread per (output pixel, group of V channels); channels_last moves V = 16 / sizeof(T)
// channels per 128-bit access (consecutive threads take consecutive vectors), channels_first
// takes V = 1 with consecutive threads on consecutive output columns. Only real cells are read:
//   max      padded cells are ignored; a NaN anywhere in the window makes the output NaN
//            (NumPy's np.max on the window)
//   average  divides by the number of real cells (Keras/TF count_include_pad=False)
// The 'same' padding guarantees every window holds at least one real cell.
#include "common.cuh"
#include "memory_bound.cuh"

namespace gc {

enum PoolMode { POOL_MAX = 0, POOL_AVERAGE = 1 };

// -inf, the identity of max (NVRTC has no <math.h> INFINITY).
__device__ __forceinline__ void set_neg_inf(float& v) { v = __int_as_float(0xff800000); }
__device__ __forceinline__ void set_neg_inf(double& v) { v = __longlong_as_double(0xfff0000000000000ULL); }

template <typename T, typename Index, int V, int MODE>
__global__ void __launch_bounds__(256, 2) pool(const T* __restrict__ x, T* __restrict__ y, Index N, int C, int ID,
                                            int IH, int IW, int OD, int OH, int OW, int KD, int KH, int KW, int SD,
                                            int SH, int SW, int pad_d, int pad_h, int pad_w, int channels_last) {
    typedef typename Traits<T>::acc_t A;
    const bool cl = channels_last != 0;
    const Tensor5<Index> xt(Index(C), Index(ID), Index(IH), Index(IW), cl);
    const Tensor5<Index> yt(Index(C), Index(OD), Index(OH), Index(OW), cl);
    const Index total = vector_work_items<V>(N, C, OD, OH, OW);

    for (Index i = grid_start_x<Index>(); i < total; i += grid_step_x<Index>()) {
        const Pixel5<Index> o = decode_vector_work<V>(i, C, OD, OH, OW, cl);
        const Index c = o.c;
        // The window clipped to the real cells.
        const int d0 = int(o.d) * SD - pad_d, h0 = int(o.h) * SH - pad_h, w0 = int(o.w) * SW - pad_w;
        const int d_lo = max(d0, 0), d_hi = min(d0 + KD, ID);
        const int h_lo = max(h0, 0), h_hi = min(h0 + KH, IH);
        const int w_lo = max(w0, 0), w_hi = min(w0 + KW, IW);

        AccVec<T, V> acc;
#pragma unroll
        for (int v = 0; v < V; ++v) {
            acc.v[v] = A(0);
            if (MODE == POOL_MAX) set_neg_inf(acc.v[v]);
        }
        for (int d = d_lo; d < d_hi; ++d)
            for (int h = h_lo; h < h_hi; ++h)
                for (int w = w_lo; w < w_hi; ++w) {
                    const AccVec<T, V> xv = widen<T, V>(load_vec<T, V>(x + xt.at(o.n, c, Index(d), Index(h), Index(w))));
#pragma unroll
                    for (int v = 0; v < V; ++v) {
                        if (MODE == POOL_MAX)  // once acc is NaN no comparison replaces it
                            acc.v[v] = (xv.v[v] > acc.v[v] || xv.v[v] != xv.v[v]) ? xv.v[v] : acc.v[v];
                        else
                            acc.v[v] += xv.v[v];
                    }
                }
        if (MODE == POOL_AVERAGE) {
            // One reciprocal per output (common.cuh: no division subroutine), then a
            // multiply per lane: within an ulp or two of sum / count.
            const A inv = reciprocal(A((d_hi - d_lo) * (h_hi - h_lo) * (w_hi - w_lo)));
#pragma unroll
            for (int v = 0; v < V; ++v) acc.v[v] *= inv;
        }
        store_acc_vec<T, V>(y, yt.at(o.n, c, o.d, o.h, o.w), acc);
    }
}

}  // namespace gc

// depthwise_backward_input.cu: the input gradient of a depthwise convolution, in gather form.
//
//   dx[n, i, c] = sum over taps t and multipliers m with i = o*s + t*d - pad_before, 0 <= o < O, of
//                 dy[n, o, c*dm + m] * act'(y[n, o, c*dm + m]) * k[t, c, m]
//
// Why its own kernel: as a transposed convolution (the dense input gradient's route) a depthwise
// problem is C groups of one channel each, so the tile engine would multiply 1-wide blocks. Here
// one thread owns one input cell and a vector of V channels (memory_bound.cuh
// for_each_input_vector) and gathers the outputs whose windows read it, so no two threads write
// one cell: no atomics, deterministic, and dx is written exactly once (no zero-fill pass).
//
// Stride and dilation: along each dim, tap a reads cell i for the output o = (i + pad - a*dil) / s
// when that division is exact and 0 <= o < O (tap_output); the other taps are skipped before any
// load, so a strided problem reads only the dy cells that reach i. The depth multiplier is an
// inner loop summed in the thread's registers: dx lane c takes dy channels c*dm .. c*dm + dm - 1.
//
// Loads: channels_last with V > 1 (C % V == 0 and 16-byte aligned bases, chosen on the host by
// gpuconv/cuda/memory_bound.py vector_width) stores dx in 16-byte vectors; with dm == 1 the V dy,
// y and weight lanes are consecutive too and each is one 128-bit load. dm > 1 spreads a vector's
// dy lanes dm apart, so each lane loads its own. channels_first takes V = 1 and a warp's lanes
// walk consecutive input columns.
//
// Fused activation: act = ACT_RELU / ACT_RELU6 (common.cuh output_derivative) multiplies each dy
// lane by the derivative at the forward output y, read beside it; ACT_LINEAR never reads y.
//
// Template parameters: T (float, gc::half, double), Index (int, long long), V (1 or the full
// 16-byte vector width of T).
#include "common.cuh"
#include "memory_bound.cuh"

namespace gc {

// The output whose window's tap `a` reads cell i along one dim, or -1 when none does.
__device__ __forceinline__ int tap_output(int i, int a, int pad, int S, int dil, int O) {
    const int num = i + pad - a * dil;
    if (num < 0) return -1;
    const int o = num / S;
    return o * S == num && o < O ? o : -1;
}

// The V lanes of a dy-shaped tensor for input channels c0..c0+V-1 and multiplier m at pixel
// offset `pix` (channel c*dm + m of each lane): one vector when V > 1 and dm == 1.
template <typename T, int V, typename Index>
__device__ __forceinline__ AccVec<T, V> load_mult_lanes(const T* __restrict__ p, Index pix, Index channel_stride,
                                                        int c0, int dm, int m) {
    if (V > 1 && dm == 1) return widen<T, V>(load_vec<T, V>(p + pix + Index(c0)));
    AccVec<T, V> r;
#pragma unroll
    for (int v = 0; v < V; ++v) r.v[v] = Traits<T>::to_acc(p[pix + Index((c0 + v) * dm + m) * channel_stride]);
    return r;
}

template <typename T, typename Index, int V>
__global__ void __launch_bounds__(256, 2) depthwise_dgrad(
    const T* __restrict__ dy, const T* __restrict__ y, int act, const T* __restrict__ k, T* __restrict__ dx,
    Index N, int C, int dm, int ID, int IH, int IW, int OD, int OH, int OW, int KD, int KH, int KW,
    int SD, int SH, int SW, int DD, int DH, int DW, int pad_d, int pad_h, int pad_w, int channels_last) {
    typedef AccVec<T, V> Acc;
    const bool cl = channels_last != 0;
    const int F = C * dm;
    const Tensor5<Index> xt(Index(C), Index(ID), Index(IH), Index(IW), cl);
    const Tensor5<Index> yt(Index(F), Index(OD), Index(OH), Index(OW), cl);

    for_each_input_vector<T, V>(dx, xt, N, C, ID, IH, IW, cl, [&](const Pixel5<Index>& p) {
        Acc acc = zero_acc<T, V>();
        const int c0 = int(p.c);
        for (int a = 0; a < KD; ++a) {
            const int od = tap_output(int(p.d), a, pad_d, SD, DD, OD);
            if (od < 0) continue;
            for (int b = 0; b < KH; ++b) {
                const int oh = tap_output(int(p.h), b, pad_h, SH, DH, OH);
                if (oh < 0) continue;
                for (int e = 0; e < KW; ++e) {
                    const int ow = tap_output(int(p.w), e, pad_w, SW, DW, OW);
                    if (ow < 0) continue;
                    const Index pix = yt.pixel(p.n, Index(od), Index(oh), Index(ow));
                    const Index tap = Index((a * KH + b) * KW + e) * Index(F);  // kernel (taps, C, dm)
                    for (int m = 0; m < dm; ++m) {
                        Acc g = load_mult_lanes<T, V>(dy, pix, yt.sc, c0, dm, m);
                        if (act != ACT_LINEAR) {
                            const Acc yv = load_mult_lanes<T, V>(y, pix, yt.sc, c0, dm, m);
#pragma unroll
                            for (int v = 0; v < V; ++v) g.v[v] *= output_derivative(act, yv.v[v]);
                        }
                        const Acc w = load_mult_lanes<T, V>(k, tap, Index(1), c0, dm, m);
#pragma unroll
                        for (int v = 0; v < V; ++v) acc.v[v] += g.v[v] * w.v[v];
                    }
                }
            }
        }
        return acc;
    });
}

}  // namespace gc

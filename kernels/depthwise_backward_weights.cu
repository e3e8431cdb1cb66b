// depthwise_backward_weights.cu: the kernel gradient of a depthwise convolution, deterministic.
//
//   dW[t, 0, c*dm + m] = sum_{n, o} x[n, o*s + t*d - pad_before, c] * dy[n, o, c*dm + m]
//
// The depthwise problem arrives in grouped form (groups = C, one input channel per group,
// kernel (*k, 1, C*dm)), as gpuconv/gradients.py hands it to conv_backward_weights. There every
// output channel is a GEMM of one row per tap and one column, so the tile engine would multiply
// 1-wide blocks; this is a plain per-channel reduction instead, bound by reading x and dy once.
//
// Work split: a thread owns (slice z, tap t, a vector of V output channels f0..f0+V-1) and sums
// the positions k = z, z + S, z + 2S, ... of the N*P (batch x output pixel) reduction, S being the
// slice count the host chose (gpuconv/cuda/depthwise_backward.py plan_slices, a pure function of
// the problem and the SM count). Its V partial sums go to plane z of a workspace (S, taps, F) in
// the accumulation type, and conv_backward_weights.cu's wgrad_sum adds the planes in slice order
// and casts: no atomics, the same sums in the same order on every run.
//
// Why interleaved slices: consecutive threads must read consecutive addresses.
//   channels_last: the channel vector varies fastest across threads; a warp reads whole pixels
//     of x and dy, V = 16 / sizeof(T) channels in one 128-bit load when F % V == 0 and the base
//     pointers are aligned (gpuconv/cuda/memory_bound.py vector_width).
//   channels_first: V = 1 and the slice varies fastest, so a warp's lanes read 32 consecutive
//     output positions, i.e. consecutive output columns along W, of one channel plane.
//
// Padding: a padded cell is a literal zero multiplied by dy (dy is read for it too), the
// semantics of the np.pad-based oracle, so a NaN/Inf in dy reaches every tap as there.
//
// Fused activation: with act = ACT_RELU / ACT_RELU6 (y the forward's output, same layout as dy)
// every dy lane is read as dy * act'(y) (common.cuh output_derivative), no masked copy of dy.
//
// bias_grad: the bias gradient db[f] = sum_{n, o} dy[n, o, f] * act'(y[n, o, f]), the same
// reduction with one tap and no x: the same work split, workspace (S, F) and wgrad_sum.
//
// Template parameters: T (float, gc::half, double), Index (int, long long), V (1 or the full
// 16-byte vector width of T).
#include "common.cuh"
#include "memory_bound.cuh"

namespace gc {

// V lanes of x at pixel offset `pix` for output channels f0..f0+V-1 (input channel f / dm).
// dm == 1 with V > 1: the lanes are consecutive input channels, one vector load. Otherwise each
// lane loads its own channel (dm > 1 reads each input channel for dm neighbouring lanes).
template <typename T, int V, typename Index>
__device__ __forceinline__ AccVec<T, V> load_dw_inputs(const T* __restrict__ x, Index pix, Index channel_stride,
                                                       int f0, int dm) {
    if (V > 1 && dm == 1) return widen<T, V>(load_vec<T, V>(x + pix + Index(f0)));
    AccVec<T, V> r;
#pragma unroll
    for (int i = 0; i < V; ++i) r.v[i] = Traits<T>::to_acc(x[pix + Index((f0 + i) / dm) * channel_stride]);
    return r;
}

// V lanes of a dy-shaped tensor for output channels f0..f0+V-1 at pixel offset `pix`: a vector
// when V > 1 (channels_last).
template <typename T, int V, typename Index>
__device__ __forceinline__ AccVec<T, V> load_dy_lanes(const T* __restrict__ dy, Index pix, Index channel_stride,
                                                      int f0) {
    if (V > 1) return widen<T, V>(load_vec<T, V>(dy + pix + Index(f0)));
    AccVec<T, V> r;
#pragma unroll
    for (int i = 0; i < V; ++i) r.v[i] = Traits<T>::to_acc(dy[pix + Index(f0 + i) * channel_stride]);
    return r;
}

// dy for output channels f0..f0+V-1 at pixel offset `pix`, times the fused activation's
// derivative at the forward output y (read only when act != ACT_LINEAR).
template <typename T, int V, typename Index>
__device__ __forceinline__ AccVec<T, V> load_dw_grads(const T* __restrict__ dy, const T* __restrict__ y, int act,
                                                      Index pix, Index channel_stride, int f0) {
    AccVec<T, V> g = load_dy_lanes<T, V>(dy, pix, channel_stride, f0);
    if (act != ACT_LINEAR) {
        const AccVec<T, V> yv = load_dy_lanes<T, V>(y, pix, channel_stride, f0);
#pragma unroll
        for (int i = 0; i < V; ++i) g.v[i] *= output_derivative(act, yv.v[i]);
    }
    return g;
}

template <typename T, typename Index, int V>
__global__ void __launch_bounds__(256, 2) depthwise_wgrad(
    const T* __restrict__ x, const T* __restrict__ dy, const T* __restrict__ y, int act,
    typename Traits<T>::acc_t* __restrict__ ws, Index N, int C, int dm, int ID, int IH, int IW,
    int OD, int OH, int OW, int KD, int KH, int KW,
    int SD, int SH, int SW, int DD, int DH, int DW, int pad_d, int pad_h, int pad_w, int channels_last,
    Index slices) {
    typedef AccVec<T, V> Acc;
    const bool cl = channels_last != 0;
    const int F = C * dm;
    const Index nvec = Index(F / V), taps = Index(KD) * KH * KW;
    const Index E = taps * F;               // one workspace plane: the kernel's (taps, 1, F) elements
    const Index total = slices * taps * nvec;
    const Index P = Index(OD) * OH * OW, K = N * P;
    const Tensor5<Index> xt(Index(C), Index(ID), Index(IH), Index(IW), cl);
    const Tensor5<Index> yt(Index(F), Index(OD), Index(OH), Index(OW), cl);

    for (Index i = grid_start_x<Index>(); i < total; i += grid_step_x<Index>()) {
        Index r = i, z, t, j;
        if (cl) {  // channel vectors fastest: a warp reads whole pixels
            j = take_mod(r, nvec);
            t = take_mod(r, taps);
            z = r;
        } else {   // slices fastest: a warp reads consecutive output positions
            z = take_mod(r, slices);
            j = take_mod(r, nvec);
            t = r;
        }
        const int f0 = int(j) * V;
        int tap = int(t);
        const int e = tap % KW; tap /= KW;
        const int b = tap % KH;
        const int a = tap / KH;
        const int off_d = a * DD - pad_d, off_h = b * DH - pad_h, off_w = e * DW - pad_w;

        Acc acc = zero_acc<T, V>();
        for (Index k = z; k < K; k += slices) {
            Index q = k;
            const int ow = int(take_mod(q, Index(OW)));
            const int oh = int(take_mod(q, Index(OH)));
            const int od = int(take_mod(q, Index(OD)));
            const Index n = q;
            const Index pix = yt.pixel(n, Index(od), Index(oh), Index(ow));
            const Acc g = load_dw_grads<T, V>(dy, y, act, pix, yt.sc, f0);
            const int d = od * SD + off_d, h = oh * SH + off_h, w = ow * SW + off_w;
            Acc xv = zero_acc<T, V>();
            if (in_range(d, ID) && in_range(h, IH) && in_range(w, IW))
                xv = load_dw_inputs<T, V>(x, xt.pixel(n, Index(d), Index(h), Index(w)), xt.sc, f0, dm);
#pragma unroll
            for (int v = 0; v < V; ++v) acc.v[v] += xv.v[v] * g.v[v];
        }
        typename Traits<T>::acc_t* out = ws + z * E + t * F + f0;
#pragma unroll
        for (int v = 0; v < V; ++v) out[v] = acc.v[v];
    }
}

// Pass 1 of the bias gradient: thread (slice z, channel vector j) sums positions k = z, z + S, ...
// of the N*P positions into plane z of ws (S, F); wgrad_sum adds the planes in slice order.
template <typename T, typename Index, int V>
__global__ void __launch_bounds__(256, 2) bias_grad(
    const T* __restrict__ dy, const T* __restrict__ y, int act, typename Traits<T>::acc_t* __restrict__ ws,
    Index N, int F, Index P, int channels_last, Index slices) {
    typedef AccVec<T, V> Acc;
    const bool cl = channels_last != 0;
    const Index nvec = Index(F / V);
    const Index total = slices * nvec, K = N * P;
    const Tensor5<Index> yt(Index(F), Index(1), Index(1), P, cl);

    for (Index i = grid_start_x<Index>(); i < total; i += grid_step_x<Index>()) {
        Index r = i, z, j;
        if (cl) {  // channel vectors fastest: a warp reads whole pixels
            j = take_mod(r, nvec);
            z = r;
        } else {   // slices fastest: a warp reads consecutive positions of one channel plane
            z = take_mod(r, slices);
            j = r;
        }
        const int f0 = int(j) * V;
        Acc acc = zero_acc<T, V>();
        for (Index k = z; k < K; k += slices) {
            Index q = k;
            const Index p = take_mod(q, P);
            const Acc g = load_dw_grads<T, V>(dy, y, act, yt.pixel(q, Index(0), Index(0), p), yt.sc, f0);
#pragma unroll
            for (int v = 0; v < V; ++v) acc.v[v] += g.v[v];
        }
        typename Traits<T>::acc_t* out = ws + z * Index(F) + f0;
#pragma unroll
        for (int v = 0; v < V; ++v) out[v] = acc.v[v];
    }
}

}  // namespace gc

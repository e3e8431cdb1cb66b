// memory_bound.cuh: what the memory-bound kernels share (depthwise, separable, pooling,
// upsampling, locally connected).
//
//   gc::Vec<T, V>      V consecutive elements aligned to their full size: a 16-byte vector (float x4,
//                      half x8, double x2) moves in one 128-bit load or store
//   gc::AccVec<T, V>   the same lanes widened to the accumulation type
//   gc::Tensor5        element offsets of an (N, C, D, H, W) tensor stored channels_last or
//                      channels_first; 1-D and 2-D ops use the same view with leading extents of 1
//   gc::Pixel5         an output coordinate decoded from a flat work index
//   gc::vector_work_items / decode_vector_work / store_acc_vec / for_each_input_vector
//                      the one-thread-per-(pixel, channel vector) kernels' work split and store
//   gc::window_sum     one output pixel's depthwise window (depthwise_direct, separable_fused)
//
// Launch bounds: every kernel of these families is declared __launch_bounds__(256, 2). With the
// thread count alone, ptxas (CUDA 13) caps registers at an occupancy step (32/40/64/80) and
// spills even small kernels; asking for two resident blocks gives it up to 128 registers and
// still leaves 16 warps per SM to hide memory latency. depthwise_tile and separable_fused still
// spilled a few bytes at 128 (sm_80 k4, sm_90 float64 int64) and take (256, 1).
//
// The host picks V > 1 only for channels_last tensors whose channel count is a multiple of V and
// whose base pointers are 16-byte aligned (gpuconv/cuda/memory_bound.py), so a vector never
// straddles two pixels.
#pragma once

#include "common.cuh"

namespace gc {

template <typename T, int V>
struct __align__(sizeof(T) * V) Vec {
    T v[V];
};

template <typename T, int V>
struct AccVec {
    typename Traits<T>::acc_t v[V];
};

template <typename T, int V>
__device__ __forceinline__ Vec<T, V> load_vec(const T* __restrict__ p) {
    return *reinterpret_cast<const Vec<T, V>*>(p);
}

template <typename T, int V>
__device__ __forceinline__ void store_vec(T* __restrict__ p, const Vec<T, V>& v) {
    *reinterpret_cast<Vec<T, V>*>(p) = v;
}

template <typename T, int V>
__device__ __forceinline__ Vec<T, V> zero_vec() {
    Vec<T, V> r;
#pragma unroll
    for (int i = 0; i < V; ++i) r.v[i] = Traits<T>::from_acc(typename Traits<T>::acc_t(0));
    return r;
}

template <typename T, int V>
__device__ __forceinline__ AccVec<T, V> zero_acc() {
    AccVec<T, V> r;
#pragma unroll
    for (int i = 0; i < V; ++i) r.v[i] = typename Traits<T>::acc_t(0);
    return r;
}

template <typename T, int V>
__device__ __forceinline__ AccVec<T, V> widen(const Vec<T, V>& x) {
    AccVec<T, V> r;
#pragma unroll
    for (int i = 0; i < V; ++i) r.v[i] = Traits<T>::to_acc(x.v[i]);
    return r;
}

template <typename T, int V>
__device__ __forceinline__ Vec<T, V> narrow(const AccVec<T, V>& x) {
    Vec<T, V> r;
#pragma unroll
    for (int i = 0; i < V; ++i) r.v[i] = Traits<T>::from_acc(x.v[i]);
    return r;
}

// Element offsets of an (N, C, D, H, W) tensor. Only the strides differ between the layouts, so
// one kernel body serves both: channels_last has unit channel stride, channels_first unit pixel
// stride.
template <typename Index>
struct Tensor5 {
    Index sn, sc, sp;  // batch, channel and pixel strides, in elements
    Index H, W;

    __device__ __forceinline__ Tensor5(Index C, Index D, Index H_, Index W_, bool channels_last) : H(H_), W(W_) {
        const Index pixels = D * H_ * W_;
        sn = C * pixels;
        sc = channels_last ? Index(1) : pixels;
        sp = channels_last ? C : Index(1);
    }

    __device__ __forceinline__ Index pixel(Index n, Index d, Index h, Index w) const {
        return n * sn + ((d * H + h) * W + w) * sp;
    }

    __device__ __forceinline__ Index at(Index n, Index c, Index d, Index h, Index w) const {
        return pixel(n, d, h, w) + c * sc;
    }
};

// One unit of work of an elementwise-style kernel: an output pixel and a group of `V` channels.
// The flat index is decoded so that consecutive threads touch consecutive addresses: channel groups
// vary fastest for channels_last, output columns fastest for channels_first.
template <typename Index>
struct Pixel5 {
    Index n, c, d, h, w;
};

// q = a / b, and a becomes a % b (0 <= a, 0 < b). 32-bit: the inline hardware sequence. 64-bit:
// integer division is a subroutine call (see common.cuh reciprocal), so the quotient comes from the double
// reciprocal, exact up to one unit for a < 2**52, and is corrected with integer arithmetic.
__device__ __forceinline__ int divmod(int& a, int b) {
    const int q = a / b;
    a -= q * b;
    return q;
}

__device__ __forceinline__ long long divmod(long long& a, long long b) {
    long long q = (long long)(double(a) * reciprocal(double(b)));
    long long r = a - q * b;
    while (r < 0) { --q; r += b; }
    while (r >= b) { ++q; r -= b; }
    a = r;
    return q;
}

// Splits `i` into (i % b) returned and i / b left in `i`.
template <typename Index>
__device__ __forceinline__ Index take_mod(Index& i, Index b) {
    Index r = i;
    i = divmod(r, b);
    return r;
}

template <typename Index>
__device__ __forceinline__ Pixel5<Index> decode_work(Index i, Index groups, Index D, Index H, Index W,
                                                     bool channels_last) {
    Pixel5<Index> p;
    if (channels_last) {
        p.c = take_mod(i, groups);
        p.w = take_mod(i, W);
        p.h = take_mod(i, H);
        p.d = take_mod(i, D);
        p.n = i;
    } else {
        p.w = take_mod(i, W);
        p.h = take_mod(i, H);
        p.d = take_mod(i, D);
        p.c = take_mod(i, groups);
        p.n = i;
    }
    return p;
}

// The work of a one-thread-per-(output pixel, channel vector) kernel (pooling, upsampling,
// depthwise_direct): N * OD * OH * OW pixels times C / V vectors, walked by a grid-stride loop.
template <int V, typename Index>
__device__ __forceinline__ Index vector_work_items(Index N, int C, int OD, int OH, int OW) {
    return N * Index(OD) * Index(OH) * Index(OW) * Index(C / V);
}

// Work item i of vector_work_items as an output coordinate; c is its first channel.
template <int V, typename Index>
__device__ __forceinline__ Pixel5<Index> decode_vector_work(Index i, int C, int OD, int OH, int OW,
                                                            bool channels_last) {
    Pixel5<Index> p = decode_work<Index>(i, Index(C / V), Index(OD), Index(OH), Index(OW), channels_last);
    p.c *= V;
    return p;
}

// Stores V finished lanes at element offset `off`: one vector access when V > 1.
template <typename T, int V, typename Index>
__device__ __forceinline__ void store_acc_vec(T* __restrict__ y, Index off, const AccVec<T, V>& acc) {
    const Vec<T, V> out = narrow<T, V>(acc);
    if (V > 1) {
        store_vec<T, V>(y + off, out);
    } else {
        y[off] = out.v[0];
    }
}

// The walk of the gather-form backward kernels (pooling_backward.cu, upsample_backward.cu): one
// thread per vector of V input cells of the (N, C, ID, IH, IW) input `xt` describes, by a
// grid-stride loop; `cell_gradient(p)` sums the cell's gradient over the outputs that read it
// (an AccVec) and it is stored into dx at p. No two threads write one cell: no atomics.
template <typename T, int V, typename Index, typename CellGradient>
__device__ __forceinline__ void for_each_input_vector(T* __restrict__ dx, const Tensor5<Index>& xt, Index N, int C,
                                                      int ID, int IH, int IW, bool channels_last,
                                                      CellGradient cell_gradient) {
    const Index total = vector_work_items<V>(N, C, ID, IH, IW);
    for (Index i = grid_start_x<Index>(); i < total; i += grid_step_x<Index>()) {
        const Pixel5<Index> p = decode_vector_work<V>(i, C, ID, IH, IW, channels_last);
        store_acc_vec<T, V>(dx, xt.at(p.n, p.c, p.d, p.h, p.w), cell_gradient(p));
    }
}

// True when 0 <= v < bound (a coordinate inside the unpadded input).
template <typename I>
__device__ __forceinline__ bool in_range(I v, I bound) {
    return v >= I(0) && v < bound;
}

// One output pixel's depthwise window sum over channels c..c+V-1: sum over the KD x KH x KW
// taps of x[n, c, d0 + a*DD, h0 + b*DH, w0 + e*DW] * weight(tap), tap = (a*KH + b)*KW + e
// (weight(tap) returns the V weights; the weight layouts of depthwise.cu and separable.cu
// differ). A padded cell is a literal zero times its weight (like np.pad), so a NaN/Inf weight
// poisons the border outputs exactly as the oracle's do.
template <typename T, int V, typename Index, class Weight>
__device__ __forceinline__ AccVec<T, V> window_sum(const T* __restrict__ x, const Tensor5<Index>& xt, Index n, int c,
                                                   int d0, int h0, int w0, int ID, int IH, int IW, int KD, int KH,
                                                   int KW, int DD, int DH, int DW, Weight weight) {
    AccVec<T, V> acc = zero_acc<T, V>();
    for (int a = 0; a < KD; ++a) {
        const int d = d0 + a * DD;
        for (int b = 0; b < KH; ++b) {
            const int h = h0 + b * DH;
            for (int e = 0; e < KW; ++e) {
                const int ww = w0 + e * DW;
                AccVec<T, V> xv = zero_acc<T, V>();
                if (in_range(d, ID) && in_range(h, IH) && in_range(ww, IW))
                    xv = widen<T, V>(load_vec<T, V>(x + xt.at(n, Index(c), Index(d), Index(h), Index(ww))));
                const AccVec<T, V> wv = weight((a * KH + b) * KW + e);
#pragma unroll
                for (int v = 0; v < V; ++v) acc.v[v] += xv.v[v] * wv.v[v];
            }
        }
    }
    return acc;
}

}  // namespace gc

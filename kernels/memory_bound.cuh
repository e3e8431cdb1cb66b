// memory_bound.cuh: what the memory-bound kernels share (depthwise, separable, pooling,
// upsampling, locally connected).
//
//   gc::Vec<T, V>      V consecutive elements aligned to their full size: a 16-byte vector (float x4,
//                      half x8, double x2) moves in one 128-bit load or store
//   gc::AccVec<T, V>   the same lanes widened to the accumulation type
//   gc::Tensor5        element offsets of an (N, C, D, H, W) tensor stored channels_last or
//                      channels_first; 1-D and 2-D ops use the same view with leading extents of 1
//   gc::Pixel5         an output coordinate decoded from a flat work index
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

// The fused activation, applied by each thread to outputs it has just stored (an L2 hit).
//
// Why not in registers: the activation switch (25 cases, IEEE division, exp, erf, tanh ...)
// contains subroutine calls (the slow paths of division), and ptxas then spills a register tile
// that is live across them (seen on every tile shape tried). Applied here, after the tile's
// accumulators are dead, the same code costs no spills, and the extra traffic is one L2 round trip
// of the thread's own outputs, only when an activation is fused. float16 outputs are activated
// from their rounded value (one extra rounding, far inside the float16 tolerance).
//
// `offsets[P]` are the element offsets of P groups of V outputs, `count` how many are valid, and
// `lane_stride` the distance between the V outputs of a group (1 for a contiguous vector). A
// rolled loop keeps the code single; rotating the offsets keeps every array index a compile-time
// constant, so nothing lands in local memory.
template <typename T, typename Index, int V, int P>
__device__ __forceinline__ void activate_stored(T* __restrict__ y, Index (&offsets)[P], bool (&valid)[P],
                                                Index lane_stride, int act) {
    typedef typename Traits<T>::acc_t A;
    // double: the call into double math makes ptxas spill the live tile state whatever the
    // arrangement, so float64 kernels never contain it; the host runs activation.cu's
    // activate_in_place pass after them instead (gpuconv/cuda/memory_bound.py).
    if (sizeof(A) == 8) return;
    if (act == ACT_LINEAR) return;
#pragma unroll 1
    for (int j = 0; j < P; ++j) {
        if (valid[0]) {
#pragma unroll 1
            for (int i = 0; i < V; ++i) {
                T* p = y + offsets[0] + Index(i) * lane_stride;
                *p = Traits<T>::from_acc(activate_dispatch<A>(act, Traits<T>::to_acc(*p)));
            }
        }
        const Index first = offsets[0];
        const bool first_valid = valid[0];
#pragma unroll
        for (int k = 0; k + 1 < P; ++k) {
            offsets[k] = offsets[k + 1];
            valid[k] = valid[k + 1];
        }
        offsets[P - 1] = first;
        valid[P - 1] = first_valid;
    }
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

// q = a / b, and a becomes a % b.
template <typename Index>
__device__ __forceinline__ Index divmod(Index& a, Index b) {
    const Index q = a / b;
    a -= q * b;
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

// True when 0 <= v < bound (a coordinate inside the unpadded input).
template <typename I>
__device__ __forceinline__ bool in_range(I v, I bound) {
    return v >= I(0) && v < bound;
}

}  // namespace gc

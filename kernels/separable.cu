// separable.cu: separable convolution (depthwise k x k, then pointwise 1x1, bias, activation).
// Bias and every fused activation are applied in the epilogue (common.cuh activate_compact).
//
// separable_fused<T, Index>: one kernel, the intermediate never touches global memory. A CTA
//   takes a run of P consecutive output pixels (flattened over batch and space) and
//   1. computes the depthwise result of those pixels for all M = C*dm mid channels into shared
//      memory, in the accumulation type (consecutive threads take consecutive channels in
//      channels_last, consecutive pixels in channels_first, so the input reads coalesce);
//   2. runs the pointwise GEMM out[P, F] = mid[P, M] @ pw[M, F] from shared memory: each thread
//      owns one output channel of a chunk of FCH channels and PW_PIXELS pixels, reads each pw
//      row element once per CTA (coalesced along F) and the mid values as shared-memory
//      broadcasts.
// pointwise_conv<T, Index>: the second kernel of the two-kernel fallback, taken by the host when
//   P x M does not fit shared memory (gpuconv/cuda/separable.py): the depthwise result comes from
//   global memory (written by depthwise.cu), staged through shared memory in chunks of KC. The
//   intermediate is in the accumulation type (float for gc::half: depthwise.cu's OutT), as in
//   the fused kernel's shared memory, so a depthwise sum past half's range does not become Inf.
//
// Padding: a padded cell is a literal zero times its weight (np.pad semantics), as in depthwise.cu.
#include "common.cuh"
#include "memory_bound.cuh"

namespace gc {

constexpr int PW_PIXELS = 8;  // output pixels per thread in the pointwise stage

// acc[j] += sum_k tile[(pix0 + j*pstep) * ld + k] * pw[(k0 + k) * F + f] for k < kcount.
template <typename T>
__device__ __forceinline__ void pointwise_accumulate(const typename Traits<T>::acc_t* tile, int ld, int kcount,
                                                     int pix0, int pstep, const T* __restrict__ pw, int k0, int F,
                                                     int f, bool f_ok, typename Traits<T>::acc_t (&acc)[PW_PIXELS]) {
    typedef typename Traits<T>::acc_t A;
    for (int k = 0; k < kcount; ++k) {
        const A wv = f_ok ? Traits<T>::to_acc(pw[(long long)(k0 + k) * F + f]) : A(0);
#pragma unroll
        for (int j = 0; j < PW_PIXELS; ++j) acc[j] += tile[(pix0 + j * pstep) * ld + k] * wv;
    }
}

// Epilogue of one thread's PW_PIXELS outputs of channel f: bias, activation, store.
template <typename T, typename Index>
__device__ __forceinline__ void pointwise_store(T* __restrict__ y, typename Traits<T>::acc_t (&acc)[PW_PIXELS],
                                                const T* __restrict__ bias, int act, Index p0, int pix0, int pstep,
                                                Index total_pixels, Index S, int F, int f, bool f_ok,
                                                bool channels_last) {
    if (f_ok)
#pragma unroll
        for (int j = 0; j < PW_PIXELS; ++j) acc[j] = add_bias<T>(acc[j], bias, f);
    activate_compact(act, acc);
    Index off[PW_PIXELS];
    bool ok[PW_PIXELS];
#pragma unroll
    for (int j = 0; j < PW_PIXELS; ++j) {
        const Index gp = p0 + Index(pix0 + j * pstep);
        ok[j] = f_ok && gp < total_pixels;
        Index s = gp;
        const Index n = divmod(s, S);
        off[j] = channels_last ? gp * F + f : (n * F + f) * S + s;
        if (ok[j]) y[off[j]] = Traits<T>::from_acc(acc[j]);
    }
}

// The pointwise stage's thread split, the same in both kernels: FCH threads along F (the host
// launches a multiple of FCH threads), the rest in pixel groups of PW_PIXELS pixels each.
struct PointwiseSplit {
    int groups;  // pixel groups per CTA
    int P;       // output pixels per CTA
    int f_lane, group;

    __device__ __forceinline__ explicit PointwiseSplit(int FCH)
        : groups(int(blockDim.x) / FCH), P(groups * PW_PIXELS), f_lane(int(threadIdx.x) % FCH),
          group(int(threadIdx.x) / FCH) {}
};

// The pointwise stage of the CTA's P pixels from p0: for each FCH-wide chunk of output channels,
// accumulate(f, f_ok, acc) sums this thread's PW_PIXELS outputs of channel f, then they are stored.
template <typename T, typename Index, class Accumulate>
__device__ __forceinline__ void pointwise_pass(T* __restrict__ y, const T* __restrict__ bias, int act,
                                               const PointwiseSplit& split, int FCH, int F, Index p0,
                                               Index total_pixels, Index S, bool channels_last,
                                               Accumulate accumulate) {
    typedef typename Traits<T>::acc_t A;
    for (int f0 = 0; f0 < F; f0 += FCH) {
        const int f = f0 + split.f_lane;
        const bool f_ok = f < F;
        A acc[PW_PIXELS];
#pragma unroll
        for (int j = 0; j < PW_PIXELS; ++j) acc[j] = A(0);
        accumulate(f, f_ok, acc);
        pointwise_store<T, Index>(y, acc, bias, act, p0, split.group, split.groups, total_pixels, S, F, f, f_ok,
                                  channels_last);
    }
}

template <typename T, typename Index>
__global__ void __launch_bounds__(256, 1) separable_fused(
    const T* __restrict__ x, const T* __restrict__ dw, const T* __restrict__ pw, const T* __restrict__ bias,
    T* __restrict__ y, int N, int C, int dm, int F, int ID, int IH, int IW, int OD, int OH, int OW, int KD, int KH,
    int KW, int SD, int SH, int SW, int DD, int DH, int DW, int pad_d, int pad_h, int pad_w, int channels_last,
    int FCH, int act) {
    typedef typename Traits<T>::acc_t A;
    GC_DYNAMIC_SHARED(unsigned char, sep_smem);
    A* mid = reinterpret_cast<A*>(sep_smem);

    const bool cl = channels_last != 0;
    const Tensor5<Index> xt(Index(C), Index(ID), Index(IH), Index(IW), cl);
    const int M = C * dm;
    const Index S = Index(OD) * OH * OW;
    const Index total_pixels = Index(N) * S;
    const int tid = threadIdx.x, nthreads = blockDim.x;
    const PointwiseSplit split(FCH);
    const int P = split.P;
    const Index tiles = (total_pixels + P - 1) / P;

    for (Index tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const Index p0 = tile * P;
        __syncthreads();  // the previous tile's pointwise readers are done with `mid`
        // 1. depthwise into shared memory: mid[p * M + c*dm + m].
        for (int it = tid; it < P * C; it += nthreads) {
            const int p = cl ? it / C : it % P;
            const int c = cl ? it % C : it / P;
            const Index gp = p0 + p;
            const bool live = gp < total_pixels;
            Index s = live ? gp : Index(0);
            const Index n = divmod(s, S);
            Index rest = s;
            const int ow = int(take_mod(rest, Index(OW)));
            const int oh = int(take_mod(rest, Index(OH)));
            const int od = int(rest);
            const int d0 = od * SD - pad_d, h0 = oh * SH - pad_h, w0 = ow * SW - pad_w;
            for (int m = 0; m < dm; ++m) {
                A acc = A(0);
                if (live)
                    acc = window_sum<T, 1>(x, xt, n, c, d0, h0, w0, ID, IH, IW, KD, KH, KW, DD, DH, DW, [&](int tap) {
                              AccVec<T, 1> wv;
                              wv.v[0] = Traits<T>::to_acc(dw[(tap * C + c) * dm + m]);
                              return wv;
                          }).v[0];
                mid[p * M + c * dm + m] = acc;
            }
        }
        __syncthreads();
        // 2. pointwise from shared memory, FCH output channels at a time.
        pointwise_pass<T, Index>(y, bias, act, split, FCH, F, p0, total_pixels, S, cl,
                                 [&](int f, bool f_ok, A (&acc)[PW_PIXELS]) {
                                     pointwise_accumulate<T>(mid, M, M, split.group, split.groups, pw, 0, F, f, f_ok,
                                                             acc);
                                 });
    }
}

template <typename T, typename Index>
__global__ void __launch_bounds__(256, 2) pointwise_conv(const typename Traits<T>::acc_t* __restrict__ mid_g,
                                                      const T* __restrict__ pw,
                                                      const T* __restrict__ bias, T* __restrict__ y, Index total_pixels,
                                                      Index S, int M, int F, int channels_last, int FCH,
                                                      int KC, int act) {
    typedef typename Traits<T>::acc_t A;
    GC_DYNAMIC_SHARED(unsigned char, pw_smem);
    A* tile_s = reinterpret_cast<A*>(pw_smem);
    const bool cl = channels_last != 0;
    const int tid = threadIdx.x, nthreads = blockDim.x;
    const PointwiseSplit split(FCH);
    const int P = split.P;
    const Index tiles = (total_pixels + P - 1) / P;

    for (Index tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const Index p0 = tile * P;
        pointwise_pass<T, Index>(y, bias, act, split, FCH, F, p0, total_pixels, S, cl,
                                 [&](int f, bool f_ok, A (&acc)[PW_PIXELS]) {
            for (int k0 = 0; k0 < M; k0 += KC) {
                const int kc = min(KC, M - k0);
                __syncthreads();  // previous chunk consumed
                for (int it = tid; it < P * kc; it += nthreads) {
                    const int p = cl ? it / kc : it % P;
                    const int k = cl ? it % kc : it / P;
                    const Index gp = p0 + p;
                    A v = A(0);
                    if (gp < total_pixels) {
                        Index s = gp;
                        const Index n = divmod(s, S);
                        v = mid_g[cl ? gp * M + (k0 + k) : (n * M + (k0 + k)) * S + s];
                    }
                    tile_s[p * kc + k] = v;
                }
                __syncthreads();
                pointwise_accumulate<T>(tile_s, kc, kc, split.group, split.groups, pw, k0, F, f, f_ok, acc);
            }
        });
    }
}

}  // namespace gc

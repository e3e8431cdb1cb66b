// separable.cu: separable convolution (depthwise k x k, then pointwise 1x1, bias, activation).
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
//   global memory (written by depthwise.cu), staged through shared memory in chunks of KC.
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

// Bias and store of one thread's PW_PIXELS outputs of channel f (the activation is
// activation.cu's in-place pass).
template <typename T, typename Index>
__device__ __forceinline__ void pointwise_store(T* __restrict__ y, typename Traits<T>::acc_t (&acc)[PW_PIXELS],
                                                const T* __restrict__ bias, Index p0, int pix0, int pstep,
                                                Index total_pixels, Index S, int F, int f, bool f_ok,
                                                bool channels_last) {
    Index off[PW_PIXELS];
    bool ok[PW_PIXELS];
#pragma unroll
    for (int j = 0; j < PW_PIXELS; ++j) {
        const Index gp = p0 + Index(pix0 + j * pstep);
        ok[j] = f_ok && gp < total_pixels;
        Index s = gp;
        const Index n = divmod(s, S);
        off[j] = channels_last ? gp * F + f : (n * F + f) * S + s;
        if (ok[j]) {
            typename Traits<T>::acc_t v = acc[j];
            if (bias != nullptr) v += Traits<T>::to_acc(bias[f]);
            y[off[j]] = Traits<T>::from_acc(v);
        }
    }
}

template <typename T, typename Index>
__global__ void __launch_bounds__(256, 1) separable_fused(
    const T* __restrict__ x, const T* __restrict__ dw, const T* __restrict__ pw, const T* __restrict__ bias,
    T* __restrict__ y, int N, int C, int dm, int F, int ID, int IH, int IW, int OD, int OH, int OW, int KD, int KH,
    int KW, int SD, int SH, int SW, int DD, int DH, int DW, int pad_d, int pad_h, int pad_w, int channels_last,
    int FCH) {
    typedef typename Traits<T>::acc_t A;
    extern __shared__ __align__(16) unsigned char sep_smem[];
    A* mid = reinterpret_cast<A*>(sep_smem);

    const bool cl = channels_last != 0;
    const Tensor5<Index> xt(Index(C), Index(ID), Index(IH), Index(IW), cl);
    const int M = C * dm;
    const int taps = KD * KH * KW;
    const Index S = Index(OD) * OH * OW;
    const Index total_pixels = Index(N) * S;
    const int tid = threadIdx.x, nthreads = blockDim.x;
    const int groups = nthreads / FCH;  // the host launches a multiple of FCH threads
    const int P = groups * PW_PIXELS;
    const int f_lane = tid % FCH, group = tid / FCH;
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
                if (live) {
                    for (int a = 0; a < KD; ++a) {
                        const int d = d0 + a * DD;
                        for (int b = 0; b < KH; ++b) {
                            const int h = h0 + b * DH;
                            for (int e = 0; e < KW; ++e) {
                                const int ww = w0 + e * DW;
                                const int tap = (a * KH + b) * KW + e;
                                A xv = A(0);
                                if (in_range(d, ID) && in_range(h, IH) && in_range(ww, IW))
                                    xv = Traits<T>::to_acc(x[xt.at(n, Index(c), Index(d), Index(h), Index(ww))]);
                                acc += xv * Traits<T>::to_acc(dw[(tap * C + c) * dm + m]);
                            }
                        }
                    }
                }
                mid[p * M + c * dm + m] = acc;
            }
        }
        (void)taps;
        __syncthreads();
        // 2. pointwise from shared memory, FCH output channels at a time.
        for (int f0 = 0; f0 < F; f0 += FCH) {
            const int f = f0 + f_lane;
            const bool f_ok = f < F;
            A acc[PW_PIXELS];
#pragma unroll
            for (int j = 0; j < PW_PIXELS; ++j) acc[j] = A(0);
            pointwise_accumulate<T>(mid, M, M, group, groups, pw, 0, F, f, f_ok, acc);
            pointwise_store<T, Index>(y, acc, bias, p0, group, groups, total_pixels, S, F, f, f_ok, cl);
        }
    }
}

template <typename T, typename Index>
__global__ void __launch_bounds__(256, 2) pointwise_conv(const T* __restrict__ mid_g, const T* __restrict__ pw,
                                                      const T* __restrict__ bias, T* __restrict__ y, Index total_pixels,
                                                      Index S, int M, int F, int channels_last, int FCH,
                                                      int KC) {
    typedef typename Traits<T>::acc_t A;
    extern __shared__ __align__(16) unsigned char pw_smem[];
    A* tile_s = reinterpret_cast<A*>(pw_smem);
    const bool cl = channels_last != 0;
    const int tid = threadIdx.x, nthreads = blockDim.x;
    const int groups = nthreads / FCH;
    const int P = groups * PW_PIXELS;
    const int f_lane = tid % FCH, group = tid / FCH;
    const Index tiles = (total_pixels + P - 1) / P;

    for (Index tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const Index p0 = tile * P;
        for (int f0 = 0; f0 < F; f0 += FCH) {
            const int f = f0 + f_lane;
            const bool f_ok = f < F;
            A acc[PW_PIXELS];
#pragma unroll
            for (int j = 0; j < PW_PIXELS; ++j) acc[j] = A(0);
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
                        v = Traits<T>::to_acc(mid_g[cl ? gp * M + (k0 + k) : (n * M + (k0 + k)) * S + s]);
                    }
                    tile_s[p * kc + k] = v;
                }
                __syncthreads();
                pointwise_accumulate<T>(tile_s, kc, kc, group, groups, pw, k0, F, f, f_ok, acc);
            }
            pointwise_store<T, Index>(y, acc, bias, p0, group, groups, total_pixels, S, F, f, f_ok, cl);
        }
    }
}

}  // namespace gc

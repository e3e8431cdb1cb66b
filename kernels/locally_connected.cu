// locally_connected.cu: LocallyConnected1D/2D (unshared weights), Keras 2 implementation=1 layout.
//
//   y[n, p, f] = act(bias[p, f] + sum_k patch(n, p)[k] * w[p, k, f]),  k over prod(kernel) * C
// (every fused activation in the epilogue, common.cuh activate_compact)
// patch order (*k, C) for channels_last and (C, *k) for channels_first; positions row-major;
// padding pairs applied in the gather (a padded cell is a literal zero times its weight).
//
// The op is bound by reading the weights (each is used once per batch item), so a CTA owns one
// output position and FCH filters (consecutive threads on consecutive filters: coalesced weight
// rows) and reuses every weight it loads for LC_BATCH batch items per thread. The patches of
// those items are gathered into shared memory in chunks of KC and read back as broadcasts.
#include "common.cuh"
#include "memory_bound.cuh"

namespace gc {

constexpr int LC_BATCH = 4;  // batch items per thread

template <typename T, typename Index>
__global__ void __launch_bounds__(256, 2) locally_connected(
    const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y, int N, int C,
    int F, int ID, int IH, int IW, int OD, int OH, int OW, int KD, int KH, int KW, int SD, int SH, int SW, int pad_d,
    int pad_h, int pad_w, int channels_last, int FCH, int KC, int act) {
    typedef typename Traits<T>::acc_t A;
    GC_DYNAMIC_SHARED(unsigned char, lc_smem);
    A* patch = reinterpret_cast<A*>(lc_smem);  // [batch chunk][KC]

    const bool cl = channels_last != 0;
    const Tensor5<Index> xt(Index(C), Index(ID), Index(IH), Index(IW), cl);
    const int positions = OD * OH * OW;
    const int taps = KD * KH * KW;
    const int K = taps * C;
    const int tid = threadIdx.x, nthreads = blockDim.x;
    const int bgroups = nthreads / FCH;  // the host launches a multiple of FCH threads
    const int BCH = bgroups * LC_BATCH;  // batch items per chunk
    const int f_lane = tid % FCH, bgroup = tid / FCH;
    const int fchunks = ceil_div(F, FCH);
    const int work = positions * fchunks;  // the host checks it fits in int

    for (int item = blockIdx.x; item < work; item += gridDim.x) {
        const int pos = item / fchunks;
        const int f = (item % fchunks) * FCH + f_lane;
        const bool f_ok = f < F;
        int rest = pos;
        const int ow = rest % OW; rest /= OW;
        const int oh = rest % OH;
        const int od = rest / OH;
        const int d0 = od * SD - pad_d, h0 = oh * SH - pad_h, w0 = ow * SW - pad_w;
        const T* wp = w + (Index(pos) * K) * F;

        for (int b0 = 0; b0 < N; b0 += BCH) {
            A acc[LC_BATCH];
#pragma unroll
            for (int j = 0; j < LC_BATCH; ++j) acc[j] = A(0);
            for (int k0 = 0; k0 < K; k0 += KC) {
                const int kc = min(KC, K - k0);
                __syncthreads();  // the previous chunk is consumed
                for (int it = tid; it < BCH * kc; it += nthreads) {
                    const int bb = it / kc, kk = it % kc, k = k0 + kk, n = b0 + bb;
                    int tap, c;
                    if (cl) { tap = k / C; c = k % C; } else { c = k / taps; tap = k % taps; }
                    const int e = tap % KW, b = (tap / KW) % KH, a = tap / (KW * KH);
                    const int d = d0 + a, h = h0 + b, ww = w0 + e;
                    A v = A(0);
                    if (n < N && in_range(d, ID) && in_range(h, IH) && in_range(ww, IW))
                        v = Traits<T>::to_acc(x[xt.at(Index(n), Index(c), Index(d), Index(h), Index(ww))]);
                    patch[bb * kc + kk] = v;
                }
                __syncthreads();
                for (int kk = 0; kk < kc; ++kk) {
                    const A wv = f_ok ? Traits<T>::to_acc(wp[Index(k0 + kk) * F + f]) : A(0);
#pragma unroll
                    for (int j = 0; j < LC_BATCH; ++j) acc[j] += patch[(bgroup + j * bgroups) * kc + kk] * wv;
                }
            }
            if (f_ok)
#pragma unroll
                for (int j = 0; j < LC_BATCH; ++j) acc[j] = add_bias<T>(acc[j], bias, Index(pos) * F + f);
            activate_compact(act, acc);
            // Output (n, pos, f): channels_last (N, *out, F), channels_first (N, F, *out).
            Index off[LC_BATCH];
            bool ok[LC_BATCH];
#pragma unroll
            for (int j = 0; j < LC_BATCH; ++j) {
                const int n = b0 + bgroup + j * bgroups;
                ok[j] = f_ok && n < N;
                off[j] = cl ? (Index(n) * positions + pos) * F + f : (Index(n) * F + f) * positions + pos;
                if (ok[j]) y[off[j]] = Traits<T>::from_acc(acc[j]);
            }
        }
    }
}

}  // namespace gc

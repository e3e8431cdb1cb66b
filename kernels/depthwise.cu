// depthwise.cu: depthwise convolution, 1-D/2-D/3-D, any depth multiplier, both layouts.
//
//   y[n, c*dm + m, o] = bias[c*dm + m] + sum_t x[n, c, o*s + t*d - pad_before] * w[t, c, m]
//
// Epilogue: bias, then the fused activation (the tile kernel: common.cuh activate_set<ACTS>, built
// for the cheap ones alone or for every one; the direct one: activate_compact, every one).
//
// Two kernels (gpuconv/cuda/depthwise.py chooses):
//
// depthwise_tile<T, Index, V, KD, KH, KW, SD, SH, SW, DD, DH, DW, ACTS[, OutT]>
//   Kernel size, stride and dilation fixed at compile time (the common shapes): every tap loop is
//   unrolled and every halo offset is a constant. A CTA owns an output-stationary tile of
//   TD x TH x TW output pixels x CV channel vectors. It stages the input halo of that tile in
//   shared memory once (zero-filled where the window hangs over the border, so padding never
//   needs a padded copy of the input), then each thread accumulates PPT output pixels of one
//   channel vector in registers, loading each tap's weights into registers once for all PPT
//   pixels. A persistent grid walks the tiles. ACTS (common.cuh ActivationSet): the activations
//   its epilogue is compiled for; the host passes ACTS_CHEAP whenever the layer's is cheap.
//   channels_last: a channel vector is V = 16 / sizeof(T) channels moved in one 128-bit access,
//   consecutive threads take consecutive vectors (coalesced, conflict-free 16-byte smem reads).
//   channels_first: V = 1 and CV = 1; consecutive threads take consecutive output columns of one
//   channel plane, so halo loads and output stores are coalesced along W.
//
// depthwise_direct<T, Index, V[, OutT]>
//   Everything at run time: the fallback for kernel/stride/dilation combinations without a
//   specialisation, for halos too large for shared memory (huge dilation) and for 64-bit offsets.
//   One thread per (output pixel, channel vector), input read straight from global memory
//   through the read-only cache.
//
// Padding: both kernels treat a padded cell as a literal zero multiplied by its weight (the
// tile kernel through its zero-filled halo), the semantics of the np.pad-based oracle.
//
// OutT (last template parameter, default T): the output's type. The separable two-kernel path
// (separable.cu pointwise_conv) has its intermediate written in the accumulation type, so for
// gc::half inputs OutT = float: a depthwise sum past 65504 stays finite there, as it does in the
// fused kernel (which keeps it in shared memory as float) and in the oracle.
#include "common.cuh"
#include "memory_bound.cuh"

namespace gc {

// Output pixels one thread accumulates at a time in the tile kernel (its register tile). Double
// accumulators take two registers each: two pixels keep the double tile clear of spills.
template <typename T>
struct DwPixelsPerThread {
    static constexpr int value = sizeof(typename Traits<T>::acc_t) == 8 ? 2 : 4;
};

// The V weights of tap `tap`, multiplier m, channels c..c+V-1. The host hands the kernel over as
// (*k, dm, C) (transposed from Keras' (*k, C, dm)), so the V channels of one multiplier are
// contiguous and always load as one vector, whatever dm is.
template <typename T, int V>
__device__ __forceinline__ AccVec<T, V> load_dw_weights(const T* __restrict__ w, int tap, int c, int m, int C,
                                                        int dm) {
    return widen<T, V>(load_vec<T, V>(w + (tap * dm + m) * C + c));
}

// Bias of output channels (c+i)*dm + m and the fused activation (common.cuh), on the V lanes.
// COMPACT: activate_compact (one copy of the activation bodies: the direct kernel), else
// activate_set<ACTS>'s inline switch per pixel (the tile kernel, whose register tile was tuned
// with it; a compact epilogue there shrinks its code 7x but moves ptxas' register allocation
// across occupancy steps in some instantiations, which only a GPU run can judge).
template <typename T, int V, bool COMPACT, int ACTS = ACTS_ANY>
__device__ __forceinline__ void dw_epilogue(AccVec<T, V>& acc, const T* __restrict__ bias, int c, int m, int dm,
                                            int act) {
#pragma unroll
    for (int i = 0; i < V; ++i) acc.v[i] = add_bias<T>(acc.v[i], bias, (c + i) * dm + m);
    if constexpr (COMPACT) {
        activate_compact(act, acc.v);
    } else {
        activate_set<ACTS>(act, acc.v);
    }
}

// Stores the V finished outputs (channels (c+i)*dm + m) of the pixel at `pixel_offset`, as OutT.
template <typename T, typename OutT, typename Index, int V>
__device__ __forceinline__ void store_dw_outputs(OutT* __restrict__ y, Index pixel_offset, Index channel_stride,
                                                 const AccVec<T, V>& acc, int c, int m, int dm) {
    typedef typename Traits<OutT>::acc_t OutAcc;
    Vec<OutT, V> out;
#pragma unroll
    for (int i = 0; i < V; ++i) out.v[i] = Traits<OutT>::from_acc(OutAcc(acc.v[i]));
    if (V > 1 && dm == 1) {  // channels_last (unit channel stride): V consecutive output channels
        // In 16-byte pieces: one store when OutT is T; two when the V halves are written as float.
        constexpr int P = sizeof(OutT) * V > 16 ? int(16 / sizeof(OutT)) : V;
#pragma unroll
        for (int i0 = 0; i0 < V; i0 += P) {
            Vec<OutT, P> piece;
#pragma unroll
            for (int i = 0; i < P; ++i) piece.v[i] = out.v[i0 + i];
            store_vec<OutT, P>(y + pixel_offset + Index(c + i0), piece);
        }
        return;
    }
#pragma unroll
    for (int i = 0; i < V; ++i) y[pixel_offset + (Index(c + i) * dm + m) * channel_stride] = out.v[i];
}

// CTAs per SM the tile kernel's ACTS_CHEAP build is held to (__launch_bounds__). With the 25
// activation bodies gone, ptxas spends registers more freely: uncapped, 30 of the 144 cheap
// builds fell an occupancy step below their ACTS_ANY twins in the NVRTC audit (sm_80, sm_90). The
// caps give each at least its twin's occupancy there, with no spills: channels_last
// vectors 2 (3 for double 1-D rows; 1 for the float 7x7 row, whose twin needs more than 128
// registers); scalar builds (V = 1: channels_first planes, and channels_last channel counts that
// do not divide into vectors) 4 for rows of up to 4 taps, 3 for 5, 2 for 7. The float
// vector 1-D k4 row has no cheap build (it spilled at 2 CTAs on sm_80; gpuconv/cuda/depthwise.py).
template <typename T, int V, int KD, int KH, int KW>
struct DwCheapMinBlocks {
    static constexpr bool one_d = KD == 1 && KH == 1;
    static constexpr int value = V > 1 ? (sizeof(T) == 8 && one_d ? 3 : sizeof(T) == 4 && KW >= 7 ? 1 : 2)
                                       : (KW >= 7 ? 2 : KW >= 5 ? 3 : 4);
};

template <typename T, typename Index, int V, int KD, int KH, int KW, int SD, int SH, int SW, int DD, int DH, int DW,
          int ACTS, typename OutT = T>
__global__ void __launch_bounds__(256, ACTS == ACTS_CHEAP ? DwCheapMinBlocks<T, V, KD, KH, KW>::value : 1) depthwise_tile(
    const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, OutT* __restrict__ y,
    int N, int C, int dm, int ID, int IH, int IW, int OD, int OH, int OW, int pad_d, int pad_h, int pad_w,
    int channels_last, int TD, int TH, int TW, int CV, int act) {
    typedef AccVec<T, V> Acc;
    constexpr int PPT = DwPixelsPerThread<T>::value;
    GC_DYNAMIC_SHARED(unsigned char, dw_smem);
    Vec<T, V>* halo = reinterpret_cast<Vec<T, V>*>(dw_smem);

    const Tensor5<Index> xt(Index(C), Index(ID), Index(IH), Index(IW), channels_last != 0);
    const Tensor5<Index> yt(Index(C) * dm, Index(OD), Index(OH), Index(OW), channels_last != 0);

    // Halo extents: the input box read by a TD x TH x TW output tile.
    const int HD = (TD - 1) * SD + (KD - 1) * DD + 1;
    const int HH = (TH - 1) * SH + (KH - 1) * DH + 1;
    const int HW = (TW - 1) * SW + (KW - 1) * DW + 1;
    const int halo_cells = HD * HH * HW * CV;

    const int tiles_c = ceil_div(C, CV * V), tiles_w = ceil_div(OW, TW);
    const int tiles_h = ceil_div(OH, TH), tiles_d = ceil_div(OD, TD);
    // The host guarantees tiles < 2**31: 32-bit division is inline, 64-bit division is a
    // subroutine call whose ABI makes ptxas spill the live tile state.
    const int tiles = N * tiles_d * tiles_h * tiles_w * tiles_c;

    const int tid = threadIdx.x, nthreads = blockDim.x;
    const int cv = tid % CV;         // this thread's channel vector within the tile
    const int lane = tid / CV;       // and its rank among the threads sharing that vector
    const int lanes = nthreads / CV;  // the host launches a multiple of CV threads
    const int tile_pixels = TD * TH * TW;

    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        int r = tile;
        const int ct = r % tiles_c; r /= tiles_c;
        const int tw = r % tiles_w; r /= tiles_w;
        const int th = r % tiles_h; r /= tiles_h;
        const int tdp = r % tiles_d;
        const int n = r / tiles_d;
        const int od0 = tdp * TD, oh0 = th * TH, ow0 = tw * TW, c0 = ct * CV * V;
        const int id0 = od0 * SD - pad_d, ih0 = oh0 * SH - pad_h, iw0 = ow0 * SW - pad_w;

        __syncthreads();  // every reader of the previous tile's halo is done
        for (int i = tid; i < halo_cells; i += nthreads) {
            const int hv = i % CV;
            int p = i / CV;
            const int hw = p % HW; p /= HW;
            const int hh = p % HH;
            const int hd = p / HH;
            const int d = id0 + hd, h = ih0 + hh, ww = iw0 + hw, c = c0 + hv * V;
            Vec<T, V> v = zero_vec<T, V>();
            if (c < C && in_range(d, ID) && in_range(h, IH) && in_range(ww, IW))
                v = load_vec<T, V>(x + xt.at(Index(n), Index(c), Index(d), Index(h), Index(ww)));
            halo[i] = v;
        }
        __syncthreads();

        const int c = c0 + cv * V;
        const bool c_ok = c < C;
        for (int group = 0; group < tile_pixels; group += lanes * PPT) {
            int base[PPT];      // halo pixel index of each output pixel's first tap
            bool ok[PPT];
            Index yoff[PPT];
#pragma unroll
            for (int j = 0; j < PPT; ++j) {
                const int p = group + lane + j * lanes;
                const int pd = p / (TH * TW), rem = p % (TH * TW);
                const int ph = rem / TW, pw = rem % TW;
                ok[j] = c_ok && p < tile_pixels && od0 + pd < OD && oh0 + ph < OH && ow0 + pw < OW;
                base[j] = ok[j] ? ((pd * SD) * HH + ph * SH) * HW + pw * SW : 0;  // idle lanes read cell 0
                yoff[j] = ok[j] ? yt.pixel(Index(n), Index(od0 + pd), Index(oh0 + ph), Index(ow0 + pw)) : Index(0);
            }
            for (int m = 0; m < dm; ++m) {
                Acc acc[PPT];
#pragma unroll
                for (int j = 0; j < PPT; ++j) acc[j] = zero_acc<T, V>();
                // Rows of taps stay rolled (their offset is one multiply-add); the taps of a row
                // are unrolled, so a row's weights sit in registers for all PPT pixels. Unrolling
                // all KD*KH*KW taps would only buy register pressure and compile time.
#pragma unroll 1
                for (int a = 0; a < KD; ++a) {
#pragma unroll 1
                    for (int b = 0; b < KH; ++b) {
                        const int row = ((a * DD) * HH + b * DH) * HW;
                        const int tap0 = (a * KH + b) * KW;
#pragma unroll
                        for (int e = 0; e < KW; ++e) {
                            Acc wv = zero_acc<T, V>();
                            if (c_ok) wv = load_dw_weights<T, V>(w, tap0 + e, c, m, C, dm);
#pragma unroll
                            for (int j = 0; j < PPT; ++j) {
                                const Acc xv = widen<T, V>(halo[(base[j] + row + e * DW) * CV + cv]);
#pragma unroll
                                for (int i = 0; i < V; ++i) acc[j].v[i] += xv.v[i] * wv.v[i];
                            }
                        }
                    }
                }
                if (c_ok)
#pragma unroll
                    for (int j = 0; j < PPT; ++j) dw_epilogue<T, V, false, ACTS>(acc[j], bias, c, m, dm, act);
#pragma unroll
                for (int j = 0; j < PPT; ++j)
                    if (ok[j]) store_dw_outputs<T, OutT, Index, V>(y, yoff[j], yt.sc, acc[j], c, m, dm);
            }
        }
    }
}

template <typename T, typename Index, int V, typename OutT = T>
__global__ void __launch_bounds__(256, 2) depthwise_direct(
    const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, OutT* __restrict__ y,
    Index N, int C, int dm, int ID, int IH, int IW, int OD, int OH, int OW, int KD, int KH, int KW, int SD, int SH,
    int SW, int DD, int DH, int DW, int pad_d, int pad_h, int pad_w, int channels_last, int act) {
    typedef AccVec<T, V> Acc;
    const bool cl = channels_last != 0;
    const Tensor5<Index> xt(Index(C), Index(ID), Index(IH), Index(IW), cl);
    const Tensor5<Index> yt(Index(C) * dm, Index(OD), Index(OH), Index(OW), cl);
    const Index total = vector_work_items<V>(N, C, OD, OH, OW);

    for (Index i = grid_start_x<Index>(); i < total; i += grid_step_x<Index>()) {
        const Pixel5<Index> o = decode_vector_work<V>(i, C, OD, OH, OW, cl);
        const int c = int(o.c);
        const int d0 = int(o.d) * SD - pad_d, h0 = int(o.h) * SH - pad_h, w0 = int(o.w) * SW - pad_w;
        const Index yoff = yt.pixel(o.n, o.d, o.h, o.w);
        for (int m = 0; m < dm; ++m) {
            Acc acc = window_sum<T, V>(x, xt, o.n, c, d0, h0, w0, ID, IH, IW, KD, KH, KW, DD, DH, DW,
                                       [&](int tap) { return load_dw_weights<T, V>(w, tap, c, m, C, dm); });
            dw_epilogue<T, V, true>(acc, bias, c, m, dm, act);
            store_dw_outputs<T, OutT, Index, V>(y, yoff, yt.sc, acc, c, m, dm);
        }
    }
}

}  // namespace gc

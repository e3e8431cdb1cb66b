// common.cuh: what every gpuconv kernel shares.
//
//   gc::half            16-bit float storage type (raw IEEE binary16 payload, no cuda_fp16.h)
//   gc::bfloat16        16-bit bfloat16 storage type (raw bits, the upper half of a binary32)
//   gc::Traits<T>       acc_t (float for half, bfloat16 and float, double for double), to_acc, from_acc
//   gc::Act / activate<ACT>(x) / activate_dispatch(act, x) / activate_inline(act, x) / activate_set<ACTS>(act, v) / activate_compact(act, v)  the fused
//                       activations; the numbering is mirrored in gpuconv/cuda/epilogue.py
//   gc::add_bias, gc::epilogue  bias (+ activation), the end of every convolution kernel
//   gc::Layout          CHANNELS_LAST / CHANNELS_FIRST (a template parameter of layout-aware kernels)
//   gc::reciprocal / quotient / sqrt_ge1  division and sqrt without a slow-path subroutine call
//   gc::ceil_div, gc::grid-stride helpers
//
// Why no cuda_fp16.h: the pip packages CI has (cupy-cuda13x, nvidia-cuda-nvrtc) ship NVRTC but
// not the CUDA toolkit headers, so this file must compile through plain NVRTC with no -I at all.
// binary16 <-> binary32 conversion is one PTX instruction each (cvt), available on every
// architecture we build for (sm_80, sm_90); NVRTC also provides expf/erff/... built in.
//
// Index type: kernels take `typename Index` (int or long long) as a template parameter and do
// every offset computation in it; the host picks it from the largest byte offset
// (gpuconv/cuda/indexing.py).
#pragma once

#include "ptx.cuh"

// Dynamic shared memory, declared the one way both targets accept: on the GPU the usual
// `extern __shared__` array, under the cuda-emulator a pointer to the launch's buffer (exactly
// the bytes the launch asked for, so a read past them is caught).
#ifdef GPUCONV_EMULATOR
#define GC_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(gcemu::dynamic_shared())
#else
#define GC_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) T name[]
#endif

namespace gc {

// ------------------------------------------------------------------------------------------
// Storage types and accumulation traits
// ------------------------------------------------------------------------------------------
struct __align__(2) half {
    unsigned short bits;
};

struct __align__(2) bfloat16 {
    unsigned short bits;
};

__device__ __forceinline__ float half_to_float(half h) { return ptx::cvt_f32_f16(h.bits); }

__device__ __forceinline__ half float_to_half(float f) {
    half h;
    h.bits = ptx::cvt_rn_f16_f32(f);  // round to nearest even, like NumPy
    return h;
}

template <typename T>
struct Traits;

template <>
struct Traits<float> {
    typedef float acc_t;
    static __device__ __forceinline__ float to_acc(float v) { return v; }
    static __device__ __forceinline__ float from_acc(float v) { return v; }
};

template <>
struct Traits<double> {
    typedef double acc_t;
    static __device__ __forceinline__ double to_acc(double v) { return v; }
    static __device__ __forceinline__ double from_acc(double v) { return v; }
};

template <>
struct Traits<half> {
    typedef float acc_t;  // half accumulates in float (robustness item 28)
    static __device__ __forceinline__ float to_acc(half v) { return half_to_float(v); }
    static __device__ __forceinline__ half from_acc(float v) { return float_to_half(v); }
};

template <>
struct Traits<bfloat16> {
    typedef float acc_t;
    static __device__ __forceinline__ float to_acc(bfloat16 v) { return ptx::cvt_f32_bf16(v.bits); }
    static __device__ __forceinline__ bfloat16 from_acc(float v) {
        bfloat16 b;
        b.bits = ptx::cvt_rn_bf16_f32(v);  // round to nearest even, like ml_dtypes
        return b;
    }
};

// Read one element through the read-only data path and widen it to the accumulation type.
template <typename T>
__device__ __forceinline__ typename Traits<T>::acc_t load_acc(const T* __restrict__ p) {
    return Traits<T>::to_acc(*p);
}

template <typename T>
__device__ __forceinline__ void store_from_acc(T* __restrict__ p, typename Traits<T>::acc_t v) {
    *p = Traits<T>::from_acc(v);
}

// ------------------------------------------------------------------------------------------
// Layouts
// ------------------------------------------------------------------------------------------
enum Layout { CHANNELS_LAST = 0, CHANNELS_FIRST = 1 };

// ------------------------------------------------------------------------------------------
// Math overloads so one activation body serves float and double
// ------------------------------------------------------------------------------------------
__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double m_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float m_erfc(float x) { return erfcf(x); }
__device__ __forceinline__ double m_erfc(double x) { return erfc(x); }
__device__ __forceinline__ float m_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double m_fma(double a, double b, double c) { return fma(a, b, c); }
__device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return fabs(x); }

// ------------------------------------------------------------------------------------------
// Division and square root without a subroutine call
// ------------------------------------------------------------------------------------------
// With --prec-div/--prec-sqrt (IEEE results, options.py) `a / b` and sqrt compile to a fast path
// plus a CALL to a slow-path subroutine (so do __frcp_rn / __drcp_rn), and ptxas then caps the
// registers of the whole calling kernel and spills its register tiles. The activations, average
// pooling and 64-bit index division use these instead: the hardware approximation refined by
// Newton steps (FMAs only), within an ulp or two of the IEEE result.
__device__ __forceinline__ float max_finite(float) { return 0x1.fffffep127f; }
__device__ __forceinline__ double max_finite(double) { return 0x1.fffffffffffffp1023; }

// 1 / b for normal b (rcp.approx is within 1 ulp; one Newton step keeps it there for float, two
// take the double estimate from ~2**-22 to full precision). .ftz flushes a subnormal input or
// result: callers keep b in [1, 2**960] (quotient() below scales larger ones).
__device__ __forceinline__ float reciprocal(float b) {
    const float r = ptx::rcp_approx_ftz(b);
    return fmaf(r, fmaf(-b, r, 1.0f), r);
}

__device__ __forceinline__ double reciprocal(double b) {
    double r = ptx::rcp_approx_ftz(b);
    r = fma(r, fma(-b, r, 1.0), r);
    return fma(r, fma(-b, r, 1.0), r);
}

// a / b for b >= 1, +Inf or NaN (the denominators of the activations). Above 2**64 both are
// scaled by 2**-64 (exact), so 1/b stays normal for every finite b of either type; b = +Inf gives
// a * 0 (NaN for an infinite a, as Inf / Inf is); a NaN b gives NaN. Relative error: that of the
// reciprocal plus one rounding, a few ulps at most.
template <typename A>
__device__ __forceinline__ A quotient(A a, A b) {
    if (b > A(0x1p64)) {
        a *= A(0x1p-64);
        b *= A(0x1p-64);
    }
    return b > max_finite(b) ? a * A(0) : a * reciprocal(b);
}

// sqrt(a) for a >= 1, +Inf or NaN: rsqrt.approx (~2**-23 relative), one Newton step on 1/sqrt
// (float: already at the rounding level; double: ~2**-45), then one Heron correction of
// s = a / sqrt(a) against its residual a - s*s (an FMA), which lands within an ulp. +Inf and NaN
// pass through (the residual would be Inf - Inf).
__device__ __forceinline__ float rsqrt_approx(float a) { return ptx::rsqrt_approx_ftz(a); }
__device__ __forceinline__ double rsqrt_approx(double a) { return ptx::rsqrt_approx_ftz(a); }

template <typename A>
__device__ __forceinline__ A sqrt_ge1(A a) {
    A y = rsqrt_approx(a);
    y = y * (A(1.5) - A(0.5) * a * y * y);
    const A s = a * y;
    const A refined = m_fma(m_fma(-s, s, a), A(0.5) * y, s);
    return a <= max_finite(a) ? refined : a;
}

// log(1 + u) for 0 <= u <= 1 (softplus' argument exp(-|x|)). log1pf is inline; the double
// log1p of libdevice divides (a slow-path CALL), so double uses Kahan's form u * log(w) / (w - 1)
// with w = 1 + u rounded, which cancels w's rounding error (a few ulps), the division as a
// reciprocal of w - 1 in [2**-52, 1].
__device__ __forceinline__ float log1p_unit(float u) { return log1pf(u); }
__device__ __forceinline__ double log1p_unit(double u) {
    const double w = 1.0 + u;
    return w == 1.0 ? u : log(w) * (u * reciprocal(w - 1.0));
}

// NaN-propagating building blocks (fmaxf would drop a NaN; NumPy's maximum keeps it).
template <typename A>
__device__ __forceinline__ A relu_nan(A x) { return x < A(0) ? A(0) : x; }

template <typename A>
__device__ __forceinline__ A clip_nan(A x, A lo, A hi) { return x < lo ? lo : (x > hi ? hi : x); }

// softplus(x) = log(1 + exp(x)) computed without overflow: max(x, 0) + log1p(exp(-|x|)).
template <typename A>
__device__ __forceinline__ A softplus_stable(A x) {
    if (x != x) return x;
    return (x > A(0) ? x : A(0)) + log1p_unit(m_exp(-m_abs(x)));
}

template <typename A>
__device__ __forceinline__ A sigmoid_stable(A x) {
    // Both branches are exact forms of 1/(1+exp(-x)); picking by sign keeps exp() from overflowing
    // and the denominator in [1, 2] (reciprocal's safe range).
    if (x >= A(0)) return reciprocal(A(1) + m_exp(-x));
    const A e = m_exp(x);
    return e * reciprocal(A(1) + e);
}

// x * Phi(x) = x/2 * erfc(-x/sqrt(2)): erfc keeps the far negative tail accurate where 1 + erf
// cancels; the tail's limit at -Inf is 0 (not -Inf * 0), as in gpuconv/activations.py.
template <typename A>
__device__ __forceinline__ A gelu_erfc(A x) {
    const A tail = m_erfc(x * A(-0.70710678118654752440084436210485));
    return tail == A(0) ? A(0) : A(0.5) * x * tail;
}

// (x + sqrt(x*x + 4)) / 2; for x < 0 the sum cancels, and 2 / (sqrt(x*x + 4) - x) is the same
// value without the cancellation (gpuconv/activations.py uses the same split). -Inf gives 0.
template <typename A>
__device__ __forceinline__ A squareplus4(A x) {
    const A root = sqrt_ge1(x * x + A(4));
    return x >= A(0) ? (x + root) * A(0.5) : quotient(A(2), root - x);
}

// clip(x / 6 + 0.5, 0, 1), the division as a multiply by the rounded 1/6 (an ulp at most).
template <typename A>
__device__ __forceinline__ A hard_sigmoid6(A x) {
    return clip_nan(x * A(0.16666666666666666666666666666667) + A(0.5), A(0), A(1));
}

// ------------------------------------------------------------------------------------------
// Fused activations (Keras 3 formulas with Keras' default parameters). The numbering is a
// contract with gpuconv/cuda/epilogue.py (ACTIVATION_CODES); tests parse this enum to check it.
// ------------------------------------------------------------------------------------------
enum Act {
    ACT_LINEAR = 0,
    ACT_RELU = 1,
    ACT_RELU6 = 2,
    ACT_LEAKY_RELU = 3,   // negative_slope = 0.2
    ACT_ELU = 4,          // alpha = 1
    ACT_SELU = 5,
    ACT_GELU = 6,         // approximate = False (erf form), Keras' default
    ACT_SILU = 7,
    ACT_SIGMOID = 8,
    ACT_TANH = 9,
    ACT_SOFTPLUS = 10,
    ACT_SOFTSIGN = 11,
    ACT_HARD_SIGMOID = 12,
    ACT_HARD_SILU = 13,
    ACT_EXPONENTIAL = 14,
    ACT_MISH = 15,
    ACT_CELU = 16,        // alpha = 1
    ACT_SQUAREPLUS = 17,  // b = 4
    ACT_SPARSE_PLUS = 18,
    ACT_SOFT_SHRINK = 19,  // threshold = 0.5
    ACT_HARD_SHRINK = 20,  // threshold = 0.5
    ACT_TANH_SHRINK = 21,
    ACT_HARD_TANH = 22,
    ACT_LOG_SIGMOID = 23,
    ACT_SPARSE_SIGMOID = 24,
    ACT_COUNT = 25
};

template <int ACT, typename A>
__device__ __forceinline__ A activate(A x) {
    if (ACT == ACT_LINEAR) return x;
    if (ACT == ACT_RELU) return relu_nan(x);
    if (ACT == ACT_RELU6) return clip_nan(x, A(0), A(6));
    if (ACT == ACT_LEAKY_RELU) return x < A(0) ? A(0.2) * x : x;
    if (ACT == ACT_ELU) return x >= A(0) ? x : m_expm1(x);
    if (ACT == ACT_SELU) {
        const A alpha = A(1.6732632423543772848170429916717);
        const A scale = A(1.0507009873554804934193349852946);
        return scale * (x >= A(0) ? x : alpha * m_expm1(x));
    }
    if (ACT == ACT_GELU) return gelu_erfc(x);
    if (ACT == ACT_SILU) return x * sigmoid_stable(x);
    if (ACT == ACT_SIGMOID) return sigmoid_stable(x);
    if (ACT == ACT_TANH) return m_tanh(x);
    if (ACT == ACT_SOFTPLUS) return softplus_stable(x);
    if (ACT == ACT_SOFTSIGN) return quotient(x, A(1) + m_abs(x));
    if (ACT == ACT_HARD_SIGMOID) return hard_sigmoid6(x);
    if (ACT == ACT_HARD_SILU) return x * hard_sigmoid6(x);
    if (ACT == ACT_EXPONENTIAL) return m_exp(x);
    if (ACT == ACT_MISH) return x * m_tanh(softplus_stable(x));
    if (ACT == ACT_CELU) return relu_nan(x) + m_expm1(x < A(0) ? x : A(0));
    if (ACT == ACT_SQUAREPLUS) return squareplus4(x);
    if (ACT == ACT_SPARSE_PLUS) {
        if (x <= A(-1)) return A(0);
        if (x < A(1)) return A(0.25) * (x + A(1)) * (x + A(1));
        return x;
    }
    // The shrinks map NaN to 0 (every comparison fails), as gpuconv/activations.py's where() does.
    if (ACT == ACT_SOFT_SHRINK) return x > A(0.5) ? x - A(0.5) : (x < A(-0.5) ? x + A(0.5) : A(0));
    if (ACT == ACT_HARD_SHRINK) return m_abs(x) > A(0.5) ? x : A(0);
    if (ACT == ACT_TANH_SHRINK) return x - m_tanh(x);
    if (ACT == ACT_HARD_TANH) return clip_nan(x, A(-1), A(1));
    if (ACT == ACT_LOG_SIGMOID) return -softplus_stable(-x);
    if (ACT == ACT_SPARSE_SIGMOID) return x <= A(-1) ? A(0) : (x >= A(1) ? A(1) : (x != x ? x : A(0.5) * (x + A(1))));
    return x;
}

template <int ACT, typename A, int N>
__device__ __forceinline__ void activate_each(A (&v)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = activate<ACT>(v[i]);
}

// Run-time selection. Kernels take the activation as an int argument instead of a template
// parameter: the switch is uniform across the grid (no divergence), runs once per thread's
// register array after a reduction of many FMAs, and keeps the instantiation count 25x smaller.
//
// activate_inline: every activation fused, the switch the memory-bound kernels' epilogue runs
// (depthwise, separable, locally connected, through activate_compact below). One switch for the
// thread's whole register array, each case an unrolled loop: a switch per element made the
// separable epilogue keep its offsets live across the branches (+20 registers). Every body is call-free (reciprocal / quotient / sqrt_ge1 above
// instead of IEEE division and sqrt, log1p_unit for double; exp, expm1, log, tanh, erfc compile
// inline in both precisions), so ptxas
// never caps the kernel's registers for an ABI call. gpuconv/cuda/epilogue.py mirrors which
// activations this fuses (all of them).
template <typename A, int N>
__device__ __forceinline__ void activate_inline(int act, A (&v)[N]) {
    switch (act) {
        case ACT_RELU: activate_each<ACT_RELU>(v); break;
        case ACT_RELU6: activate_each<ACT_RELU6>(v); break;
        case ACT_LEAKY_RELU: activate_each<ACT_LEAKY_RELU>(v); break;
        case ACT_ELU: activate_each<ACT_ELU>(v); break;
        case ACT_SELU: activate_each<ACT_SELU>(v); break;
        case ACT_GELU: activate_each<ACT_GELU>(v); break;
        case ACT_SILU: activate_each<ACT_SILU>(v); break;
        case ACT_SIGMOID: activate_each<ACT_SIGMOID>(v); break;
        case ACT_TANH: activate_each<ACT_TANH>(v); break;
        case ACT_SOFTPLUS: activate_each<ACT_SOFTPLUS>(v); break;
        case ACT_SOFTSIGN: activate_each<ACT_SOFTSIGN>(v); break;
        case ACT_HARD_SIGMOID: activate_each<ACT_HARD_SIGMOID>(v); break;
        case ACT_HARD_SILU: activate_each<ACT_HARD_SILU>(v); break;
        case ACT_EXPONENTIAL: activate_each<ACT_EXPONENTIAL>(v); break;
        case ACT_MISH: activate_each<ACT_MISH>(v); break;
        case ACT_CELU: activate_each<ACT_CELU>(v); break;
        case ACT_SQUAREPLUS: activate_each<ACT_SQUAREPLUS>(v); break;
        case ACT_SPARSE_PLUS: activate_each<ACT_SPARSE_PLUS>(v); break;
        case ACT_SOFT_SHRINK: activate_each<ACT_SOFT_SHRINK>(v); break;
        case ACT_HARD_SHRINK: activate_each<ACT_HARD_SHRINK>(v); break;
        case ACT_TANH_SHRINK: activate_each<ACT_TANH_SHRINK>(v); break;
        case ACT_HARD_TANH: activate_each<ACT_HARD_TANH>(v); break;
        case ACT_LOG_SIGMOID: activate_each<ACT_LOG_SIGMOID>(v); break;
        case ACT_SPARSE_SIGMOID: activate_each<ACT_SPARSE_SIGMOID>(v); break;
        default: break;
    }
}

// The activations networks fuse most (relu, relu6, leaky_relu; linear does nothing): cheap
// enough to run inline on the registers in any epilogue (activate_compact).
__device__ __forceinline__ bool is_cheap_activation(int act) {
    return act == ACT_LINEAR || act == ACT_RELU || act == ACT_RELU6 || act == ACT_LEAKY_RELU;
}

template <typename A, int N>
__device__ __forceinline__ void activate_cheap(int act, A (&v)[N]) {
    switch (act) {
        case ACT_RELU: activate_each<ACT_RELU>(v); break;
        case ACT_RELU6: activate_each<ACT_RELU6>(v); break;
        case ACT_LEAKY_RELU: activate_each<ACT_LEAKY_RELU>(v); break;
        default: break;
    }
}

// Which activations a memory-bound kernel's epilogue is compiled for: the ACTS template parameter
// of depthwise_tile. A layer's first call waits for NVRTC, and the 25 bodies of activate_inline
// were 94% of a depthwise tile instantiation's code; most layers fuse one of the cheap ones (or
// none), so the host (gpuconv/cuda/depthwise.py) launches the ACTS_CHEAP build for those.
//   ACTS_CHEAP  linear / relu / relu6 / leaky_relu (is_cheap_activation), inline;
//   ACTS_ANY    every activation: activate_inline.
enum ActivationSet { ACTS_CHEAP = 0, ACTS_ANY = 1 };

template <int ACTS, typename A, int N>
__device__ __forceinline__ void activate_set(int act, A (&v)[N]) {
    if constexpr (ACTS == ACTS_CHEAP) {
        activate_cheap(act, v);
    } else {
        activate_inline(act, v);
    }
}

// activate_compact: activate_inline's results with one copy of the activation bodies, for a
// thread's whole epilogue array. Inlining all 25 bodies once per element of an unrolled
// epilogue is most of a memory-bound kernel's code and of its NVRTC time (the separable kernel:
// 229 KB of PTX and 1.4 s for one instantiation; 59 KB and 0.7 s with this), and a layer's
// first call waits for that compile. The cheap activations still run inline on the registers; any other
// goes through a copy of the array in thread-local memory and a loop that is not unrolled, so
// its switch is compiled once. Still call-free (see activate_inline), and the round trip
// through L1 is small next to the exp / tanh / erfc those activations evaluate.
template <typename A, int N>
__device__ __forceinline__ void activate_compact(int act, A (&v)[N]) {
    if (is_cheap_activation(act)) {
        activate_cheap(act, v);
        return;
    }
    A local[N];
#pragma unroll
    for (int i = 0; i < N; ++i) local[i] = v[i];
#pragma unroll 1
    for (int i = 0; i < N; ++i) {
        A one[1] = {local[i]};
        activate_inline(act, one);
        local[i] = one[0];
    }
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = local[i];
}

// activate_dispatch: one value, as a real call (not inlined), for the dense convolutions'
// unrolled TM x TN epilogue (inlining 25 cases into each of its 16 stores multiplied compile time
// and code size); the no-activation case never calls it.
template <typename A>
__device__ __noinline__ A activate_dispatch(int act, A x) {
    A v[1] = {x};
    activate_inline(act, v);
    return v[0];
}

// acc + bias[bias_index] (bias may be null), in the accumulation type.
template <typename T, typename I>
__device__ __forceinline__ typename Traits<T>::acc_t add_bias(typename Traits<T>::acc_t acc, const T* __restrict__ bias,
                                                              I bias_index) {
    return bias != nullptr ? acc + Traits<T>::to_acc(bias[bias_index]) : acc;
}

// Bias (may be null) + activation, the epilogue of the dense convolutions (every activation).
template <typename T>
__device__ __forceinline__ typename Traits<T>::acc_t epilogue(typename Traits<T>::acc_t acc, const T* __restrict__ bias,
                                                              long long channel, int act) {
    typedef typename Traits<T>::acc_t A;
    const A v = add_bias<T>(acc, bias, channel);
    return act == ACT_LINEAR ? v : activate_dispatch<A>(act, v);
}

// The fused activation's derivative from its output y, for the backward kernels that read the
// output gradient (gpuconv.activations.OUTPUT_DERIVATIVES): relu 0 < y, relu6 0 < y < 6, 1 for
// ACT_LINEAR (the host passes no other code). A factor of 0 or 1 rather than a select, so that
// dy * factor rounds as the host's np.multiply(dy, mask) does (a NaN or Inf dy stays non-finite).
template <typename A>
__device__ __forceinline__ A output_derivative(int act, A y) {
    if (act == ACT_RELU) return y > A(0) ? A(1) : A(0);
    if (act == ACT_RELU6) return y > A(0) && y < A(6) ? A(1) : A(0);
    return A(1);
}

// ------------------------------------------------------------------------------------------
// Small integer helpers
// ------------------------------------------------------------------------------------------
template <typename I>
__host__ __device__ __forceinline__ I ceil_div(I a, I b) { return (a + b - 1) / b; }

// Floor division/modulo for a possibly negative numerator and positive divisor.
template <typename I>
__device__ __forceinline__ I floor_div(I a, I b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

template <typename I>
__device__ __forceinline__ I floor_mod(I a, I b) { I r = a % b; return r < 0 ? r + b : r; }

// Grid-stride loop over [0, n) along x: `for (I i = gc::grid_start_x<I>(); i < n; i += gc::grid_step_x<I>())`.
// The host sizes the grid from MaxGridDimX (gpuconv/cuda/launch.py grid_1d), so n may exceed it.
template <typename I>
__device__ __forceinline__ I grid_start_x() { return I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); }

template <typename I>
__device__ __forceinline__ I grid_step_x() { return I(gridDim.x) * I(blockDim.x); }

// Spatial extents of rank-generic kernels: 3 dims, the unused leading ones are 1.
template <typename I>
struct Dims3 {
    I d, h, w;
};

}  // namespace gc

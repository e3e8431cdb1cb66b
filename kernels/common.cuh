// common.cuh: what every gpuconv kernel shares.
//
//   gc::half            16-bit float storage type (raw IEEE binary16 payload, no cuda_fp16.h)
//   gc::Traits<T>       acc_t (float for half and float, double for double), to_acc, from_acc
//   gc::Act / activate<ACT>(x) / activate_dispatch(act, x) / activate_inline(act, x)  the fused
//                       activations; the numbering is mirrored in gpuconv/cuda/epilogue.py
//   gc::add_bias, gc::epilogue  bias (+ activation), the end of every convolution kernel
//   gc::Layout          CHANNELS_LAST / CHANNELS_FIRST (a template parameter of layout-aware kernels)
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

namespace gc {

// ------------------------------------------------------------------------------------------
// Storage types and accumulation traits
// ------------------------------------------------------------------------------------------
struct __align__(2) half {
    unsigned short bits;
};

__device__ __forceinline__ float half_to_float(half h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits));
    return f;
}

__device__ __forceinline__ half float_to_half(float f) {
    half h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f));  // round to nearest even, like NumPy
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
__device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float m_erf(float x) { return erff(x); }
__device__ __forceinline__ double m_erf(double x) { return erf(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return fabs(x); }

// NaN-propagating building blocks (fmaxf would drop a NaN; NumPy's maximum keeps it).
template <typename A>
__device__ __forceinline__ A relu_nan(A x) { return x < A(0) ? A(0) : x; }

template <typename A>
__device__ __forceinline__ A clip_nan(A x, A lo, A hi) { return x < lo ? lo : (x > hi ? hi : x); }

// softplus(x) = log(1 + exp(x)) computed without overflow: max(x, 0) + log1p(exp(-|x|)).
template <typename A>
__device__ __forceinline__ A softplus_stable(A x) {
    if (x != x) return x;
    return (x > A(0) ? x : A(0)) + m_log1p(m_exp(-m_abs(x)));
}

template <typename A>
__device__ __forceinline__ A sigmoid_stable(A x) {
    // Both branches are exact forms of 1/(1+exp(-x)); picking by sign keeps exp() from overflowing.
    if (x >= A(0)) return A(1) / (A(1) + m_exp(-x));
    A e = m_exp(x);
    return e / (A(1) + e);
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
    if (ACT == ACT_GELU) return A(0.5) * x * (A(1) + m_erf(x * A(0.70710678118654752440084436210485)));
    if (ACT == ACT_SILU) return x * sigmoid_stable(x);
    if (ACT == ACT_SIGMOID) return sigmoid_stable(x);
    if (ACT == ACT_TANH) return m_tanh(x);
    if (ACT == ACT_SOFTPLUS) return softplus_stable(x);
    if (ACT == ACT_SOFTSIGN) return x / (A(1) + m_abs(x));
    if (ACT == ACT_HARD_SIGMOID) return clip_nan(x / A(6) + A(0.5), A(0), A(1));
    if (ACT == ACT_HARD_SILU) return x * clip_nan(x / A(6) + A(0.5), A(0), A(1));
    if (ACT == ACT_EXPONENTIAL) return m_exp(x);
    if (ACT == ACT_MISH) return x * m_tanh(softplus_stable(x));
    if (ACT == ACT_CELU) return relu_nan(x) + m_expm1(x < A(0) ? x : A(0));
    if (ACT == ACT_SQUAREPLUS) return (x + m_sqrt(x * x + A(4))) / A(2);
    if (ACT == ACT_SPARSE_PLUS) {
        if (x <= A(-1)) return A(0);
        if (x < A(1)) return A(0.25) * (x + A(1)) * (x + A(1));
        return x;
    }
    if (ACT == ACT_SOFT_SHRINK) return x > A(0.5) ? x - A(0.5) : (x < A(-0.5) ? x + A(0.5) : (x != x ? x : A(0)));
    if (ACT == ACT_HARD_SHRINK) return (m_abs(x) > A(0.5) || x != x) ? x : A(0);
    if (ACT == ACT_TANH_SHRINK) return x - m_tanh(x);
    if (ACT == ACT_HARD_TANH) return clip_nan(x, A(-1), A(1));
    if (ACT == ACT_LOG_SIGMOID) return -softplus_stable(-x);
    if (ACT == ACT_SPARSE_SIGMOID) return x <= A(-1) ? A(0) : (x >= A(1) ? A(1) : (x != x ? x : A(0.5) * (x + A(1))));
    return x;
}

// Run-time selection. Kernels take the activation as an int argument instead of a template
// parameter: the switch is uniform across the grid (no divergence), runs once per output element
// after a reduction of hundreds of FMAs, and keeps the instantiation count 25x smaller. It is a
// real call (not inlined): inlining 25 cases into every unrolled epilogue store multiplied
// compile time and code size for no gain; the common no-activation case never calls it.
template <typename A>
__device__ __noinline__ A activate_dispatch(int act, A x) {
    switch (act) {
        case ACT_RELU: return activate<ACT_RELU>(x);
        case ACT_RELU6: return activate<ACT_RELU6>(x);
        case ACT_LEAKY_RELU: return activate<ACT_LEAKY_RELU>(x);
        case ACT_ELU: return activate<ACT_ELU>(x);
        case ACT_SELU: return activate<ACT_SELU>(x);
        case ACT_GELU: return activate<ACT_GELU>(x);
        case ACT_SILU: return activate<ACT_SILU>(x);
        case ACT_SIGMOID: return activate<ACT_SIGMOID>(x);
        case ACT_TANH: return activate<ACT_TANH>(x);
        case ACT_SOFTPLUS: return activate<ACT_SOFTPLUS>(x);
        case ACT_SOFTSIGN: return activate<ACT_SOFTSIGN>(x);
        case ACT_HARD_SIGMOID: return activate<ACT_HARD_SIGMOID>(x);
        case ACT_HARD_SILU: return activate<ACT_HARD_SILU>(x);
        case ACT_EXPONENTIAL: return activate<ACT_EXPONENTIAL>(x);
        case ACT_MISH: return activate<ACT_MISH>(x);
        case ACT_CELU: return activate<ACT_CELU>(x);
        case ACT_SQUAREPLUS: return activate<ACT_SQUAREPLUS>(x);
        case ACT_SPARSE_PLUS: return activate<ACT_SPARSE_PLUS>(x);
        case ACT_SOFT_SHRINK: return activate<ACT_SOFT_SHRINK>(x);
        case ACT_HARD_SHRINK: return activate<ACT_HARD_SHRINK>(x);
        case ACT_TANH_SHRINK: return activate<ACT_TANH_SHRINK>(x);
        case ACT_HARD_TANH: return activate<ACT_HARD_TANH>(x);
        case ACT_LOG_SIGMOID: return activate<ACT_LOG_SIGMOID>(x);
        case ACT_SPARSE_SIGMOID: return activate<ACT_SPARSE_SIGMOID>(x);
        default: return x;
    }
}

template <int ACT, typename A, int N>
__device__ __forceinline__ void activate_each(A (&v)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = activate<ACT>(v[i]);
}

// The activations that compile to compares, selects and multiplies only: no division, no
// transcendental, so no subroutine call and nothing for ptxas to spill around. The memory-bound
// kernels (depthwise, separable, locally connected) fuse these inline into their epilogue; any
// other code reaches them as ACT_LINEAR and runs as activation.cu's in-place pass.
// gpuconv/cuda/epilogue.py INLINE_ACTIVATIONS mirrors this list. One switch for a thread's whole
// register array: a switch per element made the separable epilogue keep its offsets live across
// the branches (+20 registers, and an 8-byte spill in pointwise_conv<double, long long>).
template <typename A, int N>
__device__ __forceinline__ void activate_inline(int act, A (&v)[N]) {
    switch (act) {
        case ACT_RELU: activate_each<ACT_RELU>(v); break;
        case ACT_RELU6: activate_each<ACT_RELU6>(v); break;
        case ACT_LEAKY_RELU: activate_each<ACT_LEAKY_RELU>(v); break;
        case ACT_HARD_TANH: activate_each<ACT_HARD_TANH>(v); break;
        default: break;
    }
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

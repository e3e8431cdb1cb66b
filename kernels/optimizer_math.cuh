// optimizer_math.cuh: the arithmetic of gpuconv/optimizers/rules.py, one operation at a time,
// rounded exactly as the rules (and the NumPy engine that is their oracle) round it.
//
//   gc::RuleMath<T>::add / sub / mul / div / root   one correctly rounded operation in T
//   gc::RuleMath<T>::fma(a, b, c)                   a * b + c rounded once to T (the rules' fma)
//   gc::RuleMath<T>::maximum / sign / magnitude     NaN-propagating max, sign(0) = 0, |x|
//
// Why explicit: the kernels are compiled with --fmad=true (options.py), so `p - a * b` may become
// one FMA; the rules forbid that contraction except where they write fma(). The separate
// operations therefore go through CUDA's round-to-nearest intrinsics (__fmul_rn, __fadd_rn, ...),
// which the compiler never contracts. The cuda-emulator compiles with -ffp-contract=off, where
// the plain operators are the same operations; these wrappers are the one place the two targets
// differ here.
//
// T = half computes each operation in float and rounds the result to half at once: float's 24
// bits make that the correctly rounded half result of +, -, *, / and sqrt. fma is the exception
// (the float sum of a product and a half may already be rounded): it is summed in double, the
// NumPy engine's way, and the double rounded to half through float with round-to-odd, which
// makes the two roundings one (24 >= 11 + 2 bits).
#pragma once

#include "common.cuh"

namespace gc {

#ifdef GPUCONV_EMULATOR
__device__ __forceinline__ float mul_rn(float a, float b) { return a * b; }
__device__ __forceinline__ float add_rn(float a, float b) { return a + b; }
__device__ __forceinline__ float sub_rn(float a, float b) { return a - b; }
__device__ __forceinline__ double mul_rn(double a, double b) { return a * b; }
__device__ __forceinline__ double add_rn(double a, double b) { return a + b; }
__device__ __forceinline__ double sub_rn(double a, double b) { return a - b; }
#else
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
#endif

__device__ __forceinline__ float sqrt_rn(float x) { return sqrtf(x); }  // IEEE: --prec-sqrt=true
__device__ __forceinline__ double sqrt_rn(double x) { return sqrt(x); }

// A double rounded to the nearest half (ties to even), returned widened to float: first to float
// rounding to odd (truncate, then set the last bit when inexact), then float -> half.
__device__ __forceinline__ float round_double_to_half(double d) {
    float f = float(d);
    if (f == f && double(f) != d) {
        unsigned bits = __float_as_uint(f);
        if (fabs(double(f)) > fabs(d)) bits -= 1u;  // one step toward zero: the truncation
        f = __uint_as_float(bits | 1u);
    }
    return half_to_float(float_to_half(f));
}

// The rounding to T after each float (or double) operation: none for float and double.
template <typename T>
struct Round {
    static __device__ __forceinline__ typename Traits<T>::acc_t r(typename Traits<T>::acc_t x) { return x; }
};

template <>
struct Round<half> {
    static __device__ __forceinline__ float r(float x) { return half_to_float(float_to_half(x)); }
};

template <typename A>
__device__ __forceinline__ A fused(A a, A b, A c);
template <>
__device__ __forceinline__ float fused(float a, float b, float c) { return fmaf(a, b, c); }
template <>
__device__ __forceinline__ double fused(double a, double b, double c) { return fma(a, b, c); }

template <typename T>
struct RuleMath {
    typedef typename Traits<T>::acc_t A;
    static __device__ __forceinline__ A add(A a, A b) { return Round<T>::r(add_rn(a, b)); }
    static __device__ __forceinline__ A sub(A a, A b) { return Round<T>::r(sub_rn(a, b)); }
    static __device__ __forceinline__ A mul(A a, A b) { return Round<T>::r(mul_rn(a, b)); }
    static __device__ __forceinline__ A div(A a, A b) { return Round<T>::r(a / b); }  // IEEE: --prec-div=true
    static __device__ __forceinline__ A root(A a) { return Round<T>::r(sqrt_rn(a)); }
    static __device__ __forceinline__ A fma(A a, A b, A c) { return fused(a, b, c); }
    static __device__ __forceinline__ A maximum(A a, A b) { return (a != a || a > b) ? a : b; }
    static __device__ __forceinline__ A magnitude(A x) { return m_abs(x); }
    static __device__ __forceinline__ A sign(A x) {
        return x > A(0) ? A(1) : (x < A(0) ? A(-1) : (x == A(0) ? A(0) : x));
    }
};

template <>
__device__ __forceinline__ float RuleMath<half>::fma(float a, float b, float c) {
    return round_double_to_half(add_rn(mul_rn(double(a), double(b)), double(c)));  // the product is exact
}

}  // namespace gc

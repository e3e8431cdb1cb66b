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
// T = half and T = bfloat16 compute each operation in float and round the result to T at once:
// float's 24 bits make that the correctly rounded T result of +, -, *, / and sqrt (24 >= 2p + 2
// for p = 11 and p = 8), and it is literally what NumPy's half loops and ml_dtypes' bfloat16 loops
// do (the operation in float, the result cast). fma is the exception (the float sum of a product
// and a T may already be rounded): it is summed in double, the NumPy engine's way, and the double
// rounded to T through float with round-to-odd, which makes the two roundings one (24 >= p + 2
// bits); ml_dtypes, like NumPy for half, rounds a double to bfloat16 directly and correctly. The
// bfloat16 subnormals are float subnormals with 16 fewer bits, so the argument holds there too.
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

// The rounding to T after each float (or double) operation: none for float and double; a 16-bit
// T rounds to nearest even (cvt.rn) and widens back to float, exactly.
template <typename T>
struct Round {
    static __device__ __forceinline__ typename Traits<T>::acc_t r(typename Traits<T>::acc_t x) { return x; }
};

template <typename T16>
struct Round16 {
    static __device__ __forceinline__ float r(float x) { return Traits<T16>::to_acc(Traits<T16>::from_acc(x)); }
};
template <>
struct Round<half> : Round16<half> {};
template <>
struct Round<bfloat16> : Round16<bfloat16> {};

// A double rounded to the nearest T16 (ties to even), returned widened to float: first to float
// rounding to odd (truncate, then set the last bit when inexact), then float -> T16.
template <typename T16>
__device__ __forceinline__ float round_double_to(double d) {
    float f = float(d);
    if (f == f && double(f) != d) {
        unsigned bits = __float_as_uint(f);
        if (fabs(double(f)) > fabs(d)) bits -= 1u;  // one step toward zero: the truncation
        f = __uint_as_float(bits | 1u);
    }
    return Round<T16>::r(f);
}

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

// The rules' fma of a 16-bit T: the product is exact in double, the sum rounded there once (as
// the NumPy engine's float64 evaluation), then to T once.
template <typename T16>
__device__ __forceinline__ float fma16(float a, float b, float c) {
    return round_double_to<T16>(add_rn(mul_rn(double(a), double(b)), double(c)));
}
template <>
__device__ __forceinline__ float RuleMath<half>::fma(float a, float b, float c) { return fma16<half>(a, b, c); }
template <>
__device__ __forceinline__ float RuleMath<bfloat16>::fma(float a, float b, float c) { return fma16<bfloat16>(a, b, c); }

}  // namespace gc

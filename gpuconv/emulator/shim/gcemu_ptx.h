// gcemu_ptx.h: emulations of the PTX instructions behind kernels/ptx.cuh, from the PTX ISA's
// definitions. Per-thread instructions are plain functions; warp-wide ones (mma, ldmatrix) go
// through gcemu::warp_exchange so that every lane sees the whole warp's operands.
#pragma once

namespace gcemu {

// ------------------------------------------------------------------------------------------
// binary16 conversions (bit-exact with the GPU for every non-NaN value; a NaN becomes the
// canonical NaN, as cvt does)
// ------------------------------------------------------------------------------------------
inline float cvt_f32_f16(unsigned short h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return bit_cast<float>(m ? 0x7fffffffu : (sign | 0x7f800000u));
    if (e == 0) {
        const float r = ldexpf(float(m), -24);  // subnormal (or zero): exact
        return sign ? -r : r;
    }
    return bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

inline unsigned short cvt_rn_f16_f32(float f) {
    const uint32_t x = bit_cast<uint32_t>(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return 0x7fffu;                      // NaN
    if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // >= 65520 rounds to Inf
    if (ax >= 0x38800000u) {                                     // a normal binary16
        const uint32_t rounded = ax + 0xfffu + ((ax >> 13) & 1u);  // to nearest, ties to even
        return (unsigned short)(sign | ((rounded - 0x38000000u) >> 13));
    }
    if (ax < 0x33000000u) return (unsigned short)sign;  // below half the smallest subnormal: zero
    // A binary16 subnormal: units of 2**-24, value = m * 2**(e - 150).
    const uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return (unsigned short)(sign | q);
}

// ------------------------------------------------------------------------------------------
// Approximate reciprocal and reciprocal square root (.ftz: subnormal inputs and results are 0)
// ------------------------------------------------------------------------------------------
template <typename A>
inline A flush_subnormal(A v) {
    return (v != A(0) && fabs(double(v)) < (sizeof(A) == 4 ? 1.17549435e-38 : 2.2250738585072014e-308)) ? A(0) * v : v;
}

inline float rcp_approx_ftz(float b) { return flush_subnormal(1.0f / flush_subnormal(b)); }
inline double rcp_approx_ftz(double b) { return flush_subnormal(1.0 / flush_subnormal(b)); }
inline float rsqrt_approx_ftz(float a) { return flush_subnormal(1.0f / sqrtf(flush_subnormal(a))); }
inline double rsqrt_approx_ftz(double a) { return flush_subnormal(1.0 / sqrt(flush_subnormal(a))); }

}  // namespace gcemu

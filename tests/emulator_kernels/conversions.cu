// Conversion wrappers of kernels/ptx.cuh applied elementwise (tests/test_emulator_ptx.py).
#include "common.cuh"

namespace gct {

// KIND 0: binary16 bits -> float (cvt.f32.f16)      1: float -> binary16 bits (cvt.rn.f16.f32)
//      2: bfloat16 bits -> float                    3: float -> bfloat16 bits (cvt.rn.bf16.f32)
//      4: float -> tf32 bits (cvt.rna.tf32.f32)
//      5: float pairs (hi, lo) -> packed f16x2      6: float pairs -> packed bf16x2
template <int KIND>
__global__ void convert(const void* __restrict__ in, void* __restrict__ out, int n) {
    const int stride = blockDim.x * gridDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        if constexpr (KIND == 0) {
            static_cast<float*>(out)[i] = gc::ptx::cvt_f32_f16(static_cast<const unsigned short*>(in)[i]);
        } else if constexpr (KIND == 1) {
            static_cast<unsigned short*>(out)[i] = gc::ptx::cvt_rn_f16_f32(static_cast<const float*>(in)[i]);
        } else if constexpr (KIND == 2) {
            static_cast<float*>(out)[i] = gc::ptx::cvt_f32_bf16(static_cast<const unsigned short*>(in)[i]);
        } else if constexpr (KIND == 3) {
            static_cast<unsigned short*>(out)[i] = gc::ptx::cvt_rn_bf16_f32(static_cast<const float*>(in)[i]);
        } else if constexpr (KIND == 4) {
            static_cast<unsigned*>(out)[i] = gc::ptx::cvt_rna_tf32_f32(static_cast<const float*>(in)[i]);
        } else if constexpr (KIND == 5) {
            const float* p = static_cast<const float*>(in) + 2 * i;
            static_cast<unsigned*>(out)[i] = gc::ptx::cvt_rn_f16x2_f32(p[0], p[1]);
        } else {
            const float* p = static_cast<const float*>(in) + 2 * i;
            static_cast<unsigned*>(out)[i] = gc::ptx::cvt_rn_bf16x2_f32(p[0], p[1]);
        }
    }
}

}  // namespace gct

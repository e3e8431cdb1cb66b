// Kernels for the launch checks and the scheduler's reports (tests/test_emulator_runtime.py) and
// for bench/test_emulator_bench.py.
#include "common.cuh"

namespace gct {

// Launch checks: a bound of 128 threads and one parameter of each kind.
__global__ void __launch_bounds__(128) bounded(const float* __restrict__ x, float* __restrict__ out, int n, float scale,
                                               long long offset) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = (x == nullptr ? 1.f : x[i]) * scale + float(offset);
}

// No __launch_bounds__: the device's 1,024 threads.
__global__ void unbounded(int* __restrict__ out) {
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    if (t == 0) out[blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z)] = int(blockDim.x * blockDim.y * blockDim.z);
}

// Dynamic shared memory of n floats, filled and reversed by 256 threads.
__global__ void __launch_bounds__(256) dynamic_reverse(const float* __restrict__ x, float* __restrict__ out, int n) {
    GC_DYNAMIC_SHARED(float, s);
    for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = x[i];
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = s[n - 1 - i];
}

// The scheduler's reports. One warp (or two) per launch; out[t] = what the thread computed.
template <bool FIXED>
__global__ void __launch_bounds__(32) warp_op_mismatch(int* __restrict__ out) {
    const int lane = threadIdx.x;
    int r;
    if (FIXED || lane < 16) r = __shfl_sync(0xffffffffu, lane, 0);
    else r = (int)__ballot_sync(0xffffffffu, 1);
    out[lane] = r;
}

template <bool FIXED>
__global__ void __launch_bounds__(64) warp_barrier_deadlock(int* __restrict__ out) {
    const int t = threadIdx.x;
    if (t < 16) __syncwarp();  // waits for lanes 16..31 of warp 0, which wait at __syncthreads
    if (FIXED && t >= 16 && t < 32) __syncwarp();
    __syncthreads();
    out[t] = t;
}

template <bool FIXED>
__global__ void __launch_bounds__(32) warp_lane_exited(int* __restrict__ out) {
    const int lane = threadIdx.x;
    if (!FIXED && lane >= 16) return;
    const int r = __shfl_down_sync(0xffffffffu, lane, 1);
    if (lane < 16) out[lane] = r;
}

// A tensor-core op in a warp of 16 threads (the block has 48).
__global__ void __launch_bounds__(48) mma_partial_warp(float* __restrict__ out) {
    const unsigned a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    const float c[4] = {1.f, 2.f, 3.f, 4.f};
    float d[4];
    gc::ptx::mma_m16n8k16_f16_f32(d, a, b, c);
    out[threadIdx.x] = d[0];
}

// Half a warp in mma, the other half in ldmatrix.
__global__ void __launch_bounds__(32) mma_vs_ldmatrix(float* __restrict__ out) {
    __shared__ __align__(16) unsigned short tile[32][8];
    const int lane = threadIdx.x;
    for (int i = 0; i < 8; ++i) tile[lane][i] = 0;
    __syncwarp();
    const unsigned a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    const float c[4] = {1.f, 2.f, 3.f, 4.f};
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    if (lane < 16) {
        gc::ptx::mma_m16n8k16_f16_f32(d, a, b, c);
    } else {
        unsigned r[4];
        gc::ptx::ldmatrix_x4(r, &tile[lane][0]);
        d[0] = float(r[0]);
    }
    out[lane] = d[0];
}

// cp.async copies left pending when a block ends never land in the next block: block 0 issues
// into s and exits without waiting; block 1 only waits. out[b][t] = s[t] as seen after the wait.
__global__ void __launch_bounds__(64) cp_async_left_pending(const float* __restrict__ x, float* __restrict__ out) {
    __shared__ __align__(16) float s[64];
    const int t = threadIdx.x;
    if (blockIdx.x == 0) {
        gc::ptx::cp_async_ca<4>(&s[t], x + t);
        gc::ptx::cp_async_commit_group();
        out[t] = 0.f;
        return;
    }
    gc::ptx::cp_async_wait_all();
    out[64 + t] = s[t];
}

// The benchmark block: 256 threads, four barriers. out[t] = 2 x[t+3] + x[t+4] (indices mod 256).
__global__ void __launch_bounds__(256) four_barriers(const float* __restrict__ x, float* __restrict__ out) {
    __shared__ float s[256];
    const int t = threadIdx.x;
    const float* xb = x + blockIdx.x * 256;
    s[t] = xb[t];
    __syncthreads();
    float v = s[(t + 1) & 255];
    __syncthreads();
    s[t] = 2.f * v;
    __syncthreads();
    v = s[(t + 2) & 255] + xb[(t + 4) & 255];
    __syncthreads();
    s[t] = v;
    out[blockIdx.x * 256 + t] = v;
}

}  // namespace gct

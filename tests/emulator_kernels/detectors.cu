// Deliberately broken kernels, each next to its corrected version (FIXED = true), proving that
// every detector of the cuda-emulator fires on the bug and only on the bug
// (tests/test_emulator_detectors.py). One block of 256 threads unless the test says otherwise.
#include "common.cuh"

namespace gct {

// 1. A missing barrier in a double-buffered loop. Each iteration prefetches tile k+1 into the
// other buffer, waits, and sums a neighbour's element of tile k; the broken loop lacks the
// second barrier, so iteration k+1 overwrites buffer k&1 while slower threads still read tile k
// (write-after-read across threads). out[t] = sum_k x[k][(t + 1) % 256].
template <bool FIXED>
__global__ void __launch_bounds__(256) double_buffer_sum(const float* __restrict__ x, float* __restrict__ out, int tiles) {
    __shared__ float buf[2][256];
    const int t = threadIdx.x;
    buf[0][t] = x[t];
    float acc = 0.f;
    for (int k = 0; k < tiles; ++k) {
        if (k + 1 < tiles) buf[(k + 1) & 1][t] = x[(k + 1) * 256 + t];
        __syncthreads();  // tile k complete (and tile k+1's writes ordered after it)
        acc += buf[k & 1][(t + 1) % 256];
        if (FIXED) __syncthreads();  // everyone is done with buffer k&1 before it is refilled
    }
    out[t] = acc;
}

// 2. A read one past the end of dynamic shared memory: the launch gives n floats, thread n-1 of
// the broken kernel reads s[n]. out[t] = x[t] + x[(t + 1) % n].
template <bool FIXED>
__global__ void __launch_bounds__(256) dynamic_shared_overrun(const float* __restrict__ x, float* __restrict__ out, int n) {
    GC_DYNAMIC_SHARED(float, s);
    const int t = threadIdx.x;
    s[t] = x[t];
    __syncthreads();
    out[t] = s[t] + s[FIXED ? (t + 1) % n : t + 1];
}

// 3. A misaligned float4 load: x + 4t + 1 is 4- but not 16-byte aligned (x86 tolerates it, a
// GPU faults). out[t] = sum of x[4t + off .. 4t + off + 3].
template <bool FIXED>
__global__ void __launch_bounds__(256) misaligned_float4(const float* __restrict__ x, float* __restrict__ out) {
    const int t = threadIdx.x;
    const float4 v = *reinterpret_cast<const float4*>(x + 4 * t + (FIXED ? 0 : 1));
    out[t] = v.x + v.y + v.z + v.w;
}

// 4. A divergent __syncthreads: the two halves of the block wait at different barriers.
template <bool FIXED>
__global__ void __launch_bounds__(256) divergent_barrier(const float* __restrict__ x, float* __restrict__ out) {
    __shared__ float s[256];
    const int t = threadIdx.x;
    if (FIXED) {
        s[t] = t < 128 ? x[t] : 2.f * x[t];
        __syncthreads();
    } else if (t < 128) {
        s[t] = x[t];
        __syncthreads();
    } else {
        s[t] = 2.f * x[t];
        __syncthreads();
    }
    out[t] = s[255 - t];
}

// 5. A barrier reached by part of the block: threads past n return before it.
template <bool FIXED>
__global__ void __launch_bounds__(256) early_exit_barrier(const float* __restrict__ x, float* __restrict__ out, int n) {
    __shared__ float s[256];
    const int t = threadIdx.x;
    if (!FIXED && t >= n) return;
    s[t] = t < n ? x[t] : 0.f;
    __syncthreads();
    if (t < n) out[t] = s[(t + 1) % n];
}

// 6. A read before the cp.async wait: the copies are committed, the block synchronises, but the
// broken kernel never waits for its group, so the tile is still in flight. out[t] = x[(t+1) % 256].
template <bool FIXED>
__global__ void __launch_bounds__(256) cp_async_read_before_wait(const float* __restrict__ x, float* __restrict__ out) {
    __shared__ __align__(16) float s[256];
    const int t = threadIdx.x;
    if (t < 64) gc::ptx::cp_async_ca<16>(&s[4 * t], x + 4 * t);
    gc::ptx::cp_async_commit_group();
    if (FIXED) gc::ptx::cp_async_wait_group<0>();
    __syncthreads();
    out[t] = s[(t + 1) % 256];
}

// 7. A stale value from the previous block: the table is built only by block 0 ("it is shared
// memory, it is still there"); every block reads it. out[b][t] = x[b][t] * (t + 1).
template <bool FIXED>
__global__ void __launch_bounds__(256) stale_shared_table(const float* __restrict__ x, float* __restrict__ out) {
    __shared__ float scale[256];
    const int t = threadIdx.x;
    if (FIXED || blockIdx.x == 0) scale[t] = float(t + 1);
    __syncthreads();
    out[blockIdx.x * 256 + t] = x[blockIdx.x * 256 + t] * scale[t];
}

// 8. A misaligned ldmatrix row address (8 bytes into a row) and, 8b, an ldmatrix of global
// memory. One warp; out[L] = d[0] of lane L.
template <bool FIXED>
__global__ void __launch_bounds__(32) misaligned_ldmatrix(const unsigned short* __restrict__ values, unsigned* __restrict__ out) {
    __shared__ __align__(16) unsigned short tile[8][16];
    const int lane = threadIdx.x;
    for (int i = lane; i < 8 * 16; i += 32) tile[i / 16][i % 16] = values[i];
    __syncwarp();
    unsigned d[1];
    gc::ptx::ldmatrix_x1(d, &tile[lane & 7][FIXED ? 8 : 4]);
    out[lane] = d[0];
}

template <bool FIXED>
__global__ void __launch_bounds__(32) ldmatrix_of_global(const unsigned short* __restrict__ values, unsigned* __restrict__ out) {
    __shared__ __align__(16) unsigned short tile[8][8];
    const int lane = threadIdx.x;
    for (int i = lane; i < 64; i += 32) tile[i / 8][i % 8] = values[i];
    __syncwarp();
    unsigned d[1];
    gc::ptx::ldmatrix_x1(d, FIXED ? static_cast<const void*>(&tile[lane & 7][0]) : static_cast<const void*>(values + 8 * (lane & 7)));
    out[lane] = d[0];
}

}  // namespace gct

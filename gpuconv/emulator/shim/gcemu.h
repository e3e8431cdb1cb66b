// gcemu.h: the CUDA dialect of kernels/*.cu for a C++17 host compiler (the cuda-emulator backend).
//
// Included before a kernel source, it gives g++ what nvcc/NVRTC would: the qualifiers, the
// built-in index variables, vector types with CUDA's sizes and alignments, the integer/float
// bit-cast and min/max intrinsics, __syncthreads as a real barrier of the block's fibers, warp
// collectives as a rendezvous of the warp's lanes, and atomics. The kernel sources are not
// rewritten: what differs between the targets lives behind `#ifdef GPUCONV_EMULATOR` in
// kernels/ptx.cuh (one device function per PTX instruction) and GC_DYNAMIC_SHARED (common.cuh).
//
// Execution model (gcemu_runtime.cpp): blocks run one after another; a block's threads are fibers
// of one OS thread, each running until it reaches a barrier, a warp collective or its end. Static
// __shared__ variables are function-local statics, re-poisoned with 0xFF bytes (NaN in every
// float format) before every block; dynamic shared memory is a heap buffer of exactly the
// launch's bytes (so AddressSanitizer sees one byte past it).
#pragma once

#define GPUCONV_EMULATOR 1

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// Hidden: a template kernel's static __shared__ variables would otherwise be STB_GNU_UNIQUE symbols,
// which the dynamic linker binds process-wide despite RTLD_LOCAL (a second build of the same
// kernel, e.g. plain then race, would run on the first one's storage, unpoisoned and unchecked).
#define __global__ __attribute__((visibility("hidden")))
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))  // as CUDA defines it: valid anywhere in a declaration
#define __restrict__ __restrict
// One static per kernel instantiation serves every block (blocks run in turn). The host finds
// each variable in the symbol table (a function-local static: CUDA allows no other kind in device
// code) and has the runtime poison exactly the launched kernel's before every block; as ordinary
// statics they get AddressSanitizer's redzones.
#define __shared__ static __attribute__((aligned(16)))
#define __constant__ static

namespace gcemu {

struct uint3_t {
    unsigned int x, y, z;
};
struct dim3_t {
    unsigned int x, y, z;
};

// The fiber of the running CUDA thread (gcemu_runtime.cpp); its tid is threadIdx.
struct Fiber;
struct FiberIndex {
    uint3_t tid;
};
extern FiberIndex* current_index;
extern uint3_t block_idx;
extern dim3_t block_dim;
extern dim3_t grid_dim;

void sync_block(const char* file, int line);
void sync_warp(unsigned mask, const char* file, int line);
void* dynamic_shared();

// A warp collective: every participating lane (mask) posts `bytes` (<= kSlotBytes) of payload and
// waits for the others; the result is the 32 lanes' slots of this round (lane i at [i]), valid
// until this lane's next collective. `op` names the instruction for mismatch reports.
constexpr int kSlotBytes = 128;
struct alignas(16) Slot {
    unsigned char bytes[kSlotBytes];
};
const Slot* warp_exchange(unsigned mask, const char* op, const void* payload, int bytes, const char* file, int line);
int lane_id();

// Race-checker hooks for emulated instructions that touch shared memory without a plain C++
// access (cp.async lands at the wait; ldmatrix reads rows on behalf of the warp).
void note_shared_read(const void* p, size_t n);
void note_shared_write(const void* p, size_t n);
[[noreturn]] void fail(const char* file, int line, const char* message);

template <typename To, typename From>
inline To bit_cast(const From& v) {
    static_assert(sizeof(To) == sizeof(From), "bit_cast of different sizes");
    To t;
    memcpy(&t, &v, sizeof(To));
    return t;
}

}  // namespace gcemu

#define threadIdx (gcemu::current_index->tid)
#define blockIdx (gcemu::block_idx)
#define blockDim (gcemu::block_dim)
#define gridDim (gcemu::grid_dim)
#define warpSize 32

#define __syncthreads() gcemu::sync_block(__FILE__, __LINE__)
#define __syncwarp(...) gcemu::sync_warp(gcemu_mask_or_all(__VA_ARGS__), __FILE__, __LINE__)
inline unsigned gcemu_mask_or_all() { return 0xffffffffu; }
inline unsigned gcemu_mask_or_all(unsigned m) { return m; }
inline void __threadfence() {}
inline void __threadfence_block() {}

// ------------------------------------------------------------------------------------------
// Vector types (sizes and alignments as in CUDA's vector_types.h)
// ------------------------------------------------------------------------------------------
#define GCEMU_VEC2(T, N, A) struct alignas(A) N##2 { T x, y; };
#define GCEMU_VEC3(T, N) struct N##3 { T x, y, z; };
#define GCEMU_VEC4(T, N, A) struct alignas(A) N##4 { T x, y, z, w; };
GCEMU_VEC2(float, float, 8) GCEMU_VEC3(float, float) GCEMU_VEC4(float, float, 16)
GCEMU_VEC2(double, double, 16) GCEMU_VEC3(double, double) GCEMU_VEC4(double, double, 16)
GCEMU_VEC2(int, int, 8) GCEMU_VEC3(int, int) GCEMU_VEC4(int, int, 16)
GCEMU_VEC2(unsigned int, uint, 8) GCEMU_VEC3(unsigned int, uint) GCEMU_VEC4(unsigned int, uint, 16)
GCEMU_VEC2(short, short, 4) GCEMU_VEC4(short, short, 8)
GCEMU_VEC2(unsigned short, ushort, 4) GCEMU_VEC4(unsigned short, ushort, 8)
GCEMU_VEC2(long long, longlong, 16) GCEMU_VEC2(unsigned long long, ulonglong, 16)
#undef GCEMU_VEC2
#undef GCEMU_VEC3
#undef GCEMU_VEC4
typedef gcemu::dim3_t dim3;

inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// ------------------------------------------------------------------------------------------
// Integer and float intrinsics
// ------------------------------------------------------------------------------------------
inline float __int_as_float(int v) { return gcemu::bit_cast<float>(v); }
inline int __float_as_int(float v) { return gcemu::bit_cast<int>(v); }
inline float __uint_as_float(unsigned v) { return gcemu::bit_cast<float>(v); }
inline unsigned __float_as_uint(float v) { return gcemu::bit_cast<unsigned>(v); }
inline double __longlong_as_double(long long v) { return gcemu::bit_cast<double>(v); }
inline long long __double_as_longlong(double v) { return gcemu::bit_cast<long long>(v); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(unsigned(v)); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline unsigned __brev(unsigned v) {
    v = ((v >> 1) & 0x55555555u) | ((v & 0x55555555u) << 1);
    v = ((v >> 2) & 0x33333333u) | ((v & 0x33333333u) << 2);
    v = ((v >> 4) & 0x0f0f0f0fu) | ((v & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(v);
}
inline int __mul24(int a, int b) { return a * b; }
inline int __mulhi(int a, int b) { return int((long long)a * b >> 32); }

template <typename T>
inline T __ldg(const T* p) { return *p; }

// CUDA's min/max overloads (device functions in the global namespace in CUDA).
#define GCEMU_MINMAX(T) \
    inline T min(T a, T b) { return b < a ? b : a; } \
    inline T max(T a, T b) { return a < b ? b : a; }
GCEMU_MINMAX(int)
GCEMU_MINMAX(unsigned int)
GCEMU_MINMAX(long long)
GCEMU_MINMAX(unsigned long long)
GCEMU_MINMAX(long)
GCEMU_MINMAX(unsigned long)
#undef GCEMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ------------------------------------------------------------------------------------------
// Atomics: fibers of one OS thread never interleave inside a statement, so a read-modify-write
// is atomic as written (launches are serialised by the Python runtime).
// ------------------------------------------------------------------------------------------
template <typename T>
inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <typename T>
inline T atomicSub(T* p, T v) { T old = *p; *p = old - v; return old; }
template <typename T>
inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
template <typename T>
inline T atomicMax(T* p, T v) { T old = *p; *p = old < v ? v : old; return old; }
template <typename T>
inline T atomicMin(T* p, T v) { T old = *p; *p = v < old ? v : old; return old; }
template <typename T>
inline T atomicCAS(T* p, T cmp, T v) { T old = *p; if (old == cmp) *p = v; return old; }
template <typename T>
inline T atomicAnd(T* p, T v) { T old = *p; *p = old & v; return old; }
template <typename T>
inline T atomicOr(T* p, T v) { T old = *p; *p = old | v; return old; }
template <typename T>
inline T atomicXor(T* p, T v) { T old = *p; *p = old ^ v; return old; }

// ------------------------------------------------------------------------------------------
// Warp collectives (rendezvous of the lanes in `mask`)
// ------------------------------------------------------------------------------------------
namespace gcemu {
template <typename T>
inline T shfl_from(unsigned mask, T v, int src_of_lane_fn_kind, int arg, int width, const char* op, const char* file,
                   int line) {
    static_assert(sizeof(T) <= kSlotBytes, "shuffle payload too large");
    const Slot* s = warp_exchange(mask, op, &v, sizeof(T), file, line);
    const int lane = lane_id();
    const int base = lane & ~(width - 1);
    int src = lane;
    switch (src_of_lane_fn_kind) {
        case 0: src = base + (arg & (width - 1)); break;                    // idx
        case 1: src = (lane - base) >= arg ? lane - arg : lane; break;       // up
        case 2: src = (lane - base) + arg < width ? lane + arg : lane; break;  // down
        case 3: src = (lane ^ arg) < base + width ? (lane ^ arg) : lane; break;  // xor: a later group -> own value
    }
    T r;
    memcpy(&r, s[src].bytes, sizeof(T));
    return r;
}
inline unsigned vote(unsigned mask, int pred, const char* op, const char* file, int line) {
    const Slot* s = warp_exchange(mask, op, &pred, sizeof(int), file, line);
    unsigned bits = 0;
    for (int i = 0; i < 32; ++i) {
        int p;
        memcpy(&p, s[i].bytes, sizeof(int));
        if (((mask >> i) & 1u) && p) bits |= 1u << i;
    }
    return bits;
}
}  // namespace gcemu

#define __shfl_sync(m, v, l, ...) gcemu::shfl_from(m, v, 0, l, gcemu_width(__VA_ARGS__), "__shfl_sync", __FILE__, __LINE__)
#define __shfl_up_sync(m, v, d, ...) gcemu::shfl_from(m, v, 1, d, gcemu_width(__VA_ARGS__), "__shfl_up_sync", __FILE__, __LINE__)
#define __shfl_down_sync(m, v, d, ...) gcemu::shfl_from(m, v, 2, d, gcemu_width(__VA_ARGS__), "__shfl_down_sync", __FILE__, __LINE__)
#define __shfl_xor_sync(m, v, d, ...) gcemu::shfl_from(m, v, 3, d, gcemu_width(__VA_ARGS__), "__shfl_xor_sync", __FILE__, __LINE__)
#define __ballot_sync(m, p) gcemu::vote(m, (p) ? 1 : 0, "__ballot_sync", __FILE__, __LINE__)
#define __any_sync(m, p) (gcemu::vote(m, (p) ? 1 : 0, "__any_sync", __FILE__, __LINE__) != 0u)
#define __all_sync(m, p) (gcemu::vote(m, (p) ? 1 : 0, "__all_sync", __FILE__, __LINE__) == (m))
inline int gcemu_width() { return 32; }
inline int gcemu_width(int w) { return w; }

inline size_t __cvta_generic_to_shared(const void* p) { return (size_t)p; }
#include "gcemu_ptx.h"

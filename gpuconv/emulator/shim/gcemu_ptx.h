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

// ==========================================================================================
// The tensor-core tier: conversions, mma.sync, ldmatrix, cp.async
// ==========================================================================================
#include <stdarg.h>
#include <stdio.h>

#include <vector>

namespace gcemu {

// What the runtime (gcemu_runtime.cpp) provides for the emulations below.
bool is_shared(const void* p, size_t n);  // [p, p + n) lies inside one shared variable or the dynamic area
// Race-checker hooks (no-ops outside the 'race' build):
//   a read made on behalf of the warp by the collective this lane has just completed (ordered
//   after the lanes' earlier accesses and before their later ones);
void note_shared_read_collective(const void* p, size_t n);
//   a cp.async issued into [p, p + n): a write now, and the bytes are pending until it lands;
void note_async_issue(const void* p, size_t n);
//   the cp.async lands (at this thread's wait): the write that becomes visible.
void note_async_land(const void* p, size_t n);

#define GCEMU_PTX_NO_TSAN __attribute__((no_sanitize_thread, noinline))

[[noreturn]] inline void failf(const char* file, int line, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
inline void failf(const char* file, int line, const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fail(file, line, buf);
}

// ------------------------------------------------------------------------------------------
// bfloat16, packed and tf32 conversions (the rounding of cvt.rn / cvt.rna; a NaN becomes the
// canonical NaN)
// ------------------------------------------------------------------------------------------
inline unsigned short cvt_rn_bf16_f32(float f) {
    const uint32_t x = bit_cast<uint32_t>(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
    return (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);  // to nearest even; overflow -> Inf
}

inline float cvt_f32_bf16(unsigned short h) { return bit_cast<float>(uint32_t(h) << 16); }

// cvt.rn.f16x2.f32 d, a, b: a in the upper half of d, b in the lower.
inline uint32_t cvt_rn_f16x2_f32(float hi, float lo) {
    return (uint32_t(cvt_rn_f16_f32(hi)) << 16) | cvt_rn_f16_f32(lo);
}
inline uint32_t cvt_rn_bf16x2_f32(float hi, float lo) {
    return (uint32_t(cvt_rn_bf16_f32(hi)) << 16) | cvt_rn_bf16_f32(lo);
}

// cvt.rna.tf32.f32: to nearest, ties away from zero, on the 10-bit mantissa; the low 13 bits of
// the result are zero.
inline uint32_t cvt_rna_tf32_f32(float f) {
    const uint32_t x = bit_cast<uint32_t>(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffffffu;
    return (x + 0x1000u) & 0xffffe000u;
}

// ------------------------------------------------------------------------------------------
// Warp shape helpers
// ------------------------------------------------------------------------------------------
inline int warp_lanes() {
    const unsigned n = blockDim.x * blockDim.y * blockDim.z;
    const unsigned linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned base = linear & ~31u;
    return int(n - base < 32u ? n - base : 32u);
}

inline void require_full_warp(const char* op, const char* file, int line) {
    const int lanes = warp_lanes();
    if (lanes < 32)
        failf(file, line, "%s needs all 32 lanes of a warp, but this warp of the block has only %d threads", op, lanes);
}

// ------------------------------------------------------------------------------------------
// mma.sync.aligned.{m16n8k16 f16/bf16, m16n8k8 tf32}.row.col.f32 (fragment layouts of the PTX
// ISA, "Matrix Fragments for mma.m16n8k16 / mma.m16n8k8 with floating point type"):
//   groupID = lane >> 2, tig = lane % 4
//   m16n8k16 A (4 x .b32 = a0..a7, low half first): row = groupID + 8 * ((i >> 1) & 1),
//            col = 2 * tig + (i & 1) + 8 * (i >= 4)
//            B (2 x .b32 = b0..b3): k = 2 * tig + (i & 1) + 8 * (i >= 2), n = groupID
//   m16n8k8 tf32 A (a0..a3): row = groupID + 8 * (i & 1), col = tig + 4 * (i >= 2)
//            B (b0, b1): k = tig + 4 * i, n = groupID
//   C / D (4 x f32): row = groupID + 8 * (i >= 2), col = 2 * tig + (i & 1)
// The products of f16, bf16 and tf32 operands are exact in binary32; the emulation adds them and
// C in binary64 and rounds once (the hardware's internal order and truncation are unspecified:
// results agree to fp32 rounding, not bitwise). A tf32 operand's low 13 bits are ignored.
// ------------------------------------------------------------------------------------------
struct MmaPost {
    uint32_t a[4];
    uint32_t b[2];
};

inline float mma_operand(uint32_t reg, int half_index, int kind) {
    const unsigned short h = (unsigned short)(half_index ? reg >> 16 : reg & 0xffffu);
    return kind == 0 ? cvt_f32_f16(h) : cvt_f32_bf16(h);
}

// kind 0: f16, 1: bf16
inline void mma_m16n8k16(float* d, const uint32_t* a, const uint32_t* b, const float* c, int kind, const char* file,
                         int line) {
    const char* op = kind == 0 ? "mma.sync.m16n8k16.row.col.f32.f16.f16.f32" : "mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32";
    require_full_warp(op, file, line);
    const MmaPost mine = {{a[0], a[1], a[2], a[3]}, {b[0], b[1]}};
    const float cin[4] = {c[0], c[1], c[2], c[3]};
    const Slot* s = warp_exchange(0xffffffffu, op, &mine, sizeof(mine), file, line);
    const int lane = lane_id(), g = lane >> 2, t = lane & 3;
    float A[2][16], B[2][16];  // this lane's rows g, g + 8 of A; columns 2t, 2t + 1 of B
    for (int h = 0; h < 2; ++h)
        for (int k = 0; k < 16; ++k) {
            const MmaPost& p = *reinterpret_cast<const MmaPost*>(s[g * 4 + ((k & 7) >> 1)].bytes);
            const int i = (k & 1) + 2 * h + 4 * (k >= 8);
            A[h][k] = mma_operand(p.a[i >> 1], i & 1, kind);
        }
    for (int j = 0; j < 2; ++j)
        for (int k = 0; k < 16; ++k) {
            const MmaPost& p = *reinterpret_cast<const MmaPost*>(s[(2 * t + j) * 4 + ((k & 7) >> 1)].bytes);
            const int i = (k & 1) + 2 * (k >= 8);
            B[j][k] = mma_operand(p.b[i >> 1], i & 1, kind);
        }
    for (int i = 0; i < 4; ++i) {
        const float* arow = A[i >> 1];
        const float* bcol = B[i & 1];
        double acc = cin[i];
        for (int k = 0; k < 16; ++k) acc += double(arow[k]) * double(bcol[k]);
        d[i] = float(acc);
    }
}

inline void mma_m16n8k8_tf32(float* d, const uint32_t* a, const uint32_t* b, const float* c, const char* file, int line) {
    const char* op = "mma.sync.m16n8k8.row.col.f32.tf32.tf32.f32";
    require_full_warp(op, file, line);
    const MmaPost mine = {{a[0], a[1], a[2], a[3]}, {b[0], b[1]}};
    const float cin[4] = {c[0], c[1], c[2], c[3]};
    const Slot* s = warp_exchange(0xffffffffu, op, &mine, sizeof(mine), file, line);
    const int lane = lane_id(), g = lane >> 2, t = lane & 3;
    float A[2][8], B[2][8];
    for (int h = 0; h < 2; ++h)
        for (int k = 0; k < 8; ++k) {
            const MmaPost& p = *reinterpret_cast<const MmaPost*>(s[g * 4 + (k & 3)].bytes);
            A[h][k] = bit_cast<float>(p.a[h + 2 * (k >= 4)] & 0xffffe000u);
        }
    for (int j = 0; j < 2; ++j)
        for (int k = 0; k < 8; ++k) {
            const MmaPost& p = *reinterpret_cast<const MmaPost*>(s[(2 * t + j) * 4 + (k & 3)].bytes);
            B[j][k] = bit_cast<float>(p.b[k >= 4] & 0xffffe000u);
        }
    for (int i = 0; i < 4; ++i) {
        double acc = cin[i];
        for (int k = 0; k < 8; ++k) acc += double(A[i >> 1][k]) * double(B[i & 1][k]);
        d[i] = float(acc);
    }
}

// ------------------------------------------------------------------------------------------
// ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{.trans}.shared.b16: lanes 8m .. 8m + 7 give the row
// addresses of matrix m (each row 8 x 16 bits, 16-byte aligned, in shared memory). Without
// .trans, lane L receives row L / 4, columns 2 (L % 4) and 2 (L % 4) + 1 of matrix m in d[m]
// (the lower column in the low half); with .trans, rows 2 (L % 4) and 2 (L % 4) + 1 of column
// L / 4. The rows are read once for the whole warp, by the first lane to leave the rendezvous,
// so that no lane's later store can reach another lane's fragment.
// ------------------------------------------------------------------------------------------
struct LdmatrixPost {
    const unsigned char* addr;
    uint32_t filled;
    uint32_t pad;
    unsigned char row[16];
};

GCEMU_PTX_NO_TSAN inline void ldmatrix_snapshot(Slot* s, int rows) {
    LdmatrixPost* first = reinterpret_cast<LdmatrixPost*>(s[0].bytes);
    if (first->filled) return;
    for (int i = 0; i < rows; ++i) {
        LdmatrixPost* p = reinterpret_cast<LdmatrixPost*>(s[i].bytes);
        memcpy(p->row, p->addr, 16);
        note_shared_read_collective(p->addr, 16);
    }
    first->filled = 1;
}

template <int NUM, bool TRANS>
inline void ldmatrix(uint32_t* d, const void* row, const char* file, int line) {
    static_assert(NUM == 1 || NUM == 2 || NUM == 4, "ldmatrix loads 1, 2 or 4 matrices");
    // (no function-local static here: the runtime treats those as __shared__ variables)
    const char* const op = TRANS ? (NUM == 1 ? "ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16"
                                           : NUM == 2 ? "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16"
                                                      : "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16")
                                        : (NUM == 1 ? "ldmatrix.sync.aligned.m8n8.x1.shared.b16"
                                           : NUM == 2 ? "ldmatrix.sync.aligned.m8n8.x2.shared.b16"
                                                      : "ldmatrix.sync.aligned.m8n8.x4.shared.b16");
    require_full_warp(op, file, line);
    const int lane = lane_id();
    if (lane < 8 * NUM) {  // the lanes whose address the instruction uses
        if (reinterpret_cast<uintptr_t>(row) % 16 != 0)
            failf(file, line, "%s: lane %d gives row address %p, which is not 16-byte aligned (each 8 x b16 row of "
                  "matrix %d must start on a 16-byte boundary)", op, lane, row, lane / 8);
        if (!is_shared(row, 16))
            failf(file, line, "%s: lane %d gives row address %p, whose 16 bytes are not inside the block's shared "
                  "memory (ldmatrix reads .shared only)", op, lane, row);
    }
    LdmatrixPost post = {static_cast<const unsigned char*>(row), 0, 0, {0}};
    Slot* s = const_cast<Slot*>(warp_exchange(0xffffffffu, op, &post, sizeof(post), file, line));
    ldmatrix_snapshot(s, 8 * NUM);
    for (int m = 0; m < NUM; ++m) {
        unsigned short lo, hi;
        if (!TRANS) {
            const LdmatrixPost& p = *reinterpret_cast<const LdmatrixPost*>(s[8 * m + (lane >> 2)].bytes);
            memcpy(&lo, p.row + 4 * (lane & 3), 2);
            memcpy(&hi, p.row + 4 * (lane & 3) + 2, 2);
        } else {
            const LdmatrixPost& p0 = *reinterpret_cast<const LdmatrixPost*>(s[8 * m + 2 * (lane & 3)].bytes);
            const LdmatrixPost& p1 = *reinterpret_cast<const LdmatrixPost*>(s[8 * m + 2 * (lane & 3) + 1].bytes);
            memcpy(&lo, p0.row + 2 * (lane >> 2), 2);
            memcpy(&hi, p1.row + 2 * (lane >> 2), 2);
        }
        d[m] = uint32_t(lo) | (uint32_t(hi) << 16);
    }
}

// ------------------------------------------------------------------------------------------
// cp.async.{ca,cg}.shared.global [dst], [src], cp-size{, src-size}; commit_group; wait_group N;
// wait_all. Each thread keeps its own queue (AsyncQueue, a field of its fiber, emptied before
// every block). At issue the source is read (src-size bytes, the rest zero) and the destination
// is poisoned with 0xFF (a NaN in every float format); the bytes land at the wait that completes
// their group, so a read before the wait sees NaN, and the race checker reports it.
// ------------------------------------------------------------------------------------------
struct AsyncCopy {
    unsigned char* dst;
    unsigned group;  // the commit group it belongs to (number of commits before its issue)
    int bytes;
    alignas(16) unsigned char data[16];
};

struct AsyncQueue {
    std::vector<AsyncCopy> pending;  // in issue order
    unsigned committed = 0;          // commit_group calls so far in this block
    void reset() {
        pending.clear();
        committed = 0;
    }
};
AsyncQueue& async_queue();  // this thread's queue (gcemu_runtime.cpp)

GCEMU_PTX_NO_TSAN inline void async_poison(unsigned char* dst, int n) {
    for (int i = 0; i < n; ++i) dst[i] = 0xFF;
    note_async_issue(dst, size_t(n));
}

GCEMU_PTX_NO_TSAN inline void async_land(const AsyncCopy& c) {
    memcpy(c.dst, c.data, size_t(c.bytes));
    note_async_land(c.dst, size_t(c.bytes));
}

template <int BYTES>
inline void cp_async(void* dst, const void* src, int src_bytes, bool cg, const char* file, int line) {
    static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async copies 4, 8 or 16 bytes");
    const char* op = cg ? "cp.async.cg.shared.global" : "cp.async.ca.shared.global";
    if (cg && BYTES != 16) failf(file, line, "%s copies 16 bytes only", op);
    if (reinterpret_cast<uintptr_t>(dst) % BYTES != 0)
        failf(file, line, "%s: shared destination %p is not aligned to the copy size (%d bytes)", op, dst, BYTES);
    if (src_bytes < 0 || src_bytes > BYTES)
        failf(file, line, "%s: src-size %d outside [0, %d]", op, src_bytes, BYTES);
    if (src_bytes > 0 && reinterpret_cast<uintptr_t>(src) % BYTES != 0)
        failf(file, line, "%s: global source %p is not aligned to the copy size (%d bytes)", op, src, BYTES);
    if (!is_shared(dst, BYTES))
        failf(file, line, "%s: destination [%p, +%d) is not inside the block's shared memory", op, dst, BYTES);
    AsyncQueue& q = async_queue();
    AsyncCopy c;
    c.dst = static_cast<unsigned char*>(dst);
    c.group = q.committed;
    c.bytes = BYTES;
    memset(c.data, 0, sizeof(c.data));
    if (src_bytes > 0) memcpy(c.data, src, size_t(src_bytes));  // the source is read at issue
    async_poison(c.dst, BYTES);
    q.pending.push_back(c);
}

inline void cp_async_commit_group() { ++async_queue().committed; }

// Lands, in issue order, every copy of the committed groups older than the newest `n`.
inline void cp_async_wait_group(unsigned n) {
    AsyncQueue& q = async_queue();
    const unsigned limit = q.committed > n ? q.committed - n : 0u;
    size_t kept = 0;
    for (size_t i = 0; i < q.pending.size(); ++i) {
        if (q.pending[i].group < limit) async_land(q.pending[i]);
        else q.pending[kept++] = q.pending[i];
    }
    q.pending.resize(kept);
}

// cp.async.wait_all = cp.async.commit_group; cp.async.wait_group 0.
inline void cp_async_wait_all() {
    cp_async_commit_group();
    cp_async_wait_group(0);
}

}  // namespace gcemu

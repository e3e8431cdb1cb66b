// gcemu_runtime.cpp: the execution engine of the cuda-emulator, compiled into every kernel
// shared object after the kernel source (see gcemu.h for the model).
//
// A launch runs its blocks in turn (optionally in a shuffled order). A block's threads are fibers
// on one OS thread: each runs until it reaches __syncthreads, a warp collective or its end, then
// the scheduler decides what may continue. That makes a barrier a real barrier (a thread past it
// sees every write made before it) and lets the scheduler check what CUDA leaves undefined:
// a barrier reached from different call sites or by only part of the block, a warp collective
// whose lanes disagree, a deadlock. Errors end the launch with a message; the Python side raises.
//
// Context switches are a dozen instructions on x86-64 (callee-saved registers, the stack pointer,
// MXCSR and the x87 control word); ucontext elsewhere. Stacks are mmap'd once, with a guard page.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define GCEMU_ASAN 1
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#define GCEMU_NO_TSAN __attribute__((no_sanitize_thread, noinline))

namespace gcemu {

FiberIndex* current_index = nullptr;
uint3_t block_idx = {0, 0, 0};
dim3_t block_dim = {1, 1, 1};
dim3_t grid_dim = {1, 1, 1};

enum State { READY, AT_BARRIER, AT_WARP, DONE };

struct Fiber {
    FiberIndex index;  // threadIdx
    int linear = 0;    // x + X * (y + Y * z)
    State state = READY;
    const char* file = nullptr;  // the call site it waits at
    int line = 0;
    unsigned mask = 0;  // of the warp collective it waits at
    const char* op = nullptr;
    unsigned round = 0;  // warp collectives completed by this lane
    AsyncQueue async;    // its cp.async copies not landed yet (gcemu_ptx.h), emptied before each block
    char* stack_lo = nullptr;
    size_t stack_size = 0;
#if defined(__x86_64__)
    void* sp = nullptr;
#else
    ucontext_t ctx;
#endif
#if defined(GCEMU_ASAN)
    void* fake_stack = nullptr;
#endif
};

struct Warp {
    Slot slots[2][32];
};

struct SharedRange {
    char* lo;
    char* hi;
    const char* name;
};

struct Launch {
    void (*body)(void**) = nullptr;
    void** args = nullptr;
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    int nthreads = 0;
#if defined(__x86_64__)
    void* sched_sp = nullptr;
#else
    ucontext_t sched_ctx;
#endif
#if defined(GCEMU_ASAN)
    void* sched_fake = nullptr;
    const void* sched_stack_lo = nullptr;
    size_t sched_stack_size = 0;
#endif
    unsigned char* dynamic = nullptr;
    size_t dynamic_bytes = 0;
    std::vector<SharedRange> statics;  // the kernels' static __shared__ variables (set from Python)
    bool failed = false;
    char message[2048] = {0};
    unsigned epoch = 1;      // barrier intervals, across blocks (race checker)
    unsigned block_seq = 1;  // blocks run so far (race checker)
};

static Launch L;
static size_t g_stack_bytes = 64 * 1024;

// ------------------------------------------------------------------------------------------
// Context switching
// ------------------------------------------------------------------------------------------
#if defined(__x86_64__)
extern "C" void gcemu_switch_stack(void** save_sp, void* load_sp);
asm(R"(
    .text
    .p2align 4
    .hidden gcemu_switch_stack
    .type gcemu_switch_stack, @function
gcemu_switch_stack:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size gcemu_switch_stack, .-gcemu_switch_stack
)");
#endif

static void fiber_main();

#if defined(__x86_64__)
extern "C" void gcemu_fiber_entry() { fiber_main(); }
#endif

GCEMU_NO_TSAN static void enter_fiber(Fiber& f) {
    current_index = &f.index;
#if defined(GCEMU_ASAN)
    __sanitizer_start_switch_fiber(&L.sched_fake, f.stack_lo, f.stack_size);
#endif
#if defined(__x86_64__)
    gcemu_switch_stack(&L.sched_sp, f.sp);
#else
    swapcontext(&L.sched_ctx, &f.ctx);
#endif
#if defined(GCEMU_ASAN)
    __sanitizer_finish_switch_fiber(L.sched_fake, nullptr, nullptr);
#endif
    current_index = nullptr;
}

GCEMU_NO_TSAN static void leave_fiber(Fiber& f, bool finished) {
#if defined(GCEMU_ASAN)
    __sanitizer_start_switch_fiber(finished ? nullptr : &f.fake_stack, L.sched_stack_lo, L.sched_stack_size);
#else
    (void)finished;
#endif
#if defined(__x86_64__)
    gcemu_switch_stack(&f.sp, L.sched_sp);
#else
    swapcontext(&f.ctx, &L.sched_ctx);
#endif
#if defined(GCEMU_ASAN)
    __sanitizer_finish_switch_fiber(f.fake_stack, nullptr, nullptr);
#endif
}

static Fiber& self() { return *reinterpret_cast<Fiber*>(current_index); }

GCEMU_NO_TSAN static void fiber_main() {
    Fiber& f = self();
#if defined(GCEMU_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &L.sched_stack_lo, &L.sched_stack_size);
#endif
    L.body(L.args);
    f.state = DONE;
    leave_fiber(f, true);
    abort();  // a finished fiber is never resumed
}

#if !defined(__x86_64__)
static void fiber_trampoline() { fiber_main(); }
#endif

GCEMU_NO_TSAN static void reset_stack(Fiber& f) {
#if defined(__x86_64__)
    // Top of stack: [fake return address][entry][6 callee-saved regs][mxcsr | fpu cw]; at entry's
    // first instruction rsp = top - 8, the ABI's alignment for a called function.
    void** sp = reinterpret_cast<void**>(f.stack_lo + f.stack_size);
    *--sp = nullptr;
    *--sp = reinterpret_cast<void*>(&gcemu_fiber_entry);
    for (int i = 0; i < 6; ++i) *--sp = nullptr;
    unsigned mxcsr;
    unsigned short fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    *--sp = reinterpret_cast<void*>(uintptr_t(mxcsr) | (uintptr_t(fpucw) << 32));
    f.sp = sp;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack_lo;
    f.ctx.uc_stack.ss_size = f.stack_size;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_trampoline, 0);
#endif
}

static bool ensure_fibers(int n, char* err, size_t errlen) {
    if (int(L.fibers.size()) >= n && (L.fibers.empty() || L.fibers[0].stack_size == g_stack_bytes)) return true;
    for (Fiber& f : L.fibers) munmap(f.stack_lo - 4096, f.stack_size + 4096);
    L.fibers.clear();
    L.fibers.resize(n);
    for (Fiber& f : L.fibers) {
        char* base = static_cast<char*>(
            mmap(nullptr, g_stack_bytes + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
        if (base == MAP_FAILED) {
            snprintf(err, errlen, "could not map %zu bytes of fiber stacks for %d threads", g_stack_bytes, n);
            L.fibers.clear();
            return false;
        }
        mprotect(base, 4096, PROT_NONE);  // guard page: a stack overflow faults instead of corrupting
        f.stack_lo = base + 4096;
        f.stack_size = g_stack_bytes;
    }
    return true;
}

// ------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------
static void describe_thread(const Fiber& f, char* out, size_t n) {
    snprintf(out, n, "thread (%u,%u,%u) of block (%u,%u,%u)", f.index.tid.x, f.index.tid.y, f.index.tid.z,
             block_idx.x, block_idx.y, block_idx.z);
}

static void set_error(const char* text) {
    if (!L.failed) {
        L.failed = true;
        snprintf(L.message, sizeof(L.message), "%s", text);
    }
}

GCEMU_NO_TSAN void fail(const char* file, int line, const char* message) {
    char who[128], buf[1536];
    if (current_index != nullptr) {
        describe_thread(self(), who, sizeof(who));
        snprintf(buf, sizeof(buf), "%s:%d: %s (%s)", file, line, message, who);
        set_error(buf);
        Fiber& f = self();
        f.state = DONE;
        leave_fiber(f, true);
        abort();
    }
    snprintf(buf, sizeof(buf), "%s:%d: %s", file, line, message);
    set_error(buf);
    abort();
}

// ------------------------------------------------------------------------------------------
// Barriers and warp collectives
// ------------------------------------------------------------------------------------------
GCEMU_NO_TSAN void sync_block(const char* file, int line) {
    Fiber& f = self();
    f.state = AT_BARRIER;
    f.file = file;
    f.line = line;
    leave_fiber(f, false);
}

int lane_id() { return self().linear & 31; }

GCEMU_NO_TSAN const Slot* warp_exchange(unsigned mask, const char* op, const void* payload, int bytes, const char* file,
                                        int line) {
    Fiber& f = self();
    const int lane = f.linear & 31;
    if (!((mask >> lane) & 1u)) fail(file, line, "warp collective called by a lane outside its own mask");
    if (bytes > kSlotBytes) fail(file, line, "warp collective payload too large for the emulator");
    Warp& w = L.warps[f.linear >> 5];
    if (bytes > 0) memcpy(w.slots[f.round & 1][lane].bytes, payload, size_t(bytes));
    f.state = AT_WARP;
    f.mask = mask;
    f.op = op;
    f.file = file;
    f.line = line;
    leave_fiber(f, false);
    const Slot* result = w.slots[f.round & 1];
    ++f.round;
    return result;
}

void sync_warp(unsigned mask, const char* file, int line) { warp_exchange(mask, "__syncwarp", nullptr, 0, file, line); }

void* dynamic_shared() { return L.dynamic; }

AsyncQueue& async_queue() { return self().async; }

bool is_shared(const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    for (const SharedRange& r : L.statics)
        if (c >= r.lo && c + n <= r.hi) return true;
    const char* d = reinterpret_cast<const char*>(L.dynamic);
    return L.dynamic_bytes && c >= d && c + n <= d + L.dynamic_bytes;
}

// Releases the warps whose collectives are complete; false (with L.failed) on a mismatch.
GCEMU_NO_TSAN static bool release_warps(bool& released) {
    char a[128], b[128], buf[1024];
    const int n = L.nthreads;
    for (int base = 0; base < n; base += 32) {
        const int lanes = std::min(32, n - base);
        int first = -1;
        for (int i = 0; i < lanes; ++i)
            if (L.fibers[base + i].state == AT_WARP) { first = base + i; break; }
        if (first < 0) continue;
        const Fiber& lead = L.fibers[first];
        bool complete = true;
        for (int i = 0; i < lanes; ++i) {
            const Fiber& f = L.fibers[base + i];
            const bool member = (lead.mask >> i) & 1u;
            if (f.state == AT_WARP) {
                if (f.mask != lead.mask || f.op != lead.op || f.round != lead.round) {
                    describe_thread(lead, a, sizeof(a));
                    describe_thread(f, b, sizeof(b));
                    snprintf(buf, sizeof(buf),
                             "warp collective mismatch: %s waits in %s (mask 0x%08x) at %s:%d, %s in %s (mask 0x%08x) at %s:%d",
                             a, lead.op, lead.mask, lead.file, lead.line, b, f.op, f.mask, f.file, f.line);
                    set_error(buf);
                    return false;
                }
            } else if (member) {
                complete = false;
                if (f.state == DONE) {
                    describe_thread(lead, a, sizeof(a));
                    describe_thread(f, b, sizeof(b));
                    snprintf(buf, sizeof(buf), "%s waits in %s at %s:%d for %s, which has exited", a, lead.op, lead.file,
                             lead.line, b);
                    set_error(buf);
                    return false;
                }
            }
        }
        if (!complete) continue;
        for (int i = 0; i < lanes; ++i)
            if (L.fibers[base + i].state == AT_WARP) L.fibers[base + i].state = READY;
        released = true;
    }
    return true;
}

// Releases the block barrier when every thread waits at it from one call site.
GCEMU_NO_TSAN static bool release_barrier(bool& released) {
    char a[128], b[128], buf[1024];
    int waiting = 0, done = 0, first = -1, other = -1;
    for (int i = 0; i < L.nthreads; ++i) {
        const Fiber& f = L.fibers[i];
        if (f.state == AT_BARRIER) {
            ++waiting;
            if (first < 0) first = i;
            else if (other < 0 && (f.line != L.fibers[first].line || strcmp(f.file, L.fibers[first].file) != 0)) other = i;
        } else if (f.state == DONE) {
            ++done;
        }
    }
    if (waiting == 0) return true;
    if (waiting + done < L.nthreads) return true;  // someone is still in a warp collective
    const Fiber& lead = L.fibers[first];
    describe_thread(lead, a, sizeof(a));
    if (other >= 0) {
        describe_thread(L.fibers[other], b, sizeof(b));
        snprintf(buf, sizeof(buf), "divergent __syncthreads: %s waits at %s:%d, %s at %s:%d", a, lead.file, lead.line, b,
                 L.fibers[other].file, L.fibers[other].line);
        set_error(buf);
        return false;
    }
    if (done > 0) {
        snprintf(buf, sizeof(buf), "__syncthreads at %s:%d reached by %d of %d threads of the block (%s among them); the "
                 "other %d exited", lead.file, lead.line, waiting, L.nthreads, a, done);
        set_error(buf);
        return false;
    }
    for (int i = 0; i < L.nthreads; ++i) L.fibers[i].state = READY;
    ++L.epoch;
    released = true;
    return true;
}

GCEMU_NO_TSAN static void deadlock_report() {
    char a[128], buf[1024];
    for (int i = 0; i < L.nthreads; ++i) {
        const Fiber& f = L.fibers[i];
        if (f.state == AT_WARP) {
            describe_thread(f, a, sizeof(a));
            snprintf(buf, sizeof(buf), "deadlock: %s waits in %s at %s:%d while other threads of its warp wait at "
                     "__syncthreads or have exited", a, f.op, f.file, f.line);
            set_error(buf);
            return;
        }
    }
    set_error("deadlock: no thread of the block can proceed");
}

// ------------------------------------------------------------------------------------------
// Shared memory: poisoning and the race checker
// ------------------------------------------------------------------------------------------
// 0xFF bytes are a NaN in binary16, binary32 and binary64: a read before any write of this block
// shows up in the result. Written as plain stores, outside AddressSanitizer's view (the statics'
// redzones are not ours to touch, the bytes inside them are).
__attribute__((no_sanitize_address)) GCEMU_NO_TSAN static void poison(char* lo, char* hi) {
    for (volatile char* p = lo; p < hi; ++p) *p = char(0xFF);
}

GCEMU_NO_TSAN static void poison_shared() {
    for (const SharedRange& r : L.statics) poison(r.lo, r.hi);
    if (L.dynamic_bytes) poison(reinterpret_cast<char*>(L.dynamic), reinterpret_cast<char*>(L.dynamic) + L.dynamic_bytes);
}

#if defined(GCEMU_RACECHECK)
// Per shared byte: who wrote and read it in the current barrier interval (epoch), in which
// round of its warp's collectives, and whether this block wrote it at all.
struct Cell {
    unsigned w_epoch, r_epoch, written_block;
    unsigned short writer, reader;  // linear thread ids; kMany: several readers
    unsigned w_round, r_round;
    const void* w_pc;
    unsigned pending_block;         // == L.block_seq: a cp.async into this byte has not landed yet
    unsigned short pending_thread;  // the thread that issued it
};
enum AccessKind { ACCESS_PLAIN, ACCESS_COLLECTIVE_READ, ACCESS_ASYNC_ISSUE, ACCESS_ASYNC_LAND };
static const unsigned short kMany = 0xFFFF;
static std::vector<Cell> g_cells;
static size_t g_cell_count = 0;  // g_cells.size(), read without calling (instrumented) library code
static const char* g_shared_lo = nullptr;  // bounding box of every shared range
static const char* g_shared_hi = nullptr;
static std::vector<std::pair<char*, size_t>> g_cell_base;  // per range: (lo, first cell)

GCEMU_NO_TSAN static void reset_cells() {
    size_t total = 0;
    g_cell_base.clear();
    auto add = [&](char* lo, char* hi) { g_cell_base.push_back({lo, total}); total += size_t(hi - lo); };
    for (const SharedRange& r : L.statics) add(r.lo, r.hi);
    if (L.dynamic_bytes) add(reinterpret_cast<char*>(L.dynamic), reinterpret_cast<char*>(L.dynamic) + L.dynamic_bytes);
    g_cells.assign(total, Cell{0, 0, 0, 0, 0, 0, 0, nullptr});
    g_cell_count = total;
    g_shared_lo = reinterpret_cast<const char*>(~uintptr_t(0));
    g_shared_hi = nullptr;
    for (const auto& b : g_cell_base) g_shared_lo = std::min<const char*>(g_shared_lo, b.first);
    for (const SharedRange& r : L.statics) g_shared_hi = std::max<const char*>(g_shared_hi, r.hi);
    if (L.dynamic_bytes) g_shared_hi = std::max<const char*>(g_shared_hi, reinterpret_cast<char*>(L.dynamic) + L.dynamic_bytes);
}

static size_t g_last_range = 0;  // accesses come in runs on one variable: try the last one first

GCEMU_NO_TSAN static Cell* cell_of(const char* p, const char** range_name, size_t* offset) {
    const size_t count = L.statics.size();
    for (size_t j = 0; j < count; ++j) {
        const size_t i = (g_last_range + j) % count;
        const SharedRange& r = L.statics[i];
        if (p >= r.lo && p < r.hi) {
            g_last_range = i;
            *range_name = r.name;
            *offset = size_t(p - r.lo);
            return &g_cells[g_cell_base[i].second + size_t(p - r.lo)];
        }
    }
    const char* d = reinterpret_cast<const char*>(L.dynamic);
    if (L.dynamic_bytes && p >= d && p < d + L.dynamic_bytes) {
        *range_name = "dynamic shared memory";
        *offset = size_t(p - d);
        return &g_cells[g_cell_base.back().second + size_t(p - d)];
    }
    return nullptr;
}

GCEMU_NO_TSAN static bool ordered(unsigned other, unsigned other_round, const Fiber& me) {
    // Two accesses of one barrier interval are ordered only if made by the same thread, or by
    // lanes of one warp separated by a warp collective.
    if (other == unsigned(me.linear)) return true;
    return (other >> 5) == unsigned(me.linear >> 5) && other_round != me.round;
}

GCEMU_NO_TSAN static void race(const char* what, const char* name, size_t offset, unsigned other, const void* other_pc,
                               const void* pc) {
    char buf[768];
    const Fiber& o = L.fibers[other];
    snprintf(buf, sizeof(buf),
             "shared-memory race: %s at %s + %zu byte(s) between thread (%u,%u,%u) [pc %p] and this thread [pc %p] "
             "with no __syncthreads between them",
             what, name, offset, o.index.tid.x, o.index.tid.y, o.index.tid.z, other_pc, pc);
    fail("race checker", 0, buf);
}

// The hooks also see the runtime's own (instrumented) library code, std::vector's included: the
// guard keeps the checker from recursing into itself.
static bool g_in_hook = false;

struct HookGuard {
    bool active;
    GCEMU_NO_TSAN HookGuard() : active(!g_in_hook) { g_in_hook = true; }
    GCEMU_NO_TSAN ~HookGuard() { if (active) g_in_hook = false; }
};

GCEMU_NO_TSAN static void pending_report(bool write, int how, const char* name, size_t offset, unsigned issuer,
                                        const void* pc) {
    char buf[768];
    const Fiber& o = L.fibers[issuer];
    snprintf(buf, sizeof(buf),
             "%s %s + %zu byte(s) while a cp.async into it issued by thread (%u,%u,%u) is still pending (no "
             "cp.async.wait_group / wait_all of that thread before it) [pc %p]",
             how == ACCESS_ASYNC_ISSUE ? "cp.async into" : write ? "write to" : "read of", name, offset, o.index.tid.x,
             o.index.tid.y, o.index.tid.z, pc);
    fail("race checker", 0, buf);
}

GCEMU_NO_TSAN static void on_access(const void* addr, size_t n, bool write, const void* pc, int how = ACCESS_PLAIN) {
    if (g_in_hook) return;
    HookGuard guard;
    const char* p = static_cast<const char*>(addr);
    // Most accesses are to global memory: one bounding-box test rejects them.
    if (current_index == nullptr || g_cell_count == 0 || p + n <= g_shared_lo || p >= g_shared_hi) return;
    const char* name;
    size_t offset;
    Cell* first = cell_of(p, &name, &offset);
    if (first == nullptr) return;  // between shared variables: not shared memory
    const Fiber& me = self();
    for (size_t k = 0; k < n; ++k) {
        Cell* c = first + k;
        const size_t at = offset + k;
        if (how == ACCESS_ASYNC_LAND) c->pending_block = 0;
        else if (c->pending_block == L.block_seq) pending_report(write, how, name, at, c->pending_thread, pc);
        if (write) {
            if (c->w_epoch == L.epoch && !ordered(c->writer, c->w_round, me)) race("write after write", name, at, c->writer, c->w_pc, pc);
            if (c->r_epoch == L.epoch && (c->reader == kMany || !ordered(c->reader, c->r_round, me)))
                race("write after read", name, at, c->reader == kMany ? 0 : c->reader, nullptr, pc);
            c->w_epoch = L.epoch;
            c->writer = (unsigned short)me.linear;
            c->w_round = me.round;
            c->w_pc = pc;
            c->written_block = L.block_seq;
            if (how == ACCESS_ASYNC_ISSUE) {
                c->pending_block = L.block_seq;
                c->pending_thread = (unsigned short)me.linear;
            }
        } else {
            if (c->written_block != L.block_seq) {
                char buf[512];
                snprintf(buf, sizeof(buf), "read of %s + %zu, which no thread of this block has written (a stale or "
                         "uninitialised shared value) [pc %p]", name, at, pc);
                fail("race checker", 0, buf);
            }
            if (c->w_epoch == L.epoch && !ordered(c->writer, c->w_round, me)) race("read after write", name, at, c->writer, c->w_pc, pc);
            if (c->r_epoch != L.epoch) {
                c->r_epoch = L.epoch;
                c->reader = (unsigned short)me.linear;
                // A collective's read (ldmatrix) is ordered before its lanes' next accesses.
                c->r_round = how == ACCESS_COLLECTIVE_READ ? me.round - 1 : me.round;
            } else if (c->reader != unsigned(me.linear)) {
                c->reader = kMany;
            }
        }
    }
}
#else
static void reset_cells() {}
#endif

void note_shared_read(const void* p, size_t n) {
#if defined(GCEMU_RACECHECK)
    on_access(p, n, false, __builtin_return_address(0));
#else
    (void)p; (void)n;
#endif
}

void note_shared_write(const void* p, size_t n) {
#if defined(GCEMU_RACECHECK)
    on_access(p, n, true, __builtin_return_address(0));
#else
    (void)p; (void)n;
#endif
}

// Hooks of the tensor-core emulations (gcemu_ptx.h): ldmatrix's rows, cp.async's issue and landing.
void note_shared_read_collective(const void* p, size_t n) {
#if defined(GCEMU_RACECHECK)
    on_access(p, n, false, __builtin_return_address(0), ACCESS_COLLECTIVE_READ);
#else
    (void)p; (void)n;
#endif
}

void note_async_issue(const void* p, size_t n) {
#if defined(GCEMU_RACECHECK)
    on_access(p, n, true, __builtin_return_address(0), ACCESS_ASYNC_ISSUE);
#else
    (void)p; (void)n;
#endif
}

void note_async_land(const void* p, size_t n) {
#if defined(GCEMU_RACECHECK)
    on_access(p, n, true, __builtin_return_address(0), ACCESS_ASYNC_LAND);
#else
    (void)p; (void)n;
#endif
}

// ------------------------------------------------------------------------------------------
// Running a block and a launch
// ------------------------------------------------------------------------------------------
GCEMU_NO_TSAN static bool run_block(unsigned bx, unsigned by, unsigned bz) {
    block_idx = {bx, by, bz};
    ++L.block_seq;
    ++L.epoch;
    poison_shared();
    const unsigned X = block_dim.x, Y = block_dim.y;
    for (int i = 0; i < L.nthreads; ++i) {
        Fiber& f = L.fibers[i];
        f.linear = i;
        f.index.tid = {unsigned(i) % X, (unsigned(i) / X) % Y, unsigned(i) / (X * Y)};
        f.state = READY;
        f.round = 0;
        f.async.reset();
        reset_stack(f);
    }
    for (;;) {
        // Every READY fiber runs until it waits or ends; after the pass none is READY, so a pass
        // that releases nothing can never make progress again.
        for (int i = 0; i < L.nthreads; ++i) {
            Fiber& f = L.fibers[i];
            if (f.state != READY) continue;
            enter_fiber(f);
            if (L.failed) return false;
        }
        bool all_done = true;
        for (int i = 0; i < L.nthreads; ++i) all_done &= L.fibers[i].state == DONE;
        if (all_done) return true;
        bool released = false;
        if (!release_warps(released) || !release_barrier(released)) return false;
        if (!released) {
            deadlock_report();
            return false;
        }
    }
}

static unsigned long long next_random(unsigned long long& s) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

}  // namespace gcemu

// ------------------------------------------------------------------------------------------
// Parameter marshalling: the kernel's own parameter list drives the unpacking of void** args,
// as cudaLaunchKernel does; sizes and kinds are exported so the host can check every argument.
// ------------------------------------------------------------------------------------------
namespace gcemu {
enum ParamKind { PARAM_INT = 0, PARAM_FLOAT = 1, PARAM_POINTER = 2, PARAM_OTHER = 3 };

template <typename P>
constexpr int param_kind() {
    return std::is_pointer<P>::value ? PARAM_POINTER
           : std::is_integral<P>::value ? PARAM_INT
           : std::is_floating_point<P>::value ? PARAM_FLOAT
                                             : PARAM_OTHER;
}

template <typename... P, size_t... I>
void invoke_with(void (*k)(P...), void** args, std::index_sequence<I...>) {
    k(*static_cast<typename std::remove_cv<typename std::remove_reference<P>::type>::type*>(args[I])...);
}

struct KernelEntry {
    const char* name;
    void (*body)(void**);
    int nparams;
    const int* sizes;
    const int* kinds;
};

template <auto K>
struct Kernel;

template <typename... P, void (*K)(P...)>
struct Kernel<K> {
    static void body(void** args) { invoke_with(K, args, std::index_sequence_for<P...>{}); }
    static constexpr int nparams = int(sizeof...(P));
    static constexpr int sizes[sizeof...(P) + 1] = {int(sizeof(P))..., 0};
    static constexpr int kinds[sizeof...(P) + 1] = {param_kind<P>()..., 0};
    static KernelEntry entry(const char* name) { return KernelEntry{name, &body, nparams, sizes, kinds}; }
};
}  // namespace gcemu

// The generated translation unit defines this table (one entry per registered instantiation).
extern const gcemu::KernelEntry gcemu_kernels[];
extern const int gcemu_kernel_total;

extern "C" {

int gcemu_kernel_count() { return gcemu_kernel_total; }
const char* gcemu_kernel_name(int i) { return gcemu_kernels[i].name; }
int gcemu_param_count(int i) { return gcemu_kernels[i].nparams; }
int gcemu_param_size(int i, int p) { return gcemu_kernels[i].sizes[p]; }
int gcemu_param_kind(int i, int p) { return gcemu_kernels[i].kinds[p]; }
void* gcemu_anchor() { return reinterpret_cast<void*>(&gcemu_anchor); }
int gcemu_build_flags() {
    int flags = 0;
#if defined(GCEMU_ASAN)
    flags |= 1;
#endif
#if defined(GCEMU_RACECHECK)
    flags |= 2;
#endif
    return flags;
}

void gcemu_set_stack_bytes(size_t bytes) { gcemu::g_stack_bytes = (bytes + 4095) / 4096 * 4096; }

// Static __shared__ variables found by the host in the symbol table: [lo, hi) pairs.
void gcemu_set_statics(const uintptr_t* bounds, const char* const* names, int n) {
    gcemu::L.statics.clear();
    for (int i = 0; i < n; ++i)
        gcemu::L.statics.push_back({reinterpret_cast<char*>(bounds[2 * i]), reinterpret_cast<char*>(bounds[2 * i + 1]), names[i]});
}

// 0 on success; otherwise 1 with `err` saying what went wrong (the launch is abandoned).
int gcemu_launch(int index, const unsigned* grid, const unsigned* block, size_t dynamic_bytes, void** args,
                 unsigned long long shuffle_seed, char* err, size_t errlen) {
    using namespace gcemu;
    const KernelEntry& k = gcemu_kernels[index];
    const int n = int(block[0] * block[1] * block[2]);
    if (!ensure_fibers(n, err, errlen)) return 1;
    L.body = k.body;
    L.args = args;
    L.nthreads = n;
    L.failed = false;
    L.message[0] = 0;
    L.warps.assign(size_t((n + 31) / 32), Warp());
    block_dim = {block[0], block[1], block[2]};
    grid_dim = {grid[0], grid[1], grid[2]};
    L.dynamic_bytes = dynamic_bytes;
    L.dynamic = dynamic_bytes ? static_cast<unsigned char*>(malloc(dynamic_bytes)) : nullptr;
    if (dynamic_bytes && L.dynamic == nullptr) {
        snprintf(err, errlen, "could not allocate %zu bytes of dynamic shared memory", dynamic_bytes);
        return 1;
    }
    reset_cells();
#if defined(GCEMU_RACECHECK)
    g_in_hook = false;  // a report ends its fiber inside a hook (fail() never returns): re-arm the checker
#endif
    const unsigned long long blocks = (unsigned long long)grid[0] * grid[1] * grid[2];
    std::vector<unsigned long long> order;
    if (shuffle_seed != 0) {
        order.resize(size_t(blocks));
        for (unsigned long long i = 0; i < blocks; ++i) order[size_t(i)] = i;
        unsigned long long s = shuffle_seed;
        for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[size_t(next_random(s) % i)]);
    }
    bool ok = true;
    for (unsigned long long b = 0; b < blocks && ok; ++b) {
        const unsigned long long id = shuffle_seed != 0 ? order[size_t(b)] : b;
        ok = run_block(unsigned(id % grid[0]), unsigned((id / grid[0]) % grid[1]), unsigned(id / (grid[0] * (unsigned long long)grid[1])));
    }
    free(L.dynamic);
    L.dynamic = nullptr;
    L.dynamic_bytes = 0;
    if (!ok) {
        snprintf(err, errlen, "%s", L.message);
        return 1;
    }
    return 0;
}

}  // extern "C"

#if defined(GCEMU_RACECHECK)
// ThreadSanitizer's instrumentation calls, answered by the race checker instead of libtsan
// (-fsanitize=thread compiles them in; this object links no TSAN runtime).
extern "C" {
#define GCEMU_TSAN_ACCESS(N)                                                                                           \
    GCEMU_NO_TSAN void __tsan_read##N(void* p) { gcemu::on_access(p, N, false, __builtin_return_address(0)); }         \
    GCEMU_NO_TSAN void __tsan_write##N(void* p) { gcemu::on_access(p, N, true, __builtin_return_address(0)); }         \
    GCEMU_NO_TSAN void __tsan_unaligned_read##N(void* p) { gcemu::on_access(p, N, false, __builtin_return_address(0)); } \
    GCEMU_NO_TSAN void __tsan_unaligned_write##N(void* p) { gcemu::on_access(p, N, true, __builtin_return_address(0)); }
GCEMU_TSAN_ACCESS(1)
GCEMU_TSAN_ACCESS(2)
GCEMU_TSAN_ACCESS(4)
GCEMU_TSAN_ACCESS(8)
GCEMU_TSAN_ACCESS(16)
#undef GCEMU_TSAN_ACCESS
GCEMU_NO_TSAN void __tsan_read_range(void* p, unsigned long n) { gcemu::on_access(p, n, false, __builtin_return_address(0)); }
GCEMU_NO_TSAN void __tsan_write_range(void* p, unsigned long n) { gcemu::on_access(p, n, true, __builtin_return_address(0)); }
GCEMU_NO_TSAN void __tsan_init() {}
GCEMU_NO_TSAN void __tsan_func_entry(void*) {}
GCEMU_NO_TSAN void __tsan_func_exit() {}
GCEMU_NO_TSAN void __tsan_vptr_update(void**, void*) {}
GCEMU_NO_TSAN void __tsan_vptr_read(void**) {}
}
#endif

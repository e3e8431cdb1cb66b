// optimizer_updates.cu: one optimizer step over every parameter of a model in ONE launch
// (multi-tensor apply), for each update rule of gpuconv/optimizers/rules.py.
//
// Why one launch: a model has tens to hundreds of weight arrays, most of them small (biases,
// norms); a launch per array per step would cost more in launch latency than the arithmetic.
// The host (gpuconv/cuda/optimizer_updates.py) packs one table per call into one device buffer:
//
//   table[0 .. R::SCALARS)             the rule's host-computed scalars (float64 bit patterns)
//   then per tensor t, 5 + R::SLOTS words:
//     [0] n            elements of the tensor
//     [1] first_chunk  index of its first chunk in the launch (a running sum)
//     [2] decay        float64 bit pattern of 1 - decay in T: p = p * (1 - decay) before the rule
//                      (all bits 1, a NaN no arithmetic makes: no decay)
//     [3] param pointer, [4] grad pointer, [5 ..] slot pointers in the rule's slot order
//
// Each tensor is cut into chunks of `chunk` elements (a multiple of every vector width); a block
// walks chunks grid-stride and finds a chunk's tensor by binary search over first_chunk, so big
// tensors spread across blocks and small ones share a block without any per-chunk table. Inside
// a chunk, when every pointer of the tensor is 16-byte aligned, threads move 16-byte vectors of
// the parameter, the gradient and each slot; the last partial vector and unaligned tensors go
// element by element. Each element is independent: no atomics, no shared memory, and the result
// of an element does not depend on the launch geometry (bitwise reproducible).
//
// Arithmetic: optimizer_math.cuh, statement by statement as rules.py writes it (every operation
// rounded to T, no contraction except the rules' fma), so float32, float16 and bfloat16 results
// equal the NumPy engine's (gpuconv/cpu/optimizer_updates.py, ml_dtypes' loops for bfloat16) bit
// for bit; float64's fma is a true fused one here, where the NumPy engine (no wider type) rounds
// the product and the sum separately. float16 and bfloat16 are loaded into float and stored back
// as T; each operation on them is rounded to T as it happens (as Keras computes in the variable's
// dtype), not once at the end.
#include "common.cuh"
#include "memory_bound.cuh"
#include "optimizer_math.cuh"

namespace gc {

// ------------------------------------------------------------------------------------------
// The rules, one functor each, a transcription of gpuconv/optimizers/rules.py statement by
// statement (the arithmetic of optimizer_math.cuh: every operation rounded to T, fma where the
// rule says fma): SLOTS (state arrays per parameter) and SCALARS in its order, and
// apply<T>(c, g, p, s) for one element: c the scalars, g the gradient, p the parameter, s the
// slots, all in the accumulation type.
// ------------------------------------------------------------------------------------------
#define GC_RULE_APPLY                                                                                     \
    template <typename T>                                                                                 \
    static __device__ __forceinline__ void apply(const typename Traits<T>::acc_t* c, typename Traits<T>::acc_t g, \
                                                 typename Traits<T>::acc_t& p, typename Traits<T>::acc_t* s)
#define GC_RULE_TYPES          \
    typedef RuleMath<T> M;     \
    typedef typename Traits<T>::acc_t A

// The moving average of most rules: x = x * decay_rate, then x = fma(y, weight, x).
template <typename T>
__device__ __forceinline__ typename Traits<T>::acc_t moving_average(typename Traits<T>::acc_t x,
                                                                    typename Traits<T>::acc_t decay_rate,
                                                                    typename Traits<T>::acc_t y,
                                                                    typename Traits<T>::acc_t weight) {
    return RuleMath<T>::fma(y, weight, RuleMath<T>::mul(x, decay_rate));
}

// sgd. scalars: learning_rate
struct SgdRule {
    static const int SLOTS = 0, SCALARS = 1;
    GC_RULE_APPLY {
        GC_RULE_TYPES;
        p = M::fma(g, -c[0], p);
    }
};

// sgd_momentum / sgd_nesterov. scalars: learning_rate, momentum; slots: momentum
template <bool NESTEROV>
struct SgdMomentumRuleT {
    static const int SLOTS = 1, SCALARS = 2;
    GC_RULE_APPLY {
        GC_RULE_TYPES;
        s[0] = moving_average<T>(s[0], c[1], g, -c[0]);
        if (NESTEROV) {
            p = M::fma(s[0], c[1], M::fma(g, -c[0], p));
        } else {
            p = M::add(p, s[0]);
        }
    }
};
typedef SgdMomentumRuleT<false> SgdMomentumRule;
typedef SgdMomentumRuleT<true> SgdNesterovRule;

// adam / adam_amsgrad. scalars: alpha, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2,
// epsilon; slots: momentum, velocity[, velocity_hat]
template <bool AMSGRAD>
struct AdamRuleT {
    static const int SLOTS = AMSGRAD ? 3 : 2, SCALARS = 6;
    GC_RULE_APPLY {
        GC_RULE_TYPES;
        s[0] = moving_average<T>(s[0], c[1], g, c[2]);
        s[1] = moving_average<T>(s[1], c[3], M::mul(g, g), c[4]);
        A v = s[1];
        if (AMSGRAD) v = s[2] = M::maximum(s[2], s[1]);
        p = M::sub(p, M::div(M::mul(s[0], c[0]), M::add(M::root(v), c[5])));
    }
};
typedef AdamRuleT<false> AdamRule;
typedef AdamRuleT<true> AdamAmsgradRule;

// rmsprop and its variants. scalars: learning_rate, rho, one_minus_rho, epsilon[, momentum];
// slots: velocity[, momentum][, average_gradient]
template <bool CENTERED, bool MOMENTUM>
struct RmspropRuleT {
    static const int SLOTS = 1 + int(CENTERED) + int(MOMENTUM), SCALARS = 4 + int(MOMENTUM);
    GC_RULE_APPLY {
        GC_RULE_TYPES;
        s[0] = moving_average<T>(s[0], c[1], M::mul(g, g), c[2]);
        A denominator = M::add(s[0], c[3]);
        if (CENTERED) {
            A& average_gradient = s[MOMENTUM ? 2 : 1];
            average_gradient = moving_average<T>(average_gradient, c[1], g, c[2]);
            denominator = M::sub(denominator, M::mul(average_gradient, average_gradient));
        }
        const A increment = M::div(M::mul(g, c[0]), M::root(denominator));
        if (MOMENTUM) {
            s[1] = M::add(M::mul(s[1], c[4]), increment);
            p = M::sub(p, s[1]);
        } else {
            p = M::sub(p, increment);
        }
    }
};
typedef RmspropRuleT<false, false> RmspropRule;
typedef RmspropRuleT<false, true> RmspropMomentumRule;
typedef RmspropRuleT<true, false> RmspropCenteredRule;
typedef RmspropRuleT<true, true> RmspropCenteredMomentumRule;

// adagrad. scalars: learning_rate, epsilon; slots: accumulator
struct AdagradRule {
    static const int SLOTS = 1, SCALARS = 2;
    GC_RULE_APPLY {
        GC_RULE_TYPES;
        s[0] = M::add(s[0], M::mul(g, g));
        p = M::sub(p, M::div(M::mul(g, c[0]), M::root(M::add(s[0], c[1]))));
    }
};

// adadelta. scalars: learning_rate, rho, one_minus_rho, epsilon; slots: accumulated_grad,
// accumulated_delta_var
struct AdadeltaRule {
    static const int SLOTS = 2, SCALARS = 4;
    GC_RULE_APPLY {
        GC_RULE_TYPES;
        s[0] = moving_average<T>(s[0], c[1], M::mul(g, g), c[2]);
        const A delta = -M::div(M::mul(M::root(M::add(s[1], c[3])), g), M::root(M::add(s[0], c[3])));
        s[1] = moving_average<T>(s[1], c[1], M::mul(delta, delta), c[2]);
        p = M::fma(delta, c[0], p);
    }
};

// adamax. scalars: learning_rate, beta_1, one_minus_beta_1, beta_2, epsilon,
// one_minus_beta_1_power; slots: momentum, norm
struct AdamaxRule {
    static const int SLOTS = 2, SCALARS = 6;
    GC_RULE_APPLY {
        GC_RULE_TYPES;
        s[0] = moving_average<T>(s[0], c[1], g, c[2]);
        s[1] = M::maximum(M::mul(s[1], c[3]), M::magnitude(g));
        p = M::sub(p, M::div(M::mul(s[0], c[0]), M::mul(M::add(s[1], c[4]), c[5])));
    }
};

// nadam. scalars: learning_rate, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2, epsilon,
// u_t_1, one_minus_u_product_t_1, one_minus_u_t, one_minus_u_product_t, one_minus_beta_2_power;
// slots: momentum, velocity
struct NadamRule {
    static const int SLOTS = 2, SCALARS = 11;
    GC_RULE_APPLY {
        GC_RULE_TYPES;
        s[0] = moving_average<T>(s[0], c[1], g, c[2]);
        s[1] = moving_average<T>(s[1], c[3], M::mul(g, g), c[4]);
        const A m_hat = M::add(M::div(M::mul(s[0], c[6]), c[7]), M::div(M::mul(g, c[8]), c[9]));
        const A v_hat = M::div(s[1], c[10]);
        p = M::sub(p, M::div(M::mul(m_hat, c[0]), M::add(M::root(v_hat), c[5])));
    }
};

// lion. scalars: learning_rate, beta_1, one_minus_beta_1, beta_2, one_minus_beta_2; slots: momentum
struct LionRule {
    static const int SLOTS = 1, SCALARS = 5;
    GC_RULE_APPLY {
        GC_RULE_TYPES;
        const A update = M::sign(moving_average<T>(s[0], c[1], g, c[2]));
        p = M::sub(p, M::mul(update, c[0]));
        s[0] = moving_average<T>(s[0], c[3], g, c[4]);
    }
};

#undef GC_RULE_TYPES
#undef GC_RULE_APPLY

// ------------------------------------------------------------------------------------------
// The multi-tensor kernel
// ------------------------------------------------------------------------------------------
// Words of one tensor's record (see the top of this file).
enum { REC_N = 0, REC_FIRST_CHUNK = 1, REC_DECAY = 2, REC_PARAM = 3, REC_GRAD = 4, REC_SLOTS = 5 };

template <typename T>
__device__ __forceinline__ T* pointer_at(const unsigned long long* rec, int word) {
    return reinterpret_cast<T*>(static_cast<size_t>(rec[word]));
}

// The tensor whose chunks include `chunk`: the last record with first_chunk <= chunk.
template <typename Index>
__device__ __forceinline__ int tensor_of_chunk(const unsigned long long* records, int width, int tensors, Index chunk) {
    int lo = 0, hi = tensors - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (Index(records[mid * width + REC_FIRST_CHUNK]) <= chunk) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}

// One group of V consecutive elements at offset i of one tensor (V = 1: a single element).
template <typename R, typename T, int V, typename Index>
__device__ __forceinline__ void update_group(const typename Traits<T>::acc_t* c, bool decays,
                                             typename Traits<T>::acc_t decay, T* p, const T* g, T* const* slots,
                                             Index i) {
    typedef typename Traits<T>::acc_t A;
    AccVec<T, V> pv = widen<T, V>(load_vec<T, V>(p + i));
    const AccVec<T, V> gv = widen<T, V>(load_vec<T, V>(g + i));
    AccVec<T, V> sv[R::SLOTS > 0 ? R::SLOTS : 1];
#pragma unroll
    for (int k = 0; k < R::SLOTS; ++k) sv[k] = widen<T, V>(load_vec<T, V>(slots[k] + i));
#pragma unroll
    for (int v = 0; v < V; ++v) {
        A s[R::SLOTS > 0 ? R::SLOTS : 1];
#pragma unroll
        for (int k = 0; k < R::SLOTS; ++k) s[k] = sv[k].v[v];
        A pe = pv.v[v];
        if (decays) pe = RuleMath<T>::mul(pe, decay);
        R::template apply<T>(c, gv.v[v], pe, s);
        pv.v[v] = pe;
#pragma unroll
        for (int k = 0; k < R::SLOTS; ++k) sv[k].v[v] = s[k];
    }
    store_vec<T, V>(p + i, narrow<T, V>(pv));
#pragma unroll
    for (int k = 0; k < R::SLOTS; ++k) store_vec<T, V>(slots[k] + i, narrow<T, V>(sv[k]));
}

template <typename T, typename Index, typename R>
__global__ void __launch_bounds__(256, 2) optimizer_update(const unsigned long long* __restrict__ table, int tensors,
                                                         Index chunks, int chunk) {
    typedef typename Traits<T>::acc_t A;
    const int V = 16 / sizeof(T);
    const int width = REC_SLOTS + R::SLOTS;
    A c[R::SCALARS];
#pragma unroll
    for (int k = 0; k < R::SCALARS; ++k) c[k] = A(__longlong_as_double(static_cast<long long>(table[k])));
    const unsigned long long* records = table + R::SCALARS;

    for (Index ch = Index(blockIdx.x); ch < chunks; ch += Index(gridDim.x)) {
        const int t = tensor_of_chunk(records, width, tensors, ch);
        const unsigned long long* rec = records + t * width;
        const Index n = Index(rec[REC_N]);
        const Index start = (ch - Index(rec[REC_FIRST_CHUNK])) * Index(chunk);
        const Index end = min(n, start + Index(chunk));
        const bool decays = rec[REC_DECAY] != ~0ull;
        const A decay = A(__longlong_as_double(static_cast<long long>(rec[REC_DECAY])));
        T* p = pointer_at<T>(rec, REC_PARAM);
        const T* g = pointer_at<const T>(rec, REC_GRAD);
        T* slots[R::SLOTS > 0 ? R::SLOTS : 1];
        unsigned long long bits = rec[REC_PARAM] | rec[REC_GRAD];
#pragma unroll
        for (int k = 0; k < R::SLOTS; ++k) {
            slots[k] = pointer_at<T>(rec, REC_SLOTS + k);
            bits |= rec[REC_SLOTS + k];
        }
        // start is a multiple of V (chunk is), so the vectors of an aligned tensor are aligned.
        Index i = start + Index(threadIdx.x) * V;
        Index vector_end = start;
        if ((bits & 15ull) == 0) {
            vector_end = start + (end - start) / V * V;
            for (; i < vector_end; i += Index(blockDim.x) * V) update_group<R, T, V>(c, decays, decay, p, g, slots, i);
        }
        for (i = vector_end + Index(threadIdx.x); i < end; i += Index(blockDim.x))
            update_group<R, T, 1>(c, decays, decay, p, g, slots, i);
    }
}

}  // namespace gc

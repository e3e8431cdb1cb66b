// window_backward.cuh: the gather side of a strided window, shared by the backward kernels of
// pooling and locally connected (pooling_backward.cu, locally_connected_backward.cu).
//
// A forward window op maps output o to the input cells o*S - pad .. o*S - pad + K - 1. Its
// gradient is written as a gather (one thread per input cell, no atomics: deterministic), so each
// thread needs the outputs whose windows contain its cell, along one dimension:
//   lo = max(0, ceil((i + pad - K + 1) / S)),  hi = min(O - 1, floor((i + pad) / S))
// (an empty range when lo > hi: a cell no window reads, e.g. past a 'valid' window's end or
// skipped by a stride larger than the window).
#pragma once

#include "common.cuh"

namespace gc {

struct OutputRange {
    int lo, hi;  // inclusive; empty when lo > hi
};

__device__ __forceinline__ OutputRange covering_outputs(int i, int pad, int K, int S, int O) {
    const int first = i + pad - K + 1;  // the smallest o*S with i inside o's window
    OutputRange r;
    r.lo = first <= 0 ? 0 : ceil_div(first, S);
    r.hi = min(O - 1, (i + pad) / S);  // i + pad >= 0: i is a real cell
    return r;
}

}  // namespace gc

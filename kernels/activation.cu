// activation.cu: a fused activation as an in-place pass over an op's output, for a memory-bound
// op (depthwise, separable, locally connected) whose epilogue does not fuse it
// (gpuconv/cuda/epilogue.py INLINE_ACTIVATIONS, per dtype). Today every epilogue fuses every
// activation for every dtype (common.cuh activate_inline is call-free), so the runtime does not
// launch this; it stays as the fallback a dtype or activation added later can take before its
// epilogue is proven spill-free. The price of the pass is one more read and write of the output.
#include "common.cuh"

namespace gc {

template <typename T, typename Index>
__global__ void __launch_bounds__(256, 2) activate_in_place(T* __restrict__ y, Index n, int act) {
    typedef typename Traits<T>::acc_t A;
    for (Index i = grid_start_x<Index>(); i < n; i += grid_step_x<Index>())
        y[i] = Traits<T>::from_acc(activate_dispatch<A>(act, Traits<T>::to_acc(y[i])));
}

}  // namespace gc

// activation.cu: the fused activation as a separate in-place pass, for float64 only.
//
// float16/float32 kernels apply the activation in their own epilogue. In float64 the call into
// double math makes ptxas spill the live state of the memory-bound kernels' tiles (see
// memory_bound.cuh, activate_stored), so those kernels leave the activation to this pass; float64
// is the accuracy dtype, where one more pass over the output is an acceptable price for spill-free
// kernels.
#include "common.cuh"

namespace gc {

template <typename T, typename Index>
__global__ void __launch_bounds__(256) activate_in_place(T* __restrict__ y, Index n, int act) {
    typedef typename Traits<T>::acc_t A;
    for (Index i = grid_start_x<Index>(); i < n; i += grid_step_x<Index>())
        y[i] = Traits<T>::from_acc(activate_dispatch<A>(act, Traits<T>::to_acc(y[i])));
}

}  // namespace gc

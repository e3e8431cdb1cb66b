// activation.cu: the fused activation of the memory-bound ops (depthwise, separable, locally
// connected) as an in-place pass over their output, for the activations their epilogues do not
// fuse inline (common.cuh activate_inline takes the call-free ones: relu, relu6, leaky_relu,
// hard_tanh).
//
// Why not all in those kernels' epilogues: the activation switch (25 cases with IEEE division, exp,
// erf, tanh) compiles to subroutine calls (activate_dispatch, and the slow paths of division),
// and a kernel that makes any call has its registers limited by ptxas: every register-tiled
// kernel of these families spilled (the nvrtc check showed it for all dtypes once several
// kernels share a module). Here the call sits in a loop with nothing else live. The price, paid
// only when an activation is fused, is one more read and write of the output, which is usually
// still in L2.
#include "common.cuh"

namespace gc {

template <typename T, typename Index>
__global__ void __launch_bounds__(256, 2) activate_in_place(T* __restrict__ y, Index n, int act) {
    typedef typename Traits<T>::acc_t A;
    for (Index i = grid_start_x<Index>(); i < n; i += grid_step_x<Index>())
        y[i] = Traits<T>::from_acc(activate_dispatch<A>(act, Traits<T>::to_acc(y[i])));
}

}  // namespace gc

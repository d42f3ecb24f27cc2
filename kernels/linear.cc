#include "kernels/linear.h"

#include "kernels/gemm.h"

namespace tessera::kernels {

// y(N,O) = x(N,I) W(O,I)^T
template <typename T>
void linear_forward(T* y, const T* x, const T* W, int64_t N, int64_t I, int64_t O) {
  gemm<T>(Trans::kNo, Trans::kYes, N, O, I, T(1), x, I, W, I, T(0), y, O);
}

// dx(N,I) = dy(N,O) W(O,I)
template <typename T>
void linear_backward_input(T* dx, const T* dy, const T* W, int64_t N, int64_t I, int64_t O,
                           bool accumulate) {
  gemm<T>(Trans::kNo, Trans::kNo, N, I, O, T(1), dy, O, W, I, accumulate ? T(1) : T(0), dx, I);
}

// dW(O,I) += dy(N,O)^T x(N,I)
template <typename T>
void linear_backward_weight(T* dW, const T* dy, const T* x, int64_t N, int64_t I, int64_t O) {
  gemm<T>(Trans::kYes, Trans::kNo, O, I, N, T(1), dy, O, x, I, T(1), dW, I);
}

#define TESSERA_INSTANTIATE(T)                                                                \
  template void linear_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t);        \
  template void linear_backward_input<T>(T*, const T*, const T*, int64_t, int64_t, int64_t,  \
                                         bool);                                              \
  template void linear_backward_weight<T>(T*, const T*, const T*, int64_t, int64_t, int64_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels

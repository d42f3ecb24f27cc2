#include "kernels/adamw.h"

#include "kernels/cpu_loop.h"
#include "kernels/math/adamw.h"

namespace tessera::kernels {

template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWStep& hp, bool decay,
                  T grad_scale) {
  const math::AdamWCoeffs<T> k = math::adamw_coeffs(hp, decay, grad_scale, "adamw_update");
#pragma omp parallel for if (n >= cpu::kMinParallelWork)
  for (int64_t i = 0; i < n; ++i) math::adamw_elem(param + i, grad[i], m + i, v + i, k);
}

template void adamw_update<float>(float*, const float*, float*, float*, int64_t,
                                  const AdamWStep&, bool, float);
template void adamw_update<double>(double*, const double*, double*, double*, int64_t,
                                   const AdamWStep&, bool, double);

}  // namespace tessera::kernels

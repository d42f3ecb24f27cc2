// Router kernels: one thread per token, calling kernels/math/router.h. See launch.cuh.
// router_forward_row keeps a few kRouterMaxExperts-sized arrays per thread (local memory).
#include "kernels/cuda/router.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda/launch.cuh"
#include "kernels/math/router.h"

namespace tessera::kernels::cuda {

namespace {

template <typename T>
__global__ void router_forward_kernel(T* scores, int32_t* expert_idx, T* gates, const T* logits,
                                      const T* bias, int64_t N, int64_t E, int64_t k,
                                      int64_t n_group, int64_t topk_group, T route_scale) {
  const int64_t n = detail::thread_index();
  if (n >= N) return;
  math::router_forward_row(scores + n * E, expert_idx + n * k, gates + n * k, logits + n * E,
                           bias, E, k, n_group, topk_group, route_scale);
}

template <typename T>
__global__ void router_backward_kernel(T* dlogits, const T* dgates, const T* dscores_extra,
                                       const T* scores, const int32_t* expert_idx, int64_t N,
                                       int64_t E, int64_t k, T route_scale) {
  const int64_t n = detail::thread_index();
  if (n >= N) return;
  const int32_t* idx = expert_idx + n * k;
  for (int64_t j = 0; j < k; ++j) {
    if (idx[j] < 0 || idx[j] >= E) {
      detail::fill_nan(dlogits + n * E, E);
      return;
    }
  }
  math::router_backward_row(dlogits + n * E, dgates + n * k,
                            dscores_extra ? dscores_extra + n * E : nullptr, scores + n * E, idx,
                            E, k, route_scale);
}

}  // namespace

template <typename T>
void router_forward(T* scores, int32_t* expert_idx, T* gates, const T* logits, const T* bias,
                    int64_t N, const RouterShape& shape, cudaStream_t stream) {
  check_router_shape(shape, "cuda router: ");
  if (N <= 0) return;
  router_forward_kernel<<<detail::blocks_for(N, "router_forward"), detail::kThreadsPerBlock, 0,
                          stream>>>(scores, expert_idx, gates, logits, bias, N, shape.n_experts,
                                    shape.top_k, shape.n_group, shape.topk_group,
                                    static_cast<T>(shape.route_scale));
  check_launch("router_forward_kernel");
}

template <typename T>
void router_backward(T* dlogits, const T* dgates, const T* dscores_extra, const T* scores,
                     const int32_t* expert_idx, int64_t N, const RouterShape& shape,
                     cudaStream_t stream) {
  check_router_shape(shape, "cuda router: ");
  if (N <= 0) return;
  router_backward_kernel<<<detail::blocks_for(N, "router_backward"), detail::kThreadsPerBlock, 0,
                           stream>>>(dlogits, dgates, dscores_extra, scores, expert_idx, N,
                                     shape.n_experts, shape.top_k,
                                     static_cast<T>(shape.route_scale));
  check_launch("router_backward_kernel");
}

#define TESSERA_INSTANTIATE(T)                                                                 \
  template void router_forward<T>(T*, int32_t*, T*, const T*, const T*, int64_t,              \
                                  const RouterShape&, cudaStream_t);                          \
  template void router_backward<T>(T*, const T*, const T*, const T*, const int32_t*, int64_t, \
                                   const RouterShape&, cudaStream_t);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels::cuda

// DeepSeek-V3 router on CUDA: the launchers of kernels/router.h's row-wise ops, same arguments
// and contracts, over device pointers, enqueued on `stream`. The balance loss and load counts
// stay on the host (kernels/router.h): they reduce over whole sequences.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/router.h"

namespace tessera::kernels::cuda {

// scores = sigmoid(logits); group-limited top-k on the biased scores, ties to the lower index;
// expert_idx in descending biased score; gates = route_scale * s[e_j] / sum_j' s[e_j'].
// Throws std::invalid_argument (before any launch) on a shape kernels::router_forward rejects
// (including n_experts > math::kRouterMaxExperts).
template <typename T>
void router_forward(T* scores,            // (N, E)
                    int32_t* expert_idx,  // (N, k)
                    T* gates,             // (N, k)
                    const T* logits,      // (N, E)
                    const T* bias,        // (E)
                    int64_t N, const RouterShape& shape, cudaStream_t stream = nullptr);

// dlogits (written) from dgates and, if non-null, an extra gradient of the scores.
// expert_idx lives on the device and is not range-checked on the host: a token with an index
// outside [0, E) gets a NaN dlogits row instead of an out-of-bounds read.
template <typename T>
void router_backward(T* dlogits,                 // (N, E)
                     const T* dgates,            // (N, k)
                     const T* dscores_extra,     // (N, E) or nullptr
                     const T* scores,            // (N, E)
                     const int32_t* expert_idx,  // (N, k)
                     int64_t N, const RouterShape& shape, cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda

// Softmax cross-entropy on CUDA: the launchers of kernels/cross_entropy.h, same arguments and
// contracts, over device pointers, enqueued on `stream`.
//
// Targets live on the device, so they are not range-checked on the host (that would need a
// synchronising copy): a row whose target is outside [0, V) gets NaN loss and lse (forward) or
// a NaN gradient row (backward), which the training loop's non-finite-loss check reports.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tessera::kernels::cuda {

// losses[n] = logsumexp(logits[n]) - logits[n, targets[n]].
// Throws std::invalid_argument (before any launch) if V < 1.
template <typename T>
void cross_entropy_forward(T* losses,              // (N)
                           T* lse,                 // (N) saved for backward
                           const T* logits,        // (N, V)
                           const int32_t* targets, // (N)
                           int64_t N, int64_t V, cudaStream_t stream = nullptr);

// dlogits = scale * (softmax(logits) - onehot(targets)), written; dlogits may alias logits.
template <typename T>
void cross_entropy_backward(T* dlogits,             // (N, V)
                            const T* logits,        // (N, V)
                            const T* lse,           // (N)
                            const int32_t* targets, // (N)
                            int64_t N, int64_t V, T scale, cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda

// Softmax cross-entropy over the vocabulary.
#pragma once
#include <cstdint>

namespace tessera::kernels {

// losses[n] = logsumexp(logits[n]) - logits[n, targets[n]]
template <typename T>
void cross_entropy_forward(T* losses,              // (N)
                           T* lse,                 // (N) saved for backward
                           const T* logits,        // (N, V)
                           const int32_t* targets, // (N)
                           int64_t N, int64_t V);

// dlogits = scale * (softmax(logits) - onehot(targets)), written; dlogits may alias logits.
template <typename T>
void cross_entropy_backward(T* dlogits,             // (N, V)
                            const T* logits,        // (N, V)
                            const T* lse,           // (N)
                            const int32_t* targets, // (N)
                            int64_t N, int64_t V, T scale);

}  // namespace tessera::kernels

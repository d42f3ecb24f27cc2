// AdamW on CUDA: the launcher of kernels/adamw.h, same arguments and contract (torch.optim.AdamW
// operation order, per-step constants computed on the host in double), over device pointers,
// enqueued on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/adamw.h"

namespace tessera::kernels::cuda {

// Updates param, m and v (n elements each) in place. Throws std::invalid_argument (before any
// launch) if hp.step < 1.
template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWStep& hp,
                  bool decay, T grad_scale = T(1), cudaStream_t stream = nullptr);

// AdamW with bf16 moments (optimizer.state_dtype bf16): m and v hold bf16 bit patterns; each
// element widens them to fp32 (exact), runs the fp32 update above and stores the new moments
// rounded to nearest even (kernels/math/low_precision.h), as the CPU optimizer does on the host
// (trainer/optimizer.h): the parameter moves as an fp32 step from the widened moments would.
// Throws std::invalid_argument (before any launch) if hp.step < 1.
void adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m, uint16_t* v,
                               int64_t n, const AdamWStep& hp, bool decay,
                               float grad_scale = 1.0f, cudaStream_t stream = nullptr);

}  // namespace tessera::kernels::cuda

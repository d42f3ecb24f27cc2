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

}  // namespace tessera::kernels::cuda

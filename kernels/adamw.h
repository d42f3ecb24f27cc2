// AdamW with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW:
//   p -= lr * wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
// where g = grad_scale * grad (grad_scale carries global-norm clipping for free).
#pragma once
#include <cstdint>

namespace tessera::kernels {

struct AdamWStep {
  double lr = 0;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0;  // applied only where decay is true
  int64_t step = 1;         // 1-based, for bias correction
};

template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWStep& hp,
                  bool decay, T grad_scale = T(1));

// The same update with bf16 moments (optimizer.state_dtype bf16): m and v hold bf16 bit
// patterns, each widened to fp32 (exact), updated as adamw_update does and rounded back to
// nearest even (math::float_to_bf16's bits), chunk by chunk through fp32 copies on the stack.
void adamw_update_bf16_moments(float* param, const float* grad, uint16_t* m, uint16_t* v,
                               int64_t n, const AdamWStep& hp, bool decay, float grad_scale);

}  // namespace tessera::kernels

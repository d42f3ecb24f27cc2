#include "trainer/optimizer.h"

#include <cmath>

#include "kernels/adamw.h"
#include "kernels/vector_ops.h"

namespace tessera::trainer {

double grad_norm(ParamTable& params) {
  double sum = 0;
  for (size_t i = 0; i < params.descs().size(); ++i) {
    const ParamDesc& d = params.descs()[i];
    if (!d.trainable) continue;
    sum += kernels::sum_squares(params.grad_ptr(static_cast<int>(i)), d.numel());
  }
  return std::sqrt(sum);
}

double clip_scale(double norm, double max_norm) {
  if (max_norm <= 0 || norm <= max_norm) return 1.0;
  return max_norm / norm;
}

void AdamW::Step(ParamTable& params, double lr, double grad_scale) {
  ++steps_;
  kernels::AdamWStep hp;
  hp.lr = lr;
  hp.beta1 = config_.beta1;
  hp.beta2 = config_.beta2;
  hp.eps = config_.eps;
  hp.weight_decay = config_.weight_decay;
  hp.step = steps_;
  float* m = params.exp_avg().data<float>();
  float* v = params.exp_avg_sq().data<float>();
  for (size_t i = 0; i < params.descs().size(); ++i) {
    const ParamDesc& d = params.descs()[i];
    if (!d.trainable) continue;
    kernels::adamw_update(params.value_ptr(static_cast<int>(i)), params.grad_ptr(static_cast<int>(i)),
                          m + d.offset, v + d.offset, d.numel(), hp, d.weight_decay,
                          static_cast<float>(grad_scale));
  }
}

}  // namespace tessera::trainer

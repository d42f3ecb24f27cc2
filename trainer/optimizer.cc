#include "trainer/optimizer.h"

#include <cmath>


namespace tessera::trainer {

double grad_sum_squares(ParamTable& params, std::span<const FlatRange> ranges) {
  const float* g = params.grads().data<float>();
  kernels::BackendOps<float>& ops = params.ops();
  double sum = 0;
  for (const FlatRange& r : ranges) {
    for_each_trainable_piece(params, r, [&](const ParamDesc& d, int64_t b, int64_t e) {
      if (!d.tied_copy) sum += ops.sum_squares(g + b, e - b);  // the original counts it
    });
  }
  return sum;
}

double grad_norm(ParamTable& params) {
  const FlatRange all{0, params.padded_numel()};
  return std::sqrt(grad_sum_squares(params, {&all, 1}));
}

double clip_scale(double norm, double max_norm) {
  if (max_norm <= 0 || norm <= max_norm) return 1.0;
  return max_norm / norm;
}

AdamW::AdamW(const OptimizerConfig& config, std::vector<FlatRange> owned,
             kernels::Backend& backend)
    : config_(config), owned_(std::move(owned)) {
  kernels::BackendOps<float>& ops = backend.ops<float>();
  for (const FlatRange& r : owned_) {
    for (auto* moments : {&m_, &v_}) {
      moments->push_back(backend.alloc({r.size()}, kernels::DType::kF32));
      ops.fill(moments->back().data<float>(), 0.0f, r.size());
    }
  }
}

AdamW::AdamW(const OptimizerConfig& config, const ParamTable& params)
    : AdamW(config, {params.region(ParamRegion::kDense), params.region(ParamRegion::kExpert)},
            params.backend()) {}

void AdamW::Step(ParamTable& params, double lr, double grad_scale) {
  ++steps_;
  kernels::AdamWStep hp;
  hp.lr = lr;
  hp.beta1 = config_.beta1;
  hp.beta2 = config_.beta2;
  hp.eps = config_.eps;
  hp.weight_decay = config_.weight_decay;
  hp.step = steps_;
  float* p = params.values().data<float>();
  const float* g = params.grads().data<float>();
  kernels::BackendOps<float>& ops = params.ops();
  for (size_t k = 0; k < owned_.size(); ++k) {
    const int64_t base = owned_[k].begin;
    float* m = m_[k].data<float>();
    float* v = v_[k].data<float>();
    for_each_trainable_piece(params, owned_[k], [&](const ParamDesc& d, int64_t b, int64_t e) {
      ops.adamw_update(p + b, g + b, m + (b - base), v + (b - base), e - b, hp, d.weight_decay,
                       static_cast<float>(grad_scale));
    });
  }
}

}  // namespace tessera::trainer

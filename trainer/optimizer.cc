#include "trainer/optimizer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "kernels/host_staging.h"

namespace tessera::trainer {

namespace {
// n bf16 +0 (all zero bits) in backend memory: written by the host where it can, else copied up
// a chunk at a time.
void zero_bf16(kernels::Backend& backend, uint16_t* moments, int64_t n) {
  if (backend.capabilities().host_accessible) {
    std::fill_n(moments, n, uint16_t{0});
    return;
  }
  kernels::stage_to_backend(backend, moments, n, [](uint16_t* chunk, int64_t, int64_t len) {
    std::fill_n(chunk, len, uint16_t{0});
  });
}

}  // namespace

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

StateDtype parse_state_dtype(const std::string& name) {
  if (name == "fp32") return StateDtype::kF32;
  if (name == "bf16") return StateDtype::kBF16;
  throw std::invalid_argument("optimizer.state_dtype: unknown value '" + name +
                              "' (allowed: fp32, bf16)");
}

int64_t state_dtype_bytes(StateDtype dtype) { return dtype == StateDtype::kBF16 ? 2 : 4; }

AdamW::AdamW(const OptimizerConfig& config, std::vector<FlatRange> owned,
             kernels::Backend& backend)
    : config_(config),
      state_dtype_(parse_state_dtype(config.state_dtype)),
      owned_(std::move(owned)) {
  kernels::BackendOps<float>& ops = backend.ops<float>();
  if (state_dtype_ == StateDtype::kF32) {
    for (const FlatRange& r : owned_) {
      for (auto* moments : {&m_, &v_}) {
        moments->push_back(backend.alloc({r.size()}, kernels::DType::kF32));
        ops.fill(moments->back().data<float>(), 0.0f, r.size());
      }
    }
    return;
  }
  if (!backend.capabilities().adamw_bf16_moments) {
    throw std::invalid_argument("optimizer.state_dtype bf16 needs a backend that updates bf16 "
                                "moments; " + backend.capabilities().name +
                                " does not: use fp32");
  }
  for (const FlatRange& r : owned_) {
    for (auto* moments : {&m_, &v_}) {
      moments->push_back(backend.alloc({r.size()}, kernels::DType::kU16));
      zero_bf16(backend, moments->back().data<uint16_t>(), r.size());
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
  const float scale = static_cast<float>(grad_scale);
  for (size_t k = 0; k < owned_.size(); ++k) {
    const int64_t base = owned_[k].begin;
    if (state_dtype_ == StateDtype::kF32) {
      float* m = m_[k].data<float>();
      float* v = v_[k].data<float>();
      for_each_trainable_piece(params, owned_[k], [&](const ParamDesc& d, int64_t b, int64_t e) {
        ops.adamw_update(p + b, g + b, m + (b - base), v + (b - base), e - b, hp, d.weight_decay,
                         scale);
      });
      continue;
    }
    uint16_t* m = m_[k].data<uint16_t>();
    uint16_t* v = v_[k].data<uint16_t>();
    for_each_trainable_piece(params, owned_[k], [&](const ParamDesc& d, int64_t b, int64_t e) {
      ops.adamw_update_bf16_moments(p + b, g + b, m + (b - base), v + (b - base), e - b, hp,
                                    d.weight_decay, scale);
    });
  }
}

}  // namespace tessera::trainer

#include "trainer/param_table.h"

#include <stdexcept>

#include "trainer/rng.h"

namespace tessera::trainer {

int ParamTable::add(ParamDesc desc) {
  if (finalized_) throw std::logic_error("ParamTable::add after finalize: " + desc.name);
  if (by_name_.count(desc.name)) throw std::logic_error("duplicate parameter " + desc.name);
  desc.offset = numel_;
  numel_ += desc.numel();
  by_name_[desc.name] = static_cast<int>(descs_.size());
  descs_.push_back(std::move(desc));
  return static_cast<int>(descs_.size()) - 1;
}

void ParamTable::finalize() {
  if (finalized_) throw std::logic_error("ParamTable::finalize called twice");
  finalized_ = true;
  using kernels::DType;
  values_ = kernels::Tensor::zeros({numel_}, DType::kF32);
  grads_ = kernels::Tensor::zeros({numel_}, DType::kF32);
  exp_avg_ = kernels::Tensor::zeros({numel_}, DType::kF32);
  exp_avg_sq_ = kernels::Tensor::zeros({numel_}, DType::kF32);
}

int ParamTable::index(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) throw std::out_of_range("no parameter named " + name);
  return it->second;
}

kernels::Tensor ParamTable::view(const kernels::Tensor& flat, int i) const {
  if (!finalized_) throw std::logic_error("ParamTable used before finalize");
  const ParamDesc& d = descs_.at(i);
  return flat.view(d.offset, d.shape);
}

void ParamTable::init(uint64_t seed, double std) {
  for (size_t i = 0; i < descs_.size(); ++i) {
    const ParamDesc& d = descs_[i];
    float* p = value_ptr(static_cast<int>(i));
    switch (d.init) {
      case ParamInit::kZeros:
        for (int64_t j = 0; j < d.numel(); ++j) p[j] = 0.0f;
        break;
      case ParamInit::kOnes:
        for (int64_t j = 0; j < d.numel(); ++j) p[j] = 1.0f;
        break;
      case ParamInit::kNormal: {
        Rng rng(hash_name(seed, d.name));
        for (int64_t j = 0; j < d.numel(); ++j) p[j] = static_cast<float>(std * rng.normal());
        break;
      }
    }
  }
}

}  // namespace tessera::trainer

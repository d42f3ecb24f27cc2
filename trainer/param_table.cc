#include "trainer/param_table.h"

#include <stdexcept>

#include "trainer/rng.h"

namespace tessera::trainer {

kernels::Shape ParamDesc::global_shape() const {
  kernels::Shape s = shape;
  if (region == ParamRegion::kExpert && !s.empty()) s[0] = global_dim0;
  return s;
}

int ParamTable::add(ParamDesc desc) {
  if (finalized_) throw std::logic_error("ParamTable::add after finalize: " + desc.name);
  if (by_name_.count(desc.name)) throw std::logic_error("duplicate parameter " + desc.name);
  if (desc.region == ParamRegion::kExpert) {
    if (desc.shape.empty() || desc.dim0_offset < 0 ||
        desc.dim0_offset + desc.shape[0] > desc.global_dim0) {
      throw std::logic_error("expert slice of " + desc.name + " lies outside its global tensor");
    }
  } else {
    desc.global_dim0 = desc.shape.empty() ? 0 : desc.shape[0];
    desc.dim0_offset = 0;
  }
  numel_ += desc.numel();
  by_name_[desc.name] = static_cast<int>(descs_.size());
  descs_.push_back(std::move(desc));
  return static_cast<int>(descs_.size()) - 1;
}

void ParamTable::finalize(kernels::Backend& backend, int64_t dense_multiple,
                          int64_t expert_multiple) {
  if (finalized_) throw std::logic_error("ParamTable::finalize called twice");
  if (dense_multiple < 1 || expert_multiple < 1) {
    throw std::logic_error("ParamTable::finalize: region multiples must be >= 1");
  }
  finalized_ = true;
  backend_ = &backend;
  const int64_t multiple[kParamRegions] = {dense_multiple, expert_multiple};
  int64_t at = 0;
  for (int r = 0; r < kParamRegions; ++r) {
    regions_[r].begin = at;
    for (ParamDesc& d : descs_) {
      if (static_cast<int>(d.region) != r) continue;
      d.offset = at;
      at += d.numel();
    }
    at = (at - regions_[r].begin + multiple[r] - 1) / multiple[r] * multiple[r] + regions_[r].begin;
    regions_[r].end = at;
  }
  padded_numel_ = at;
  values_ = backend.alloc({padded_numel_}, kernels::DType::kF32);
  grads_ = backend.alloc({padded_numel_}, kernels::DType::kF32);
  backend.ops<float>().fill(values_.data<float>(), 0.0f, padded_numel_);
  zero_grads();
}

int64_t ParamTable::padded_region_numel(ParamRegion r, int64_t multiple) const {
  int64_t n = 0;
  for (const ParamDesc& d : descs_) {
    if (d.region == r) n += d.numel();
  }
  return (n + multiple - 1) / multiple * multiple;
}

kernels::Backend& ParamTable::backend() const {
  if (!backend_) throw std::logic_error("ParamTable used before finalize");
  return *backend_;
}

void ParamTable::zero_grads() { ops().fill(grads_.data<float>(), 0.0f, padded_numel_); }

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

void ParamTable::update_values_on_host(const std::function<void(float* values)>& fn) {
  kernels::Backend& be = backend();
  if (be.capabilities().host_accessible) {
    fn(values_.data<float>());
    return;
  }
  const size_t bytes = sizeof(float) * static_cast<size_t>(padded_numel_);
  kernels::Tensor staging = be.alloc_host({padded_numel_}, kernels::DType::kF32);
  be.copy_to_host(staging.data<float>(), values_.data<float>(), bytes);
  fn(staging.data<float>());
  be.copy_from_host(values_.data<float>(), staging.data<float>(), bytes);
}

void ParamTable::init(uint64_t seed, double std) {
  update_values_on_host([&](float* base) { init_values(base, seed, std); });
}

void ParamTable::init_values(float* base, uint64_t seed, double std) const {
  for (size_t i = 0; i < descs_.size(); ++i) {
    const ParamDesc& d = descs_[i];
    float* p = base + d.offset;
    switch (d.init) {
      case ParamInit::kZeros:
        for (int64_t j = 0; j < d.numel(); ++j) p[j] = 0.0f;
        break;
      case ParamInit::kOnes:
        for (int64_t j = 0; j < d.numel(); ++j) p[j] = 1.0f;
        break;
      case ParamInit::kNormal: {
        if (d.region != ParamRegion::kExpert) {
          Rng rng(hash_name(seed, d.name));
          for (int64_t j = 0; j < d.numel(); ++j) p[j] = static_cast<float>(std * rng.normal());
          break;
        }
        const int64_t row = d.numel() / d.shape[0];
        for (int64_t e = 0; e < d.shape[0]; ++e) {
          Rng rng(hash_name(seed, d.name + "[" + std::to_string(d.dim0_offset + e) + "]"));
          for (int64_t j = 0; j < row; ++j) p[e * row + j] = static_cast<float>(std * rng.normal());
        }
        break;
      }
    }
  }
}

}  // namespace tessera::trainer

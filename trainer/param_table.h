// ParamTable: the model's parameters as a table of named descriptors over ONE flat buffer per
// kind (values, gradients, AdamW first and second moments). Parameters are laid out in the order
// they are added, contiguously, so tensors added back to back form one matrix (wq|wk|wv is a
// fused [3D, D] projection) and data-parallel reduction, ZeRO sharding and checkpointing are
// offset arithmetic over the flat buffers.
//
// Thread-safety: none; build it once (add... then finalize), then use the views.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/tensor.h"

namespace tessera::trainer {

enum class ParamInit : uint8_t { kNormal, kOnes, kZeros };

struct ParamDesc {
  std::string name;            // DESIGN.md name, also the checkpoint dataset name
  kernels::Shape shape;
  ParamInit init = ParamInit::kNormal;
  bool weight_decay = true;    // decoupled AdamW decay applies
  bool trainable = true;       // false: not updated by AdamW, no gradient (e.g. moe.gate.bias)
  int64_t offset = 0;          // in elements, into the flat buffers; set by add()
  int64_t numel() const { return kernels::shape_numel(shape); }
};

class ParamTable {
 public:
  // Returns the parameter's index. REQUIRES: not finalized; name unique.
  int add(ParamDesc desc);
  // Allocates the flat buffers (zeroed). REQUIRES: called once, after the last add().
  void finalize();

  const std::vector<ParamDesc>& descs() const { return descs_; }
  int index(const std::string& name) const;  // throws std::out_of_range naming the parameter
  bool contains(const std::string& name) const { return by_name_.count(name) != 0; }
  int64_t numel() const { return numel_; }   // all parameters

  // Views of one parameter (REQUIRES finalized).
  kernels::Tensor value(int i) const { return view(values_, i); }
  kernels::Tensor grad(int i) const { return view(grads_, i); }
  kernels::Tensor exp_avg(int i) const { return view(exp_avg_, i); }
  kernels::Tensor exp_avg_sq(int i) const { return view(exp_avg_sq_, i); }
  float* value_ptr(int i) { return values_.data<float>() + descs_[i].offset; }
  float* grad_ptr(int i) { return grads_.data<float>() + descs_[i].offset; }

  // Whole flat buffers, in layout order.
  kernels::Tensor& values() { return values_; }
  kernels::Tensor& grads() { return grads_; }
  kernels::Tensor& exp_avg() { return exp_avg_; }
  kernels::Tensor& exp_avg_sq() { return exp_avg_sq_; }

  void zero_grads() { grads_.fill_zero(); }

  // Deterministic initialisation: each parameter draws from its own stream seeded by
  // (seed, name), so values do not depend on which other parameters a rank holds.
  void init(uint64_t seed, double std);

 private:
  kernels::Tensor view(const kernels::Tensor& flat, int i) const;
  std::vector<ParamDesc> descs_;
  std::unordered_map<std::string, int> by_name_;
  int64_t numel_ = 0;
  bool finalized_ = false;
  kernels::Tensor values_, grads_, exp_avg_, exp_avg_sq_;
};

}  // namespace tessera::trainer

// ParamTable: the model's parameters as a table of named descriptors over ONE flat buffer per
// kind (values, gradients; the AdamW moments live with the optimizer, for its ZeRO-1 shards
// only). Parameters are laid out in the
// order they are added, contiguously, within two REGIONS:
//   dense   parameters replicated over the data-parallel group (attention, norms, dense and shared
//           FFNs, router, embedding, head);
//   expert  routed-expert slices, replicated only over the expert-data-parallel group.
// Each region is one contiguous range of the flat buffers, padded to a multiple the caller picks
// (the group size), so gradient reduce-scatter, ZeRO-1 shards and the all-gather of updated values
// are offset arithmetic. Tensors added back to back in one region form one matrix (wq|wk|wv is a
// fused [3D, D] projection).
//
// Expert-parallel slices: a routed-expert tensor's global shape is [n_experts, ...]; a rank holds
// rows [dim0_offset, dim0_offset + shape[0]) of it. Initialisation draws each expert row from its
// own stream, so a slice equals the same rows of the whole tensor.
//
// Thread-safety: none; build it once (add... then finalize), then use the views.
#pragma once

#include <algorithm>
#include <functional>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/backend.h"
#include "kernels/tensor.h"

namespace tessera::trainer {

enum class ParamInit : uint8_t { kNormal, kOnes, kZeros };
enum class ParamRegion : uint8_t { kDense = 0, kExpert = 1 };
constexpr int kParamRegions = 2;

struct ParamDesc {
  std::string name;            // DESIGN.md name, also the checkpoint dataset name
  kernels::Shape shape;        // the shape held here (a slice along dim 0 for expert slices)
  ParamInit init = ParamInit::kNormal;
  bool weight_decay = true;    // decoupled AdamW decay applies
  bool trainable = true;       // false: not updated by AdamW, no gradient (e.g. moe.gate.bias)
  ParamRegion region = ParamRegion::kDense;
  int64_t global_dim0 = 0;     // kExpert: dim 0 of the global tensor (n_experts); else shape[0]
  int64_t dim0_offset = 0;     // kExpert: first global row held here
  int64_t offset = 0;          // in elements, into the flat buffers; set by finalize()
  // A copy of a parameter another rank owns (MTP's embedding on the head's stage): trained in
  // lockstep with the original (gradients summed over the pair), left out of the global gradient
  // norm and of what this rank writes to checkpoints (it reads it on resume).
  bool tied_copy = false;
  int64_t numel() const { return kernels::shape_numel(shape); }
  kernels::Shape global_shape() const;
};

// [begin, end) in elements of the flat buffers.
struct FlatRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

class ParamTable {
 public:
  // Returns the parameter's index. REQUIRES: not finalized; name unique.
  int add(ParamDesc desc);
  // Lays the regions out (dense first) and allocates values and gradients (zeroed) on `backend`,
  // which the table keeps (it must outlive the table); each region's length is padded up to a
  // multiple of region_multiple[region] (>= 1). Padding stays zero.
  // REQUIRES: called once, after the last add().
  void finalize(kernels::Backend& backend, int64_t dense_multiple = 1,
                int64_t expert_multiple = 1);
  // The backend the buffers live on, and its fp32 ops. REQUIRES finalized.
  kernels::Backend& backend() const;
  kernels::BackendOps<float>& ops() const { return backend().ops<float>(); }

  const std::vector<ParamDesc>& descs() const { return descs_; }
  int index(const std::string& name) const;  // throws std::out_of_range naming the parameter
  bool contains(const std::string& name) const { return by_name_.count(name) != 0; }
  int64_t numel() const { return numel_; }   // parameters held (without padding)
  // Elements of region r once padded to `multiple` (what finalize lays out), computable from the
  // descriptors alone, before finalize.
  int64_t padded_region_numel(ParamRegion r, int64_t multiple) const;
  int64_t padded_numel() const { return padded_numel_; }  // length of the flat buffers
  FlatRange region(ParamRegion r) const { return regions_[static_cast<int>(r)]; }

  // Views of one parameter (REQUIRES finalized), in the backend's memory.
  kernels::Tensor value(int i) const { return view(values_, i); }
  kernels::Tensor grad(int i) const { return view(grads_, i); }
  float* value_ptr(int i) { return values_.data<float>() + descs_[i].offset; }
  float* grad_ptr(int i) { return grads_.data<float>() + descs_[i].offset; }

  // Whole flat buffers (padded_numel() elements), in layout order.
  kernels::Tensor& values() { return values_; }
  kernels::Tensor& grads() { return grads_; }

  void zero_grads();

  // Deterministic initialisation: each parameter (each expert row of a stacked expert tensor)
  // draws from its own stream seeded by (seed, name), so values do not depend on which other
  // parameters or expert slices a rank holds. Values are drawn on the host (see below).
  void init(uint64_t seed, double std);

  // Lets the host write the flat values buffer (padded_numel() floats, descriptor offsets):
  // fn gets the buffer itself when the host can address the backend's memory, else a host copy
  // of it that is copied back afterwards (padding and untouched elements keep their values).
  void update_values_on_host(const std::function<void(float* values)>& fn);

 private:
  kernels::Tensor view(const kernels::Tensor& flat, int i) const;
  void init_values(float* base, uint64_t seed, double std) const;  // into a host buffer
  std::vector<ParamDesc> descs_;
  std::unordered_map<std::string, int> by_name_;
  int64_t numel_ = 0, padded_numel_ = 0;
  FlatRange regions_[kParamRegions];
  bool finalized_ = false;
  kernels::Backend* backend_ = nullptr;
  kernels::Tensor values_, grads_;
};

// Calls fn(index, begin, end) for each piece [begin, end) (flat-buffer elements) of parameter
// `index` of `params` that lies inside `range`, in descriptor order.
template <typename Fn>
void for_each_param_piece(const ParamTable& params, FlatRange range, Fn&& fn) {
  const std::vector<ParamDesc>& descs = params.descs();
  for (size_t i = 0; i < descs.size(); ++i) {
    const int64_t b = std::max(descs[i].offset, range.begin);
    const int64_t e = std::min(descs[i].offset + descs[i].numel(), range.end);
    if (b < e) fn(static_cast<int>(i), b, e);
  }
}

}  // namespace tessera::trainer

#include "trainer/checkpoint/slices.h"

#include <stdexcept>
#include <unordered_map>

namespace tessera::trainer {

CheckpointSlices::CheckpointSlices(const std::vector<CheckpointTensor>& tensors,
                                   ParamTable& params, ZeroOptimizer& optimizer)
    : CheckpointSlices(tensors, params, optimizer, model_buffers(params, optimizer)) {}

CheckpointSlices::CheckpointSlices(const std::vector<CheckpointTensor>& tensors,
                                   ParamTable& params, ZeroOptimizer& optimizer,
                                   const CheckpointBuffers& buffers) {
  std::unordered_map<std::string, int> index;
  for (size_t i = 0; i < tensors.size(); ++i) index[tensors[i].name] = static_cast<int>(i);
  auto tensor = [&](const std::string& name) {
    auto it = index.find(name);
    if (it == index.end()) throw std::logic_error("checkpoint has no tensor " + name);
    return it->second;
  };
  float* values = buffers.values;
  // Global element of local flat-buffer element `local` of parameter d.
  auto global = [](const ParamDesc& d, int64_t local) {
    return (local - d.offset) + d.dim0_offset * (d.numel() / d.shape[0]);
  };
  for (const ParamDesc& d : params.descs()) {
    reads_.push_back({tensor(d.name), global(d, d.offset), global(d, d.offset + d.numel()),
                      values + d.offset});
  }
  const std::vector<FlatRange>& shards = optimizer.shards();
  for (size_t k = 0; k < shards.size(); ++k) {
    const FlatRange shard = shards[k];
    float* m = buffers.exp_avg.at(k);
    float* v = buffers.exp_avg_sq.at(k);
    for_each_param_piece(params, shard, [&](int i, int64_t b, int64_t e) {
      const ParamDesc& d = params.descs()[i];
      const int64_t gb = global(d, b), ge = global(d, e);
      // A tied copy is written by its original's owners; this rank only reads it back.
      if (!d.tied_copy) owned_.push_back({tensor(d.name), gb, ge, values + b});
      if (!d.trainable) return;
      const TensorSlice ms{tensor(kExpAvgPrefix + d.name), gb, ge, m + (b - shard.begin)};
      const TensorSlice vs{tensor(kExpAvgSqPrefix + d.name), gb, ge, v + (b - shard.begin)};
      if (!d.tied_copy) {
        owned_.push_back(ms);
        owned_.push_back(vs);
      }
      reads_.push_back(ms);
      reads_.push_back(vs);
    });
  }
}

}  // namespace tessera::trainer

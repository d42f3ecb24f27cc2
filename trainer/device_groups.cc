#include "trainer/device_groups.h"

#include "parallel/device_comm/make_device_comm.h"

namespace tessera::trainer {

DeviceGroups::DeviceGroups(ParallelLayout& layout, parallel::Comm& eval_pipeline,
                           kernels::Backend& backend) {
  auto device = [&](parallel::Comm& group) {
    std::unique_ptr<parallel::Comm> made = parallel::make_device_comm(group, backend);
    if (!made) return &group;
    owned_.push_back(std::move(made));
    return owned_.back().get();
  };
  pp_ = device(*layout.pp);
  dp_ = device(*layout.dp);
  ep_ = device(*layout.ep);
  expert_dp_ = device(*layout.expert_dp);
  eval_pipeline_ = device(eval_pipeline);
  if (layout.embedding_tie) embedding_tie_ = device(*layout.embedding_tie);
}

std::vector<parallel::Comm*> DeviceGroups::owned() const {
  std::vector<parallel::Comm*> out;
  for (const auto& c : owned_) out.push_back(c.get());
  return out;
}

}  // namespace tessera::trainer

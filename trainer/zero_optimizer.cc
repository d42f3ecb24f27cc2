#include "trainer/zero_optimizer.h"

#include "parallel/zero_sharding.h"

namespace tessera::trainer {

namespace {

std::vector<FlatRange> shard_ranges(const ParamTable& params, parallel::Comm* const groups[]) {
  std::vector<FlatRange> shards;
  for (int r = 0; r < kParamRegions; ++r) {
    const FlatRange region = params.region(static_cast<ParamRegion>(r));
    const parallel::ShardBounds s =
        parallel::zero_shard(region.size(), groups[r]->size(), groups[r]->rank());
    shards.push_back({region.begin + s.begin, region.begin + s.end});
  }
  return shards;
}

}  // namespace

ZeroOptimizer::ZeroOptimizer(const OptimizerConfig& config, ParamTable& params,
                             parallel::Comm& dp, parallel::Comm& expert_dp)
    : params_(params), groups_{&dp, &expert_dp}, adamw_(config, shard_ranges(params, groups_)) {}

std::span<float> ZeroOptimizer::grad_region(int r) {
  const FlatRange range = params_.region(static_cast<ParamRegion>(r));
  return {params_.grads().data<float>() + range.begin, static_cast<size_t>(range.size())};
}

double ZeroOptimizer::ReduceGradients() {
  std::vector<parallel::Work> work;
  for (int r = 0; r < kParamRegions; ++r) {
    work.push_back(parallel::reduce_scatter_shards(*groups_[r], grad_region(r)));
  }
  parallel::wait_all(work);
  return grad_sum_squares(params_, shards());
}

void ZeroOptimizer::Step(double lr, double grad_scale) {
  adamw_.Step(params_, lr, grad_scale);
  std::vector<parallel::Work> work;
  for (int r = 0; r < kParamRegions; ++r) {
    const FlatRange range = params_.region(static_cast<ParamRegion>(r));
    std::span<float> values(params_.values().data<float>() + range.begin,
                            static_cast<size_t>(range.size()));
    work.push_back(parallel::all_gather_shards(*groups_[r], values));
  }
  parallel::wait_all(work);
}

}  // namespace tessera::trainer

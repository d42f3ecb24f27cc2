#include "trainer/zero_optimizer.h"

#include <algorithm>
#include <stdexcept>

#include "parallel/zero_sharding.h"

namespace tessera::trainer {

namespace {

struct Layout {
  std::vector<FlatRange> buckets;
  std::vector<parallel::Comm*> groups;
  std::vector<FlatRange> shards;
};

Layout bucket_layout(const ParamTable& params, parallel::Comm* const groups[],
                     int64_t bucket_elements) {
  Layout l;
  for (int r = 0; r < kParamRegions; ++r) {
    const FlatRange region = params.region(static_cast<ParamRegion>(r));
    const int64_t g = groups[r]->size();
    const int64_t size = std::max<int64_t>(g, bucket_elements / g * g);
    for (int64_t b = region.begin; b < region.end; b += size) {
      const FlatRange bucket{b, std::min(b + size, region.end)};
      const parallel::ShardBounds s =
          parallel::zero_shard(bucket.size(), groups[r]->size(), groups[r]->rank());
      l.buckets.push_back(bucket);
      l.groups.push_back(groups[r]);
      l.shards.push_back({bucket.begin + s.begin, bucket.begin + s.end});
    }
  }
  return l;
}

}  // namespace

ZeroOptimizer::ZeroOptimizer(const OptimizerConfig& config, ParamTable& params,
                             parallel::Comm& dp, parallel::Comm& expert_dp,
                             int64_t bucket_elements)
    : params_(params),
      adamw_(config, [&] {
        parallel::Comm* const groups[kParamRegions] = {&dp, &expert_dp};
        Layout l = bucket_layout(params, groups, bucket_elements);
        for (size_t i = 0; i < l.buckets.size(); ++i) {
          buckets_.push_back({l.buckets[i], l.groups[i], {}, 0, {}, false});
        }
        return l.shards;
      }(),
             params.backend()) {
  buckets_of_param_.resize(params.descs().size());
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for_each_param_piece(params, buckets_[b].range, [&](int p, int64_t, int64_t) {
      buckets_[b].params.push_back(p);
      buckets_of_param_[p].push_back(static_cast<int>(b));
    });
  }
  final_.assign(params.descs().size(), false);
}

void ZeroOptimizer::BeginStep() {
  std::fill(final_.begin(), final_.end(), false);
  for (Bucket& b : buckets_) {
    b.pending = static_cast<int>(b.params.size());
    b.posted = false;
    b.work = {};
  }
}

void ZeroOptimizer::Post(Bucket& b) {
  b.work = parallel::reduce_scatter_shards(
      *b.group, {params_.grads().data<float>() + b.range.begin, static_cast<size_t>(b.range.size())});
  b.posted = true;
}

void ZeroOptimizer::MarkFinal(int first, int end) {
  for (int p = first; p < end; ++p) {
    if (final_.at(p)) {
      throw std::logic_error("ZeroOptimizer: gradient of " + params_.descs()[p].name +
                             " marked final twice in one step");
    }
    final_[p] = true;
    for (int b : buckets_of_param_[p]) {
      if (--buckets_[b].pending == 0) Post(buckets_[b]);
    }
  }
}

double ZeroOptimizer::FinishReduction() {
  for (Bucket& b : buckets_) {
    if (!b.posted) Post(b);
  }
  std::vector<parallel::Work> work;
  for (Bucket& b : buckets_) work.push_back(std::move(b.work));
  parallel::wait_all(work);
  return grad_sum_squares(params_, shards());
}

void ZeroOptimizer::Step(double lr, double grad_scale) {
  adamw_.Step(params_, lr, grad_scale);
  std::vector<parallel::Work> work;
  for (const Bucket& b : buckets_) {
    work.push_back(parallel::all_gather_shards(
        *b.group,
        {params_.values().data<float>() + b.range.begin, static_cast<size_t>(b.range.size())}));
  }
  parallel::wait_all(work);
}

}  // namespace tessera::trainer

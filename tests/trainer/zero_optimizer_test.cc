#include "trainer/zero_optimizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <span>
#include <vector>

#include "kernels/cpu_backend.h"
#include "parallel/fake_comm.h"

namespace tessera::trainer {
namespace {

// Two dense parameters (one decayed, one frozen) and one expert slice, with odd sizes so the
// padded regions and the shard boundaries cut through parameters.
ParamTable MakeTable(kernels::Backend& backend, int64_t dense_multiple, int64_t expert_multiple) {
  ParamTable t;
  t.add({"w", {3, 3}});
  t.add({"frozen", {2}, ParamInit::kZeros, false, /*trainable=*/false});
  t.add({"norm", {5}, ParamInit::kOnes, /*weight_decay=*/false});
  t.add({"experts", {2, 3, 1}, ParamInit::kNormal, true, true, ParamRegion::kExpert, 2, 0});
  t.finalize(backend, dense_multiple, expert_multiple);
  t.init(5, 0.5);
  return t;
}

// Rank r's gradient of element i (i = element + 100 * parameter index).
float Grad(int rank, int64_t i, int step) {
  return 0.01f * static_cast<float>((i * 7 + rank * 3 + step) % 11) - 0.05f;
}

// dp = 4 ranks; expert-dp groups {0, 2} and {1, 3} (ep = 2), gradient buckets of 4 elements
// reduced as parameters become final. After each step every rank must hold
// what one AdamW over the summed gradients gives: the dense sum over all 4 ranks, the expert sum
// over the rank's expert-dp group; and the world sum of the per-rank squared norms must be the
// squared norm of those sums (dense once, each expert-dp group's slice once).
TEST(ZeroOptimizer, EqualsOneAdamWOverSummedGradients) {
  OptimizerConfig oc;
  oc.weight_decay = 0.1;
  const int steps = 3;
  // Serial references: one per expert-dp group (they share the dense part).
  std::vector<ParamTable> ref;
  std::vector<AdamW> ref_opt;
  std::vector<double> ref_sumsq(steps + 1, 0.0);
  kernels::CpuBackend cpu;
  for (int g = 0; g < 2; ++g) ref.push_back(MakeTable(cpu, 1, 1));
  for (int g = 0; g < 2; ++g) ref_opt.emplace_back(oc, ref[g]);
  for (int step = 1; step <= steps; ++step) {
    for (int g = 0; g < 2; ++g) {
      ParamTable& t = ref[g];
      float* grad = t.grads().data<float>();
      for (size_t k = 0; k < t.descs().size(); ++k) {
        const ParamDesc& d = t.descs()[k];
        if (!d.trainable) continue;
        const bool dense = d.region == ParamRegion::kDense;
        for (int64_t j = 0; j < d.numel(); ++j) {
          float sum = 0;  // over the replicas holding this parameter
          for (int r = 0; r < 4; ++r) {
            if (dense || r % 2 == g) sum += Grad(r, j + 100 * static_cast<int64_t>(k), step);
          }
          grad[d.offset + j] = sum;
          if (!dense || g == 0) ref_sumsq[step] += static_cast<double>(sum) * sum;
        }
      }
      ref_opt[g].Step(t, 0.01, 1.0);
    }
  }

  parallel::run_fake_ranks(4, [&](parallel::Comm& world) {
    const int r = world.rank();
    std::unique_ptr<parallel::Comm> edp = world.split({r % 2, r % 2 + 2}, "expert-dp");
    kernels::CpuBackend cpu;
    ParamTable t = MakeTable(cpu, 4, 2);
    // Buckets of 4 elements: shards and reductions cut through parameters everywhere.
    ZeroOptimizer zero(oc, t, world, *edp, /*bucket_elements=*/4);
    ASSERT_GT(zero.buckets(), 4u);
    for (int step = 1; step <= steps; ++step) {
      t.zero_grads();
      float* grad = t.grads().data<float>();
      for (size_t k = 0; k < t.descs().size(); ++k) {
        const ParamDesc& d = t.descs()[k];
        if (!d.trainable) continue;
        for (int64_t j = 0; j < d.numel(); ++j) grad[d.offset + j] = Grad(r, j + 100 * k, step);
      }
      // Parameters become final in backward order, so buckets are reduced early, the last first.
      zero.BeginStep();
      const int64_t posted_before = world.stats().ops_posted;
      for (int p = static_cast<int>(t.descs().size()) - 1; p >= 0; --p) zero.MarkFinal(p, p + 1);
      // Every dense bucket was posted by MarkFinal, before FinishReduction.
      EXPECT_GE(world.stats().ops_posted - posted_before, 4);
      double sumsq = zero.FinishReduction();
      world.all_reduce(std::span<double>(&sumsq, 1)).wait();
      EXPECT_NEAR(sumsq, ref_sumsq[step], 1e-9 * ref_sumsq[step]) << "rank " << r << " step " << step;
      zero.Step(0.01, 1.0);
    }
    ParamTable& want = ref[r % 2];
    for (const ParamDesc& d : t.descs()) {
      const ParamDesc& w = want.descs()[want.index(d.name)];
      for (int64_t j = 0; j < d.numel(); ++j) {
        ASSERT_FLOAT_EQ(t.values().data<float>()[d.offset + j],
                        want.values().data<float>()[w.offset + j])
            << d.name << "[" << j << "] on rank " << r;
      }
    }
    // Each shard's moments are the reference's moments of the same elements.
    for (size_t k = 0; k < zero.shards().size(); ++k) {
      const FlatRange shard = zero.shards()[k];
      for (const ParamDesc& d : t.descs()) {
        if (!d.trainable) continue;
        const ParamDesc& w = want.descs()[want.index(d.name)];
        const FlatRange ref_region = ref_opt[r % 2].owned()[static_cast<size_t>(d.region)];
        for (int64_t j = std::max(d.offset, shard.begin); j < std::min(d.offset + d.numel(), shard.end); ++j) {
          const int64_t ref_at = w.offset + (j - d.offset) - ref_region.begin;
          ASSERT_EQ(zero.exp_avg(k)[j - shard.begin], ref_opt[r % 2].exp_avg(static_cast<size_t>(d.region))[ref_at]);
          ASSERT_EQ(zero.exp_avg_sq(k)[j - shard.begin], ref_opt[r % 2].exp_avg_sq(static_cast<size_t>(d.region))[ref_at]);
        }
      }
    }
  });
}

}  // namespace
}  // namespace tessera::trainer

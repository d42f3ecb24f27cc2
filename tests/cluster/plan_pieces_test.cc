// The planner's piece-level timing (cluster/plan_pieces.h) on the trainer's real blocks: every
// piece of every block kind has a cost, a lone forward overlaps exactly what its steps allow
// (checked against the sum written out here), and an FB pair hides exchanges behind the other
// micro-batch's compute.
#include "cluster/plan_pieces.h"

#include <gtest/gtest.h>

#include "tests/recipes_dir.h"
#include "trainer/layers/moe_block.h"
#include "trainer/model.h"
#include "trainer/parallel_layout.h"

namespace tessera::cluster {
namespace {

trainer::Recipe tiny(const std::vector<std::string>& overrides) {
  return trainer::load_recipe((test_support::recipes_dir() / "tiny-moe.yaml").string(), overrides);
}

// The chunk of stage 0 of a recipe with layer 1 an MoE layer (tiny-moe: layer 0 dense).
struct Described {
  std::unique_ptr<trainer::Model> model;
  ChunkWork work;
};
Described describe(const trainer::Recipe& r, int ep, bool node_aware, const UnitCost& unit) {
  Described d;
  d.model = trainer::Model::Describe(r.model, trainer::recipe_model_part(r, 0, ep, 0));
  for (trainer::MoeBlock* moe : d.model->moe_blocks()) moe->set_nodes(1, node_aware);
  d.work.blocks = d.model->chunk_blocks(0);
  d.work.units.assign(d.work.blocks.size() / 2, unit);
  return d;
}

UnitCost moe_unit() {
  UnitCost u;
  u.attention = {1.0, 2.0, 1.0};
  u.ffn = {3.0, 6.0, 3.0};
  u.router = {0.1, 0.2, 0.1};
  u.shared = {0.5, 1.0, 0.5};
  u.experts = {2.0, 4.0, 2.0};
  u.permute = {0.2, 0.4, 0};
  u.dispatch = 1.5;
  u.combine = 1.5;
  u.backward = 1.5;
  u.dispatch_within = 0.7;
  u.combine_within = 0.7;
  u.backward_within = 0.7;
  u.small = 0.01;
  return u;
}

TEST(PlanPieces, EveryPieceOfEveryBlockKindHasACost) {
  for (const std::string attention : {"mha", "mla"}) {
    for (const bool node_aware : {false, true}) {
      const trainer::Recipe r = tiny({"model.attention=" + attention, "model.mtp_depth=1",
                                      "parallel.dp=2", "parallel.ep=2"});
      const Described d = describe(r, 2, node_aware, moe_unit());
      EXPECT_NO_THROW({
        time_forward(d.work);
        time_backward_input(d.work);
        time_backward_weight(d.work);
        time_backward(d.work);
        time_forward_backward(d.work, d.work);
      }) << attention << (node_aware ? " node-aware" : " flat");
    }
  }
}

// Layer 0 (dense): attention F then ffn F. Layer 1 (MoE, flat dispatch under ep = 2): route posts
// the counts; dispatch waits for them and posts the rows; the shared experts run while they
// travel; experts wait for them; combine posts; unpermute waits for it.
TEST(PlanPieces, ALoneForwardOverlapsWhatItsStepsAllow) {
  const trainer::Recipe r = tiny({"parallel.dp=2", "parallel.ep=2"});
  const UnitCost u = moe_unit();
  const Described d = describe(r, 2, false, u);
  ASSERT_EQ(d.work.units.size(), 2u);
  double t = u.attention.f + u.ffn.f;         // layer 0
  t += u.attention.f + u.router.f + u.small;  // layer 1: attention, route, counts arrive
  const double rows_arrive = t + u.dispatch;
  t = std::max(t + u.shared.f, rows_arrive) + u.experts.f;  // shared hides part of the dispatch
  t += u.combine + u.permute.f;
  const Timed f = time_forward(d.work);
  EXPECT_DOUBLE_EQ(f.seconds, t);
  EXPECT_DOUBLE_EQ(f.comm, u.small + u.dispatch + u.combine);
  EXPECT_DOUBLE_EQ(f.compute, 2 * u.attention.f + u.ffn.f + u.router.f + u.shared.f +
                                  u.experts.f + u.permute.f);
  EXPECT_DOUBLE_EQ(f.waited, f.seconds - f.compute);
}

// The same forward with a synchronisation loss of a quarter of the phase: the counts leave that
// much after the compute since the chunk began; the dispatch follows them with no compute
// between (no loss); the combine waits a quarter of the shared and routed experts' compute.
// With exchanges on the ranks' cores every exchange, and its loss, is on the clock.
TEST(PlanPieces, AnExchangeAfterComputeWaitsTheSynchronisationLoss) {
  const trainer::Recipe r = tiny({"parallel.dp=2", "parallel.ep=2"});
  const UnitCost u = moe_unit();
  Described d = describe(r, 2, false, u);
  std::vector<double> phases;
  d.work.sync_loss = [&phases](double phase_s) {
    phases.push_back(phase_s);
    return 0.25 * phase_s;
  };
  const double before_counts = 2 * u.attention.f + u.ffn.f + u.router.f;
  double t = before_counts + 0.25 * before_counts + u.small;  // the counts arrive
  const double rows_arrive = t + u.dispatch;
  t = std::max(t + u.shared.f, rows_arrive) + u.experts.f;
  t += 0.25 * (u.shared.f + u.experts.f) + u.combine + u.permute.f;
  const Timed f = time_forward(d.work);
  EXPECT_DOUBLE_EQ(f.seconds, t);
  EXPECT_DOUBLE_EQ(f.waited, f.seconds - f.compute);
  EXPECT_EQ(phases, (std::vector<double>{before_counts, u.shared.f + u.experts.f}));
  EXPECT_NEAR(f.compute_since_exchange, u.permute.f, 1e-12);  // the unpermute after the combine

  d.work.exchanges_take_cores = true;
  phases.clear();
  const Timed on_cores = time_forward(d.work);
  EXPECT_DOUBLE_EQ(on_cores.seconds,
                   f.compute + 0.25 * (before_counts + u.shared.f + u.experts.f) + u.small +
                       u.dispatch + u.combine);
  double waits = 0;  // the losses are waits on the predicted trace
  for (const PieceSpan& s : on_cores.spans) {
    if (s.name == "wait all_to_all_v") waits += s.end - s.start;
  }
  EXPECT_DOUBLE_EQ(waits, 0.25 * (before_counts + u.shared.f + u.experts.f));
}

TEST(PlanPieces, AnFbPairHidesExchangesBehindTheOtherMicroBatch) {
  const trainer::Recipe r = tiny({"parallel.dp=2", "parallel.ep=2"});
  const Described d = describe(r, 2, false, moe_unit());
  const Timed f = time_forward(d.work), bw = time_backward(d.work);
  const Timed pair = time_forward_backward(d.work, d.work);
  EXPECT_DOUBLE_EQ(pair.compute, f.compute + bw.compute);
  EXPECT_DOUBLE_EQ(pair.comm, f.comm + bw.comm);
  EXPECT_LT(pair.seconds, f.seconds + bw.seconds);   // something is hidden
  EXPECT_LT(pair.waited, f.waited + bw.waited);
  EXPECT_GE(pair.seconds, pair.compute);             // never faster than its compute
  // Without exchanges (ep = 1) a pair is its compute, exactly.
  const Described local = describe(tiny({}), 1, false, moe_unit());
  const Timed lone = time_forward_backward(local.work, local.work);
  EXPECT_DOUBLE_EQ(lone.seconds, lone.compute);
  EXPECT_DOUBLE_EQ(lone.waited, 0.0);
  EXPECT_DOUBLE_EQ(lone.compute_since_exchange, lone.compute);  // nothing exchanged
}

}  // namespace
}  // namespace tessera::cluster

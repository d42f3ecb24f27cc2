// The MoE block with node-aware expert dispatch (MoeBlock::set_nodes, parallel/node_dispatch.h)
// over 4 fake ranks as 2 nodes x 2: its outputs, input gradients and every parameter gradient
// equal the flat all-to-all path's up to float summation order (the flat path is the one the
// model gradient tests check against finite differences and PyTorch); two micro-batches'
// pieces interleaved give the sequential result bit for bit; fewer bytes leave the node.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/cpu_backend.h"
#include "parallel/fake_comm.h"
#include "tests/trainer/two_micro_batch_pieces.h"
#include "trainer/layers/moe_block.h"
#include "trainer/param_table.h"
#include "trainer/rng.h"

namespace tessera::trainer {
namespace {

constexpr int kEp = 4, kRanksPerNode = 2;

ModelConfig Config(int64_t topk_group) {
  ModelConfig c;
  c.dim = 16;
  c.moe_inter_dim = 8;
  c.n_experts = 8;
  c.n_shared_experts = 1;
  c.top_k = 3;
  c.n_group = kEp / kRanksPerNode;  // node-limited: expert group g on node g
  c.topk_group = topk_group;
  c.route_scale = 2.5;
  c.seq_aux_alpha = 0.02;
  c.init_std = 0.3;
  return c;
}

std::vector<float> Random(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.normal());
  return v;
}

struct Outcome {
  std::vector<float> y0, y1, dx0, dx1, grads;
  int64_t cross_node_bytes = 0;
  bool operator==(const Outcome& o) const {
    return y0 == o.y0 && y1 == o.y1 && dx0 == o.dx0 && dx1 == o.dx1 && grads == o.grads;
  }
};

// Two micro-batches through one rank's block: sequentially, or the second's forward interleaved
// piece by piece with the first's backward (as the overlapped FB instruction will).
Outcome Run(parallel::Comm& ep, bool node_aware, bool interleaved, int64_t topk_group) {
  const ModelConfig config = Config(topk_group);
  kernels::CpuBackend cpu;
  ParamTable table;
  MoeBlock block(table, config, "layers.0.", kEp, ep.rank(), &ep);
  block.set_nodes(kRanksPerNode, node_aware);
  table.finalize(cpu);
  table.init(3, config.init_std);
  const MicroBatchInfo mb{2, 9, true, 0.25};
  const int64_t n = mb.tokens() * config.dim;
  const std::vector<float> x0 = Random(n, 10 + ep.rank()), x1 = Random(n, 20 + ep.rank());
  const std::vector<float> dy0 = Random(n, 30 + ep.rank()), dy1 = Random(n, 40 + ep.rank());
  Outcome out;
  out.y0.resize(n), out.y1.resize(n), out.dx0.resize(n), out.dx1.resize(n);
  auto c0 = block.NewContext(), c1 = block.NewContext();
  ActivationArena a0(cpu, block.ArenaBytes(mb, cpu.device()));
  ActivationArena a1(cpu, block.ArenaBytes(mb, cpu.device()));
  block.Prepare(*c0, a0, mb);
  block.Prepare(*c1, a1, mb);
  block.BeginForward(*c0, x0.data(), out.y0.data());
  block.BeginForward(*c1, x1.data(), out.y1.data());
  block.BeginBackward(*c0, dy0.data(), out.dx0.data());
  block.BeginBackward(*c1, dy1.data(), out.dx1.data());
  testing::RunTwoMicroBatches(block.pieces(), *c0, *c1, interleaved);
  const float* g = table.grads().data<float>();
  out.grads.assign(g, g + table.padded_numel());
  out.cross_node_bytes = block.take_cross_node_bytes();
  return out;
}

std::vector<Outcome> RunAll(bool node_aware, bool interleaved, int64_t topk_group) {
  std::vector<Outcome> out(kEp);
  parallel::run_fake_ranks(kEp, [&](parallel::Comm& ep) {
    out[ep.rank()] = Run(ep, node_aware, interleaved, topk_group);
  });
  return out;
}

// max |a - b| / max(1, max |b|)
double RelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double{a[i]} - b[i]));
    scale = std::max(scale, std::abs(double{b[i]}));
  }
  return diff / scale;
}

class MoeNodeDispatch : public ::testing::TestWithParam<int64_t> {};

TEST_P(MoeNodeDispatch, EqualsFlatPathUpToSummationOrder) {
  const std::vector<Outcome> flat = RunAll(false, false, GetParam());
  const std::vector<Outcome> node = RunAll(true, false, GetParam());
  int64_t flat_bytes = 0, node_bytes = 0;
  for (int r = 0; r < kEp; ++r) {
    ASSERT_EQ(node[r].grads.size(), flat[r].grads.size());
    EXPECT_LT(RelDiff(node[r].y0, flat[r].y0), 1e-5) << "rank " << r;
    EXPECT_LT(RelDiff(node[r].y1, flat[r].y1), 1e-5) << "rank " << r;
    EXPECT_LT(RelDiff(node[r].dx0, flat[r].dx0), 1e-5) << "rank " << r;
    EXPECT_LT(RelDiff(node[r].dx1, flat[r].dx1), 1e-5) << "rank " << r;
    EXPECT_LT(RelDiff(node[r].grads, flat[r].grads), 1e-5) << "rank " << r;
    flat_bytes += flat[r].cross_node_bytes;
    node_bytes += node[r].cross_node_bytes;
  }
  // Not trivially equal: the experts (and the router, through the gates) got gradients.
  EXPECT_GT(*std::max_element(node[0].grads.begin(), node[0].grads.end()), 0.0f);
  // Three experts per token on at most topk_group of two nodes: some share a node, so the
  // deduplicated rows outweigh the route entries and gate gradients at this width.
  EXPECT_GT(flat_bytes, 0);
  EXPECT_LT(node_bytes, flat_bytes);
}

TEST_P(MoeNodeDispatch, InterleavedEqualsSequentialBitForBit) {
  const std::vector<Outcome> sequential = RunAll(true, false, GetParam());
  const std::vector<Outcome> interleaved = RunAll(true, true, GetParam());
  for (int r = 0; r < kEp; ++r) {
    EXPECT_TRUE(sequential[r] == interleaved[r]) << "rank " << r;
    EXPECT_NE(sequential[r].y0, sequential[r].y1);
  }
}

INSTANTIATE_TEST_SUITE_P(TopkGroup, MoeNodeDispatch, ::testing::Values(1, 2));

TEST(MoeNodeDispatchPieces, EachExchangeIsItsOwnPiece) {
  ParamTable table;
  MoeBlock block(table, Config(1), "layers.0.", kEp, 1, nullptr);
  block.set_nodes(kRanksPerNode, true);
  auto communicating = [](const std::vector<BlockPiece>& list) {
    std::vector<std::string> names;
    for (const BlockPiece& p : list) {
      if (p.communicates) names.push_back(p.name);
    }
    return names;
  };
  EXPECT_EQ(communicating(block.pieces().forward),
            (std::vector<std::string>{"route", "dispatch", "dispatch routes",
                                      "dispatch within node", "combine within node", "combine"}));
  EXPECT_EQ(communicating(block.pieces().backward_input),
            (std::vector<std::string>{"dispatch grads", "dispatch grads within node",
                                      "return gate grads", "combine grads within node",
                                      "combine grads"}));
  EXPECT_TRUE(communicating(block.pieces().backward_weight).empty());
  EXPECT_THROW(block.set_nodes(3, true), std::logic_error);  // 3 does not divide ep 4
}

}  // namespace
}  // namespace tessera::trainer

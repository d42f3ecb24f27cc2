// Blocks in pieces: with two micro-batches in flight, running one's forward pieces interleaved
// with the other's backward pieces (as the overlapped FB instruction will), or the phases one
// after the other (F(0) F(1) B(0) W(0) B(1) W(1)), gives exactly, bit for bit, what one
// micro-batch at a time gives (F(0) B(0) W(0) F(1) B(1) W(1)). Checked for every block kind in one process
// and for the MoE block under expert parallelism over the fake communicator (its exchanges then
// really are in flight while the other micro-batch's pieces run). Also: the piece lists name
// their communication, and a block's arena measure equals what it carves. With precision fp8 the
// two micro-batches share one workspace for their transient buffers (the fp32 values of what
// fp8 keeps in fp8), as a model's contexts do: a buffer kept from one piece to the next there
// would be overwritten by the other micro-batch's pieces and break the equality.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cpu_backend.h"
#include "parallel/fake_comm.h"
#include "trainer/layers/attention_block.h"
#include "trainer/layers/dense_ffn_block.h"
#include "trainer/layers/mla_attention_block.h"
#include "trainer/layers/moe_block.h"
#include "trainer/param_table.h"
#include "trainer/rng.h"

namespace tessera::trainer {
namespace {

ModelConfig Config() {
  ModelConfig c;
  c.vocab_size = 16;
  c.dim = 16;
  c.n_heads = 2;
  c.inter_dim = 24;
  c.moe_inter_dim = 8;
  c.n_experts = 8;
  c.n_shared_experts = 1;
  c.top_k = 3;
  c.n_group = 4;
  c.topk_group = 2;
  c.seq_aux_alpha = 0.02;
  c.init_std = 0.3;
  return c;
}

enum class Kind { kAttention, kMla, kDense, kMoe };

std::unique_ptr<Block> MakeBlock(Kind kind, ParamTable& table, const ModelConfig& config, int ep,
                                 int ep_rank, parallel::Comm* ep_comm) {
  switch (kind) {
    case Kind::kAttention: return std::make_unique<AttentionBlock>(table, config, "layers.0.");
    case Kind::kMla: {
      ModelConfig mla = config;
      mla.attention = "mla";
      mla.q_lora_rank = 6;
      return std::make_unique<MlaAttentionBlock>(table, mla, "layers.0.");
    }
    case Kind::kDense: return std::make_unique<DenseFfnBlock>(table, config, "layers.0.");
    case Kind::kMoe:
      return std::make_unique<MoeBlock>(table, config, "layers.0.", ep, ep_rank, ep_comm);
  }
  return nullptr;
}

std::vector<float> Random(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.normal());
  return v;
}

struct Outcome {
  std::vector<float> y0, y1, dx0, dx1, grads;
  bool operator==(const Outcome&) const = default;
};

enum class Order {
  kOneAtATime,  // F(0) B(0) W(0) F(1) B(1) W(1): nothing in flight together
  kPhases,      // F(0) F(1) B(0) W(0) B(1) W(1): two in flight, phase by phase
  kInterleaved  // F(0), then F(1) with B(0) piece by piece, then W(0) with B(1), then W(1)
};

// Two micro-batches through one block, in `order`.
Outcome RunTwoMicroBatches(Kind kind, Order order, kernels::Precision precision, int ep = 1,
                           int ep_rank = 0, parallel::Comm* ep_comm = nullptr) {
  ModelConfig config = Config();
  config.block_precision = precision;
  kernels::CpuBackend cpu;
  ParamTable table;
  std::unique_ptr<Block> block = MakeBlock(kind, table, config, ep, ep_rank, ep_comm);
  table.finalize(cpu);
  table.init(3, config.init_std);
  const MicroBatchInfo mb{2, 9, true, 0.25};
  const int64_t n = mb.tokens() * config.dim;
  // Each EP rank routes its own tokens.
  const std::vector<float> x0 = Random(n, 10 + ep_rank), x1 = Random(n, 20 + ep_rank);
  const std::vector<float> dy0 = Random(n, 30 + ep_rank), dy1 = Random(n, 40 + ep_rank);
  Outcome out;
  out.y0.resize(n), out.y1.resize(n), out.dx0.resize(n), out.dx1.resize(n);
  std::unique_ptr<BlockContext> c0 = block->NewContext(), c1 = block->NewContext();
  ActivationArena a0(cpu, block->ArenaBytes(mb, cpu.device()));
  ActivationArena a1(cpu, block->ArenaBytes(mb, cpu.device()));
  ActivationArena workspace(cpu, block->WorkspaceBytes(mb, cpu.device()));
  a0.attach_workspace(&workspace);
  a1.attach_workspace(&workspace);
  block->Prepare(*c0, a0, mb);
  block->Prepare(*c1, a1, mb);

  const BlockPieces& p = block->pieces();
  auto alternate = [](const std::vector<BlockPiece>& a, BlockContext& ca,
                      const std::vector<BlockPiece>& b, BlockContext& cb) {
    for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
      if (i < a.size()) a[i].run(ca);
      if (i < b.size()) b[i].run(cb);
    }
  };
  auto run = [](const std::vector<BlockPiece>& list, BlockContext& c) {
    for (const BlockPiece& piece : list) piece.run(c);
  };
  block->BeginForward(*c0, x0.data(), out.y0.data());
  block->BeginForward(*c1, x1.data(), out.y1.data());
  block->BeginBackward(*c0, dy0.data(), out.dx0.data());
  block->BeginBackward(*c1, dy1.data(), out.dx1.data());
  run(p.forward, *c0);
  switch (order) {
    case Order::kOneAtATime:
      run(p.backward_input, *c0);
      run(p.backward_weight, *c0);
      run(p.forward, *c1);
      run(p.backward_input, *c1);
      break;
    case Order::kPhases:
      run(p.forward, *c1);
      run(p.backward_input, *c0);
      run(p.backward_weight, *c0);
      run(p.backward_input, *c1);
      break;
    case Order::kInterleaved:
      alternate(p.forward, *c1, p.backward_input, *c0);
      alternate(p.backward_weight, *c0, p.backward_input, *c1);
      break;
  }
  run(p.backward_weight, *c1);
  const float* g = table.grads().data<float>();
  out.grads.assign(g, g + table.padded_numel());
  return out;
}

class BlockPiecesTest
    : public ::testing::TestWithParam<std::tuple<Kind, kernels::Precision>> {};

TEST_P(BlockPiecesTest, InterleavedEqualsSequentialBitForBit) {
  const auto [kind, precision] = GetParam();
  const Outcome sequential = RunTwoMicroBatches(kind, Order::kOneAtATime, precision);
  EXPECT_TRUE(sequential == RunTwoMicroBatches(kind, Order::kPhases, precision));
  EXPECT_TRUE(sequential == RunTwoMicroBatches(kind, Order::kInterleaved, precision));
  // Not trivially equal: the micro-batches differ and produced gradients.
  EXPECT_NE(sequential.y0, sequential.y1);
  EXPECT_GT(*std::max_element(sequential.grads.begin(), sequential.grads.end()), 0.0f);
}

std::string CaseName(const ::testing::TestParamInfo<std::tuple<Kind, kernels::Precision>>& info) {
  const char* kind = "Unknown";
  switch (std::get<0>(info.param)) {
    case Kind::kAttention: kind = "Attention"; break;
    case Kind::kMla: kind = "Mla"; break;
    case Kind::kDense: kind = "DenseFfn"; break;
    case Kind::kMoe: kind = "Moe"; break;
  }
  return std::string(kind) + "_" + kernels::precision_name(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(Kinds, BlockPiecesTest,
                         ::testing::Combine(::testing::Values(Kind::kAttention, Kind::kMla,
                                                              Kind::kDense, Kind::kMoe),
                                            ::testing::Values(kernels::Precision::kF32,
                                                              kernels::Precision::kFP8)),
                         CaseName);

// Under EP the exchanges of one micro-batch are in flight while the other's pieces run.
TEST(BlockPieces, MoeUnderExpertParallelismInterleavedEqualsSequential) {
  constexpr int kEp = 2;
  std::vector<Outcome> sequential(kEp), phases(kEp), interleaved(kEp);
  for (kernels::Precision precision : {kernels::Precision::kF32, kernels::Precision::kFP8}) {
    SCOPED_TRACE(kernels::precision_name(precision));
    for (auto [order, out] : {std::pair{Order::kOneAtATime, &sequential},
                              std::pair{Order::kPhases, &phases},
                              std::pair{Order::kInterleaved, &interleaved}}) {
      parallel::run_fake_ranks(kEp, [&, order = order, out = out](parallel::Comm& ep) {
        (*out)[ep.rank()] = RunTwoMicroBatches(Kind::kMoe, order, precision, kEp, ep.rank(), &ep);
      });
    }
    for (int r = 0; r < kEp; ++r) {
      EXPECT_TRUE(sequential[r] == phases[r]) << "EP rank " << r;
      EXPECT_TRUE(sequential[r] == interleaved[r]) << "EP rank " << r;
    }
  }
}

TEST(BlockPieces, MoeNamesItsExchangesOnlyUnderExpertParallelism) {
  const ModelConfig config = Config();
  ParamTable one, two;
  MoeBlock local(one, config, "layers.0.");
  MoeBlock sliced(two, config, "layers.0.", /*ep=*/2, /*ep_rank=*/1, /*ep_comm=*/nullptr);
  auto communicating = [](const std::vector<BlockPiece>& list) {
    std::vector<std::string> names;
    for (const BlockPiece& p : list) {
      if (p.communicates) names.push_back(p.name);
    }
    return names;
  };
  EXPECT_TRUE(communicating(local.pieces().forward).empty());
  EXPECT_EQ(communicating(sliced.pieces().forward),
            (std::vector<std::string>{"route", "dispatch", "combine"}));
  EXPECT_EQ(communicating(sliced.pieces().backward_input),
            (std::vector<std::string>{"dispatch grads", "combine grads"}));
  EXPECT_TRUE(communicating(sliced.pieces().backward_weight).empty());
}

// A described block (no backend) can be measured; a real arena of that size fits its carving.
TEST(BlockPieces, ArenaMeasureMatchesTheCarving) {
  const ModelConfig config = Config();
  kernels::CpuBackend cpu;
  ParamTable table;
  MoeBlock moe(table, config, "layers.0.", /*ep=*/2, /*ep_rank=*/0, nullptr);
  const MicroBatchInfo mb{3, 7, true, 0.1};
  const int64_t bytes = moe.ArenaBytes(mb, kernels::Device::kCPU);
  EXPECT_GT(bytes, 0);
  ActivationArena arena(cpu, static_cast<size_t>(bytes));
  std::unique_ptr<BlockContext> ctx = moe.NewContext();
  moe.Prepare(*ctx, arena, mb);
  EXPECT_EQ(static_cast<int64_t>(arena.used()), bytes);
  // One more buffer does not fit: the overflow is an error, not a silent write.
  EXPECT_THROW(arena.take<float>(static_cast<int64_t>(arena.capacity())), std::logic_error);
}

}  // namespace
}  // namespace tessera::trainer

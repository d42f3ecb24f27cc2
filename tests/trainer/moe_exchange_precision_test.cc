// The MoE block's wire precision (moe_block.h, parallel/row_codec.h): with precision fp8 the
// forward dispatches e4m3 rows with power-of-two scales and combines bf16; bf16 sends bf16 both
// ways; the backward sends the dispatch grads as the dispatch, the combine grads bf16 with fp8 and
// fp32 otherwise (node-aware: the across-node dy rows and partial sums fp32). Rows are rounded the
// same way in every layout, so the forward outputs, input gradients and expert weight gradients of
// one process (nothing moves) equal those of ep = 2, flat ep = 4 and node-aware dispatch (4 ranks
// as 2 nodes x 2) up to GEMM blocking and float summation order (not bit for bit: the CPU GEMMs
// block by the number of rows); an FB-style interleaving of two micro-batches' pieces equals the
// sequential run bit for bit; take_exchange_bytes() reports the rows sent to other ranks times
// their wire size.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cpu_backend.h"
#include "parallel/fake_comm.h"
#include "parallel/row_codec.h"
#include "tests/trainer/two_micro_batch_pieces.h"
#include "trainer/layers/moe_block.h"
#include "trainer/param_table.h"
#include "trainer/rng.h"

namespace tessera::trainer {
namespace {

constexpr int64_t kSeq = 6, kSeqsPerRank = 1;

ModelConfig Config(kernels::Precision precision, int64_t dim, int64_t n_group) {
  ModelConfig c;
  c.dim = dim;
  c.moe_inter_dim = 32;
  c.n_experts = 8;
  c.n_shared_experts = 1;
  c.top_k = 3;
  c.n_group = n_group;
  c.topk_group = n_group;
  c.route_scale = 2.5;
  c.seq_aux_alpha = 0.0;
  c.init_std = 0.3;
  c.block_precision = precision;
  return c;
}

std::vector<float> Random(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(rng.normal());
  return v;
}

struct Outcome {
  std::vector<float> y0, y1, dx0, dx1;
  std::vector<float> dw1, dw3, dw2;  // this rank's experts' weight gradients (both micro-batches)
  MoeBlock::ExchangeBytes bytes;
  int64_t off_rank_slots = 0;  // (token, expert) slots of mb 0 and 1 whose expert is elsewhere
  // Node-aware: (token, node) pairs of mb 0 and 1 whose node is not this rank's (stage-1 rows
  // sent across nodes; with 2 ranks per node the rail peer is another rank).
  int64_t off_node_pairs = 0;
};

// Inputs of the whole group: `sequences` sequences of kSeq tokens; rank r takes its slice.
struct Inputs {
  std::vector<float> x0, x1, dy0, dy1;
};
Inputs MakeInputs(int64_t sequences, int64_t dim) {
  const int64_t n = sequences * kSeq * dim;
  return {Random(n, 10), Random(n, 20), Random(n, 30), Random(n, 40)};
}

// One rank's block over two micro-batches (its slice of the inputs): sequentially, or the
// second's forward interleaved piece by piece with the first's backward (the FB instruction).
Outcome Run(parallel::Comm* ep, int ep_size, int ep_rank, int ranks_per_node, bool node_aware,
            const ModelConfig& config, const Inputs& in, bool interleaved) {
  kernels::CpuBackend cpu;
  ParamTable table;
  MoeBlock block(table, config, "layers.0.", ep_size, ep_rank, ep);
  if (ep_size > 1) block.set_nodes(ranks_per_node, node_aware);
  table.finalize(cpu);
  table.init(3, config.init_std);
  const int64_t seqs = ep_size == 1 ? static_cast<int64_t>(in.x0.size()) / (kSeq * config.dim)
                                    : kSeqsPerRank;
  const MicroBatchInfo mb{seqs, kSeq, true, 0.25};
  const int64_t n = mb.tokens() * config.dim, first = ep_size == 1 ? 0 : ep_rank * n;
  auto slice = [&](const std::vector<float>& v) {
    return std::vector<float>(v.begin() + first, v.begin() + first + n);
  };
  const std::vector<float> x0 = slice(in.x0), x1 = slice(in.x1), dy0 = slice(in.dy0),
                           dy1 = slice(in.dy1);
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
  const int64_t per_rank = config.n_experts / ep_size;
  for (const BlockContext* c : {c0.get(), c1.get()}) {
    const int32_t* idx = block.routing(*c);
    for (int64_t s = 0; s < mb.tokens() * config.top_k; ++s) {
      out.off_rank_slots += idx[s] / per_rank != ep_rank;
    }
  }
  if (node_aware) {
    const int64_t experts_per_node = config.n_experts / (ep_size / ranks_per_node);
    const int64_t my_node = ep_rank / ranks_per_node;
    for (const BlockContext* c : {c0.get(), c1.get()}) {
      const int32_t* idx = block.routing(*c);
      for (int64_t t = 0; t < mb.tokens(); ++t) {
        std::vector<bool> seen(ep_size / ranks_per_node, false);
        for (int64_t j = 0; j < config.top_k; ++j) {
          const int64_t node = idx[t * config.top_k + j] / experts_per_node;
          if (node != my_node && !seen[node]) ++out.off_node_pairs;
          seen[node] = true;
        }
      }
    }
  }
  for (const auto& [name, field] : {std::pair{"w1", &Outcome::dw1}, std::pair{"w3", &Outcome::dw3},
                                    std::pair{"w2", &Outcome::dw2}}) {
    const int i = table.index("layers.0.moe.experts." + std::string(name));
    const float* g = table.grad_ptr(i);
    out.*field = std::vector<float>(g, g + table.descs()[i].numel());
  }
  out.bytes = block.take_exchange_bytes();
  const MoeBlock::ExchangeBytes again = block.take_exchange_bytes();
  EXPECT_EQ(again.dispatch + again.combine + again.dispatch_grads + again.combine_grads, 0);
  return out;
}

// The ranks' outcomes; ep_size = 1 runs the whole group's tokens in one process.
std::vector<Outcome> RunGroup(int ep_size, int ranks_per_node, bool node_aware,
                              const ModelConfig& config, const Inputs& in, bool interleaved) {
  if (ep_size == 1) return {Run(nullptr, 1, 0, 1, false, config, in, interleaved)};
  std::vector<Outcome> out(ep_size);
  parallel::run_fake_ranks(ep_size, [&](parallel::Comm& ep) {
    out[ep.rank()] = Run(&ep, ep_size, ep.rank(), ranks_per_node, node_aware, config, in,
                         interleaved);
  });
  return out;
}

// The ranks' pieces of a tensor, concatenated in rank order.
std::vector<float> Join(const std::vector<Outcome>& o, std::vector<float> Outcome::*field) {
  std::vector<float> all;
  for (const Outcome& r : o) all.insert(all.end(), (r.*field).begin(), (r.*field).end());
  return all;
}

double RelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double{a[i]} - b[i]));
    scale = std::max(scale, std::abs(double{b[i]}));
  }
  return diff / scale;
}

// Fraction of elements with |a - b| > 1e-5 max(1, max |b|). Layouts differ by GEMM blocking and
// summation order (~1e-7), which rarely moves a value across a bf16/fp8 rounding boundary; a
// layout that rounded a row differently (or not at all) would move nearly every element by
// ~1e-3 of its size.
double Mismatched(const std::vector<float>& a, const std::vector<float>& b) {
  double scale = 1;
  for (float v : b) scale = std::max(scale, std::abs(double{v}));
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += std::abs(double{a[i]} - b[i]) > 1e-5 * scale;
  return static_cast<double>(n) / static_cast<double>(a.size());
}

// Equal up to GEMM blocking and summation order (see Mismatched).
void ExpectSameRounding(const std::vector<float>& got, const std::vector<float>& want,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_LT(Mismatched(got, want), 0.01) << what << ": max rel diff " << RelDiff(got, want);
  EXPECT_LT(RelDiff(got, want), 1e-3) << what;
}

// Expert weight gradients: as ExpectSameRounding, except in fp8, where the wgrad GEMM quantises
// its operands in 128x1 tiles along the tokens OF EACH SEGMENT (kernels/cpu_backend.cc
// linear_backward_weight): a layout with one segment per (source, expert) picks other tile scales
// than one process's one segment per expert, so the fp8 weight gradients differ by the GEMM's
// own quantisation (a few % of their size) whatever the exchanges do. The exchanges' rounding of
// the rows the experts see is pinned down by the input gradients (dgrad quantises row by row).
void ExpectSameWeightGrads(const std::vector<float>& got, const std::vector<float>& want,
                           kernels::Precision precision, const std::string& what) {
  if (precision != kernels::Precision::kFP8) return ExpectSameRounding(got, want, what);
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_LT(RelDiff(got, want), 0.1) << what;
}

// The fields an equality of layouts compares.
constexpr std::vector<float> Outcome::* kActivations[] = {&Outcome::y0, &Outcome::y1,
                                                          &Outcome::dx0, &Outcome::dx1};
constexpr std::vector<float> Outcome::* kWeightGrads[] = {&Outcome::dw1, &Outcome::dw3,
                                                          &Outcome::dw2};

class MoeExchangePrecision : public ::testing::TestWithParam<kernels::Precision> {};

TEST_P(MoeExchangePrecision, OneProcessEqualsEp2) {
  const ModelConfig config = Config(GetParam(), 160, 1);  // 160: a full and a ragged fp8 tile
  const Inputs in = MakeInputs(2 * kSeqsPerRank, config.dim);
  const std::vector<Outcome> one = RunGroup(1, 1, false, config, in, false);
  const std::vector<Outcome> two = RunGroup(2, 2, false, config, in, false);
  for (auto field : kActivations) {
    ExpectSameRounding(Join(two, field), one[0].*field, "ep 2 vs one process");
  }
  for (auto field : kWeightGrads) {
    ExpectSameWeightGrads(Join(two, field), one[0].*field, GetParam(), "ep 2 vs one process dW");
  }
  EXPECT_NE(one[0].y0, one[0].y1);
  // Bytes: rows sent to the other rank in the wire formats (one process sends nothing).
  const int64_t D = config.dim;
  const parallel::RowFormat dispatch = GetParam() == kernels::Precision::kFP8
                                           ? parallel::RowFormat::kFp8
                                       : GetParam() == kernels::Precision::kBF16
                                           ? parallel::RowFormat::kBf16
                                           : parallel::RowFormat::kFp32;
  const parallel::RowFormat combine = GetParam() == kernels::Precision::kF32
                                          ? parallel::RowFormat::kFp32
                                          : parallel::RowFormat::kBf16;
  const parallel::RowFormat combine_grads = GetParam() == kernels::Precision::kFP8
                                                ? parallel::RowFormat::kBf16
                                                : parallel::RowFormat::kFp32;
  EXPECT_EQ(one[0].bytes.dispatch + one[0].bytes.combine + one[0].bytes.dispatch_grads +
                one[0].bytes.combine_grads, 0);
  for (int r = 0; r < 2; ++r) {
    // My rows for the other rank's experts go out; the outputs of its rows for mine go back.
    const int64_t out = two[r].off_rank_slots, back = two[1 - r].off_rank_slots;
    EXPECT_GT(out, 0);
    EXPECT_EQ(two[r].bytes.dispatch, out * parallel::row_bytes(dispatch, D)) << "rank " << r;
    EXPECT_EQ(two[r].bytes.combine, back * parallel::row_bytes(combine, D)) << "rank " << r;
    // The backward: output gradients out as the dispatch, input gradients back (fp8: bf16).
    EXPECT_EQ(two[r].bytes.dispatch_grads, out * parallel::row_bytes(dispatch, D)) << "rank " << r;
    EXPECT_EQ(two[r].bytes.combine_grads, back * parallel::row_bytes(combine_grads, D))
        << "rank " << r;
  }
  if (GetParam() == kernels::Precision::kFP8) {  // 160 + 2 scales x 4 bytes vs 640
    EXPECT_EQ(parallel::row_bytes(dispatch, D), 168);
    EXPECT_EQ(parallel::row_bytes(combine, D), 320);
  }
}

TEST_P(MoeExchangePrecision, NodeAwareEqualsOneProcessUpToSummationOrder) {
  const ModelConfig config = Config(GetParam(), 160, 2);
  const Inputs in = MakeInputs(4 * kSeqsPerRank, config.dim);
  const std::vector<Outcome> one = RunGroup(1, 1, false, config, in, false);
  const std::vector<Outcome> node = RunGroup(4, 2, true, config, in, false);
  const std::vector<Outcome> flat = RunGroup(4, 2, false, config, in, false);
  for (auto field : kActivations) {
    ExpectSameRounding(Join(flat, field), one[0].*field, "flat ep 4 vs one process");
    // A bf16 rounding of the node partials (not in the flat path), or an fp8 rounding of the
    // ungated dy rows before the forwarder gates them, would fail this.
    ExpectSameRounding(Join(node, field), one[0].*field, "node-aware ep 4 vs one process");
  }
  for (auto field : kWeightGrads) {
    ExpectSameWeightGrads(Join(flat, field), one[0].*field, GetParam(), "flat ep 4 dW");
    ExpectSameWeightGrads(Join(node, field), one[0].*field, GetParam(), "node-aware ep 4 dW");
  }
  // Node-aware bytes: each exchange's per-expert rows travel as the flat path's (forward and
  // backward alike), the across-node dy rows and partial sums in fp32. So the combine grads equal
  // the combine where both have the same format (fp32, fp8: bf16), and else (bf16: fp32 combine
  // grads) the fp32 run's combine (the routing, an fp32 router's on the same inputs, is the
  // same); the dispatch grads differ from the dispatch only by the stage-1 rows sent across
  // nodes (fp32 dy instead of the dispatch's format).
  const std::vector<Outcome> node_fp32 =
      GetParam() == kernels::Precision::kBF16
          ? RunGroup(4, 2, true, Config(kernels::Precision::kF32, 160, 2), in, false)
          : node;
  const int64_t D = config.dim;
  const parallel::RowFormat dispatch = GetParam() == kernels::Precision::kFP8
                                           ? parallel::RowFormat::kFp8
                                       : GetParam() == kernels::Precision::kBF16
                                           ? parallel::RowFormat::kBf16
                                           : parallel::RowFormat::kFp32;
  for (int r = 0; r < 4; ++r) {
    EXPECT_GT(node[r].off_node_pairs, 0) << "rank " << r;
    EXPECT_GT(node[r].bytes.combine_grads, 0) << "rank " << r;
    EXPECT_EQ(node_fp32[r].off_rank_slots, node[r].off_rank_slots) << "rank " << r;
    EXPECT_EQ(node[r].bytes.combine_grads, node_fp32[r].bytes.combine) << "rank " << r;
    EXPECT_EQ(node[r].bytes.dispatch_grads - node[r].bytes.dispatch,
              node[r].off_node_pairs *
                  (parallel::row_bytes(parallel::RowFormat::kFp32, D) -
                   parallel::row_bytes(dispatch, D)))
        << "rank " << r;
    // Flat: the backward sends the forward's rows back the other way.
    EXPECT_EQ(flat[r].bytes.dispatch_grads, flat[r].bytes.dispatch) << "rank " << r;
    if (GetParam() != kernels::Precision::kBF16) {
      EXPECT_EQ(flat[r].bytes.combine_grads, flat[r].bytes.combine) << "rank " << r;
    } else {  // fp32 combine grads: twice the bf16 combine
      EXPECT_EQ(flat[r].bytes.combine_grads, 2 * flat[r].bytes.combine) << "rank " << r;
    }
  }
}

TEST_P(MoeExchangePrecision, InterleavedEqualsSequentialBitForBit) {
  for (const bool node_aware : {false, true}) {
    const ModelConfig config = Config(GetParam(), 160, 2);
    const Inputs in = MakeInputs(4 * kSeqsPerRank, config.dim);
    const std::vector<Outcome> seq = RunGroup(4, 2, node_aware, config, in, false);
    const std::vector<Outcome> inter = RunGroup(4, 2, node_aware, config, in, true);
    for (auto field : {&Outcome::y0, &Outcome::y1, &Outcome::dx0, &Outcome::dx1, &Outcome::dw1,
                       &Outcome::dw3, &Outcome::dw2}) {
      EXPECT_TRUE(Join(seq, field) == Join(inter, field)) << "node_aware " << node_aware;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Precision, MoeExchangePrecision,
                         ::testing::Values(kernels::Precision::kF32, kernels::Precision::kBF16,
                                           kernels::Precision::kFP8),
                         [](const auto& info) {
                           return std::string(kernels::precision_name(info.param));
                         });

// The wire formats follow the block precision (V3: fp8 dispatch, bf16 combine; the backward
// alike, except bf16's fp32 combine grads).
TEST(MoeExchangePrecisionFormats, FromTheBlockPrecision) {
  ParamTable table;
  MoeBlock fp8(table, Config(kernels::Precision::kFP8, 128, 1), "layers.0.");
  EXPECT_EQ(fp8.dispatch_format(), parallel::RowFormat::kFp8);
  EXPECT_EQ(fp8.combine_format(), parallel::RowFormat::kBf16);
  EXPECT_EQ(fp8.dispatch_grads_format(), parallel::RowFormat::kFp8);
  EXPECT_EQ(fp8.combine_grads_format(), parallel::RowFormat::kBf16);
  MoeBlock bf16(table, Config(kernels::Precision::kBF16, 128, 1), "layers.1.");
  EXPECT_EQ(bf16.dispatch_format(), parallel::RowFormat::kBf16);
  EXPECT_EQ(bf16.combine_format(), parallel::RowFormat::kBf16);
  EXPECT_EQ(bf16.dispatch_grads_format(), parallel::RowFormat::kBf16);
  EXPECT_EQ(bf16.combine_grads_format(), parallel::RowFormat::kFp32);  // moe_block.h: why
  MoeBlock fp32(table, Config(kernels::Precision::kF32, 128, 1), "layers.2.");
  EXPECT_EQ(fp32.dispatch_format(), parallel::RowFormat::kFp32);
  EXPECT_EQ(fp32.combine_format(), parallel::RowFormat::kFp32);
  EXPECT_EQ(fp32.dispatch_grads_format(), parallel::RowFormat::kFp32);
  EXPECT_EQ(fp32.combine_grads_format(), parallel::RowFormat::kFp32);
}

}  // namespace
}  // namespace tessera::trainer

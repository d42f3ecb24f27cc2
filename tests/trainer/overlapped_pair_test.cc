// The overlapped FB pair: the interleaving policy of chunk_steps.h on made-up steps, and
// Model::ChunkForwardBackward on a model whose MoE layer runs under expert parallelism over the
// fake communicator (its exchanges really are in flight while the other micro-batch's steps run):
// F(0) FB(1 | 0) B(1) W(1) equals F(0) F(1) B(0) W(0) B(1) W(1) bit for bit, on every rank.
#include <gtest/gtest.h>

#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cpu_backend.h"
#include "parallel/fake_comm.h"
#include "trainer/chunk_steps.h"
#include "trainer/model.h"
#include "trainer/rng.h"

namespace tessera::trainer {
namespace {

TEST(ChunkSteps, OverlapHandsOverAfterPostsAndBeforeWaitsKeepingEachOrder) {
  std::vector<std::string> ran;
  auto step = [&](const std::string& name, bool communicates, bool waits) {
    ChunkStep s{name, communicates, [&ran, name] { ran.push_back(name); }};
    s.waits = waits;
    return s;
  };
  const ChunkSteps backward = {step("b0", false, false), step("b1", true, false),
                               step("b2", false, false), step("b3", false, true),
                               step("b4", true, false),  step("b5", false, true)};
  const ChunkSteps forward = {step("f0", true, false), step("f1", false, false),
                              step("f2", false, true), step("f3", true, false),
                              step("f4", false, false)};
  std::vector<int> lists;
  run_overlapped(backward, forward,
                 [&](int list, const ChunkStep&, bool begin) {
                   if (begin) lists.push_back(list);
                 });
  // b1 posts: f0 runs; f0 posts: back to b2; b3 would wait: f1 runs; f2 waits but so does b3:
  // f2 runs; f3 posts, but b3 still waits and f4 does not: f4; then the backward finishes.
  EXPECT_EQ(ran, (std::vector<std::string>{"b0", "b1", "f0", "b2", "f1", "f2", "f3", "f4", "b3",
                                           "b4", "b5"}));
  EXPECT_EQ(lists, (std::vector<int>{0, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0}));
  ran.clear();
  run_steps(forward);
  EXPECT_EQ(ran, (std::vector<std::string>{"f0", "f1", "f2", "f3", "f4"}));
}

TEST(ChunkSteps, DeferredWeightStepsFillWhereBothListsWouldWait) {
  std::vector<std::string> ran;
  auto step = [&](const std::string& name, bool communicates, bool waits, char phase) {
    ChunkStep s{name, communicates, [&ran, name] { ran.push_back(name); }, phase};
    s.waits = waits;
    return s;
  };
  const ChunkSteps backward = {step("b0", false, false, 'B'), step("b1", true, false, 'B'),
                               step("w1", false, false, 'W'), step("b2", false, true, 'B'),
                               step("b3", true, false, 'B'),  step("b4", false, true, 'B'),
                               step("w4", false, false, 'W')};
  const ChunkSteps forward = {step("f0", true, false, 'F'), step("f1", false, true, 'F'),
                              step("f2", false, false, 'F')};
  run_overlapped(backward, forward);
  // w1 is deferred; when b2 and f1 both would wait it fills; w4 runs last.
  EXPECT_EQ(ran, (std::vector<std::string>{"b0", "b1", "f0", "w1", "b2", "b3", "f1", "f2", "b4",
                                           "w4"}));
}

ModelConfig Config() {
  ModelConfig c;
  c.vocab_size = 29;
  c.dim = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.inter_dim = 24;
  c.moe_inter_dim = 8;
  c.n_experts = 4;
  c.n_shared_experts = 1;
  c.top_k = 2;
  c.first_dense_layers = 1;
  c.seq_aux_alpha = 0.01;
  c.init_std = 0.3;
  return c;
}

struct PairRun {
  double loss0 = 0, loss1 = 0;
  std::vector<float> grads;
  std::vector<std::pair<int, int>> done;  // parameter ranges reported final, in order
  int switches = 0;                       // list changes inside the FB pair
};

// One rank's two micro-batches, overlapped (FB) or one phase after the other.
PairRun RunPair(parallel::Comm& ep, bool overlapped) {
  const ModelConfig config = Config();
  kernels::CpuBackend cpu;
  ModelPart part = ModelPart::whole(config);
  part.ep = ep.size();
  part.ep_rank = ep.rank();
  Model model(config, cpu, part, &ep);
  model.params().init(11, config.init_std);
  model.params().zero_grads();
  const int64_t batch = 2, seq = 9;
  Rng rng(5 + ep.rank());  // each rank its own tokens, as data-parallel replicas have
  std::vector<int32_t> tokens(2 * batch * (seq + 1));
  for (auto& t : tokens) t = static_cast<int32_t>(rng.next_u64() % config.vocab_size);
  const int32_t* t0 = tokens.data();
  const int32_t* t1 = tokens.data() + batch * (seq + 1);
  const LossScale scale{1.0 / (2 * batch * seq), 1.0 / (2 * batch)};
  auto a = model.NewChunkContext(0, batch, seq);
  auto b = model.NewChunkContext(0, batch, seq);
  PairRun run;
  const Model::ParamsDone done = [&](int first, int end) { run.done.push_back({first, end}); };
  run.loss0 = model.ChunkForward(*a, t0, scale, true, nullptr, nullptr).loss;
  if (overlapped) {
    int last = -1;
    run.loss1 = model
                    .ChunkForwardBackward(*b, t1, scale, nullptr, nullptr, *a, nullptr, nullptr,
                                          done,
                                          [&](int list, const ChunkStep&, bool begin) {
                                            if (begin && last >= 0 && list != last) {
                                              ++run.switches;
                                            }
                                            if (begin) last = list;
                                          })
                    .loss;
  } else {
    run.loss1 = model.ChunkForward(*b, t1, scale, true, nullptr, nullptr).loss;
    model.ChunkBackwardInput(*a, nullptr, nullptr);
    model.ChunkBackwardWeight(*a, done);
  }
  model.ChunkBackwardInput(*b, nullptr, nullptr);
  model.ChunkBackwardWeight(*b);
  ParamTable& p = model.params();
  run.grads.assign(p.grads().data<float>(), p.grads().data<float>() + p.padded_numel());
  return run;
}

TEST(OverlappedPair, ForwardBackwardEqualsForwardThenBackwardUnderExpertParallelism) {
  std::mutex mu;
  std::vector<std::string> failures;
  parallel::run_fake_ranks(2, [&](parallel::Comm& world) {
    const PairRun seq = RunPair(world, false);
    const PairRun fb = RunPair(world, true);
    std::string f;
    if (std::memcmp(&seq.loss0, &fb.loss0, sizeof(double)) != 0 ||
        std::memcmp(&seq.loss1, &fb.loss1, sizeof(double)) != 0) {
      f += "losses differ: " + std::to_string(seq.loss1) + " vs " + std::to_string(fb.loss1);
    }
    if (seq.grads.size() != fb.grads.size() ||
        std::memcmp(seq.grads.data(), fb.grads.data(), seq.grads.size() * sizeof(float)) != 0) {
      f += " gradients differ";
    }
    // The same parameter ranges are reported final (in the FB each block's weights finish
    // right after its input gradient: the same blocks, last first).
    if (seq.done != fb.done) f += " final-gradient reports differ";
    // Under EP the MoE exchanges make the pair switch lists several times.
    if (fb.switches < 4) f += " only " + std::to_string(fb.switches) + " switches";
    std::lock_guard<std::mutex> lock(mu);
    if (!f.empty()) failures.push_back("rank " + std::to_string(world.rank()) + ":" + f);
  });
  EXPECT_TRUE(failures.empty()) << failures.front();
}

}  // namespace
}  // namespace tessera::trainer

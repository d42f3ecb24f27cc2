#include "data/prepare_synthetic.h"

#include <gtest/gtest.h>

#include <cmath>
#include <unordered_map>
#include <vector>

#include "data/dataset_writer.h"
#include "data/manifest.h"
#include "data/split_reader.h"
#include "tests/data/data_test_util.h"

namespace tessera::data {
namespace {

using testing::ScratchDir;

// Plug-in estimate of H(X_t | X_{t-K..t-1}) in nats from a token stream.
double empirical_conditional_entropy(const std::vector<uint32_t>& x, int order, uint64_t vocab) {
  std::unordered_map<uint64_t, std::unordered_map<uint32_t, uint64_t>> counts;
  uint64_t states = 1;
  for (int k = 0; k < order; ++k) states *= vocab;
  uint64_t context = 0;
  for (int k = 0; k < order; ++k) context = context * vocab + x[static_cast<size_t>(k)];
  for (size_t t = static_cast<size_t>(order); t < x.size(); ++t) {
    ++counts[context][x[t]];
    context = (context * vocab + x[t]) % states;
  }
  const double n = static_cast<double>(x.size() - static_cast<size_t>(order));
  double h = 0;
  for (const auto& [ctx, next] : counts) {
    uint64_t total = 0;
    for (const auto& [token, c] : next) total += c;
    for (const auto& [token, c] : next) {
      h -= static_cast<double>(c) / n * std::log(static_cast<double>(c) / static_cast<double>(total));
    }
  }
  return h;
}

PrepareSyntheticOptions options(const ScratchDir& scratch, int64_t vocab, int64_t order, uint64_t tokens) {
  PrepareSyntheticOptions o;
  o.chain.vocab = vocab;
  o.chain.order = order;
  o.chain.seed = 17;
  o.tokens = tokens;
  o.out_dir = scratch / "ds";
  return o;
}

void expect_entropy_matches(int64_t vocab, int64_t order) {
  ScratchDir scratch;
  const PrepareSyntheticOptions o = options(scratch, vocab, order, 2'000'000);
  prepare_synthetic(o);
  const Manifest m = read_manifest(o.out_dir);
  ASSERT_TRUE(m.entropy_rate_nats.has_value());
  const double floor = *m.entropy_rate_nats;
  EXPECT_LT(floor, 0.6 * std::log(static_cast<double>(vocab)));  // well below log V
  std::vector<uint32_t> stream = read_split_tokens(o.out_dir, kTrainSplit);
  const std::vector<uint32_t> validation = read_split_tokens(o.out_dir, kValidationSplit);
  stream.insert(stream.end(), validation.begin(), validation.end());
  ASSERT_EQ(stream.size(), 2'000'000u);
  const double empirical = empirical_conditional_entropy(stream, static_cast<int>(order), vocab);
  EXPECT_NEAR(empirical, floor, 0.01 * floor) << "vocab " << vocab << " order " << order;
}

TEST(PrepareSynthetic, EmpiricalEntropyMatchesManifestOrder1) { expect_entropy_matches(64, 1); }
TEST(PrepareSynthetic, EmpiricalEntropyMatchesManifestOrder3) { expect_entropy_matches(8, 3); }

TEST(PrepareSynthetic, WritesTheDocumentedManifest) {
  ScratchDir scratch;
  PrepareSyntheticOptions o = options(scratch, 64, 1, 2'000'000);
  o.shard_tokens = 1 << 19;
  const PrepareSummary summary = prepare_synthetic(o);
  const Manifest m = read_manifest(o.out_dir);
  EXPECT_EQ(m.tokenizer, "synthetic");
  EXPECT_EQ(m.vocab_size, 64);
  EXPECT_EQ(m.dtype, TokenDtype::kUint16);
  ASSERT_TRUE(m.synthetic.has_value());
  EXPECT_EQ(m.synthetic->order, 1);
  EXPECT_EQ(m.synthetic->seed, 17u);
  EXPECT_EQ(*m.entropy_rate_nats, m.synthetic->entropy_rate_nats);
  EXPECT_EQ(*m.entropy_rate_nats, *summary.entropy_rate_nats);
  EXPECT_EQ(m.split(kValidationSplit, "").tokens(), 100'000u);  // 5% tail
  EXPECT_EQ(m.split(kTrainSplit, "").tokens(), 1'900'000u);
  EXPECT_EQ(summary.shards, m.split(kTrainSplit, "").shards.size() + m.split(kValidationSplit, "").shards.size());
  EXPECT_EQ(m.split(kTrainSplit, "").shards.size(), 4u);  // ceil(1.9M / 512Ki)
}

TEST(PrepareSynthetic, LargeVocabularyUsesUint32AndFollowsTheChain) {
  ScratchDir scratch;
  PrepareSyntheticOptions o = options(scratch, 70000, 1, 20000);
  o.chain.support = 3;
  prepare_synthetic(o);
  const Manifest m = read_manifest(o.out_dir);
  EXPECT_EQ(m.dtype, TokenDtype::kUint32);
  const std::vector<uint32_t> train = read_split_tokens(o.out_dir, kTrainSplit);
  ASSERT_EQ(train.size(), 19000u);
  // Every transition is one the chain allows (same spec, same chain).
  const MarkovChain chain(o.chain);
  for (size_t t = 1; t < train.size(); ++t) {
    const auto support = chain.next_tokens(train[t - 1]);
    ASSERT_NE(std::find(support.begin(), support.end(), train[t]), support.end()) << "t " << t;
  }
}

TEST(DatasetWriter, ReadReturnsExactlyTheTokensWritten) {
  for (const int64_t vocab : {300, 100000}) {
    ScratchDir scratch;
    DatasetWriterOptions o;
    o.dir = scratch / "ds";
    o.vocab_size = vocab;
    o.shard_tokens = 1000;
    DatasetWriter writer(o);
    Rng rng(static_cast<uint64_t>(vocab));
    std::vector<uint32_t> expected[2];
    for (int piece = 0; piece < 40; ++piece) {
      const Split split = rng.below(4) == 0 ? Split::kValidation : Split::kTrain;
      std::vector<uint32_t> tokens(rng.below(300));
      for (uint32_t& t : tokens) t = static_cast<uint32_t>(rng.below(static_cast<uint64_t>(vocab)));
      tokens.push_back(static_cast<uint32_t>(vocab - 1));  // the largest id survives narrowing
      writer.append(split, tokens, true);
      auto& e = expected[static_cast<int>(split)];
      e.insert(e.end(), tokens.begin(), tokens.end());
    }
    Manifest base;
    base.tokenizer = "byte";
    const Manifest m = writer.finish(base);
    EXPECT_EQ(m.dtype, vocab <= 65536 ? TokenDtype::kUint16 : TokenDtype::kUint32);
    EXPECT_EQ(read_split_tokens(o.dir, kTrainSplit), expected[0]) << "vocab " << vocab;
    EXPECT_EQ(read_split_tokens(o.dir, kValidationSplit), expected[1]) << "vocab " << vocab;
  }
}

}  // namespace
}  // namespace tessera::data

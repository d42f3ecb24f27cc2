// The loader's contract (data/loader.h): sample content and order, replica independence, state
// save/restore, epoch roll-over, prefetch, validation order.
#include "data/loader.h"

#include <gtest/gtest.h>

#include <vector>

#include "data/dataset_writer.h"
#include "data/random.h"
#include "data/sample_order.h"
#include "data/split_reader.h"
#include "tests/data/data_test_util.h"

namespace tessera::data {
namespace {

using testing::ScratchDir;

constexpr int64_t kVocab = 5000;
constexpr int64_t kSeqLen = 16;

// A dataset of random tokens: train 4001 tokens (250 samples of 16), validation 801 (50), in
// shards of 300 tokens so that samples straddle shard boundaries.
class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DatasetWriterOptions o;
    o.dir = dir();
    o.vocab_size = kVocab;
    o.shard_tokens = 300;
    DatasetWriter writer(o);
    Rng rng(99);
    for (const auto& [split, n] : {std::pair{Split::kTrain, 4001}, std::pair{Split::kValidation, 801}}) {
      std::vector<uint32_t> tokens(n);
      for (uint32_t& t : tokens) t = static_cast<uint32_t>(rng.below(kVocab));
      writer.append(split, tokens, true);
    }
    Manifest base;
    base.tokenizer = "byte";
    writer.finish(base);
    train_ = read_split_tokens(dir(), kTrainSplit);
    validation_ = read_split_tokens(dir(), kValidationSplit);
  }

  std::string dir() const { return scratch_ / "ds"; }

  LoaderOptions options(int64_t global_batch, int replica = 0, int n_replicas = 1) const {
    LoaderOptions o;
    o.dataset_dir = dir();
    o.seq_len = kSeqLen;
    o.global_batch = global_batch;
    o.replica = replica;
    o.n_replicas = n_replicas;
    o.vocab_size = kVocab;
    o.seed = 1234;
    return o;
  }

  // Sample s of a stream, as the loader must return it.
  static std::vector<int32_t> sample(const std::vector<uint32_t>& stream, uint64_t s) {
    return std::vector<int32_t>(stream.begin() + static_cast<int64_t>(s * kSeqLen),
                                stream.begin() + static_cast<int64_t>(s * kSeqLen + kSeqLen + 1));
  }

  static std::vector<std::vector<int32_t>> read_steps(Loader& loader, int steps) {
    std::vector<std::vector<int32_t>> out(static_cast<size_t>(steps));
    for (auto& batch : out) loader.next(batch);
    return out;
  }

  ScratchDir scratch_;
  std::vector<uint32_t> train_;
  std::vector<uint32_t> validation_;
};

TEST_F(LoaderTest, RowsAreSamplesInTheEpochPermutationOrder) {
  LoaderOptions o = options(8);
  o.prefetch = 0;
  Loader loader(o);
  ASSERT_EQ(loader.samples_per_epoch(), 250);  // (4001 - 1) / 16
  ASSERT_EQ(loader.rows(), 8);
  // 250 samples / 8 per step: step 31 holds the last 2 samples of epoch 0 and 6 of epoch 1.
  std::vector<int32_t> batch;
  std::vector<uint64_t> seen_in_epoch0;
  for (uint64_t step = 0; step < 40; ++step) {
    loader.next(batch);
    ASSERT_EQ(batch.size(), 8u * (kSeqLen + 1));
    for (uint64_t j = 0; j < 8; ++j) {
      const uint64_t position = step * 8 + j;
      const uint64_t epoch = position / 250;
      const uint64_t s = EpochPermutation(250, 1234, epoch)(position % 250);
      if (epoch == 0) seen_in_epoch0.push_back(s);
      const std::vector<int32_t> row(batch.begin() + static_cast<int64_t>(j * (kSeqLen + 1)),
                                     batch.begin() + static_cast<int64_t>((j + 1) * (kSeqLen + 1)));
      ASSERT_EQ(row, sample(train_, s)) << "step " << step << " row " << j;
    }
  }
  std::sort(seen_in_epoch0.begin(), seen_in_epoch0.end());
  for (uint64_t s = 0; s < 250; ++s) ASSERT_EQ(seen_in_epoch0[s], s);  // each sample once per epoch
  EXPECT_EQ(loader.state(), (LoaderState{1, 70}));  // 320 = 250 + 70
}

// Multi-token prediction: rows carry extra_tokens more real targets; samples keep their starts
// (s * seq_len), and the epoch loses the samples whose extra tokens would run past the stream.
TEST_F(LoaderTest, ExtraTokensExtendEachSampleWithRealTokens) {
  for (const int64_t extra : {1, 2, 17}) {
    LoaderOptions o = options(8);
    o.prefetch = 0;
    o.shuffle = false;
    o.extra_tokens = extra;
    Loader loader(o);
    const int64_t row = kSeqLen + 1 + extra;
    ASSERT_EQ(loader.row_tokens(), row);
    ASSERT_EQ(loader.samples_per_epoch(), (4001 - row) / kSeqLen + 1) << extra;
    std::vector<int32_t> batch;
    for (int64_t step = 0; step * 8 < loader.samples_per_epoch(); ++step) {
      loader.next(batch);
      ASSERT_EQ(static_cast<int64_t>(batch.size()), 8 * row);
      for (int64_t j = 0; j < 8; ++j) {
        const int64_t s = (step * 8 + j) % loader.samples_per_epoch();
        const std::vector<int32_t> got(batch.begin() + j * row, batch.begin() + (j + 1) * row);
        const std::vector<int32_t> want(train_.begin() + s * kSeqLen,
                                        train_.begin() + s * kSeqLen + row);
        ASSERT_EQ(got, want) << "extra " << extra << " sample " << s;
      }
    }
  }
  LoaderOptions bad = options(8);
  bad.extra_tokens = -1;
  EXPECT_THROW(Loader{bad}, DataError);
}

TEST_F(LoaderTest, ReplicasConcatenateToTheSingleReplicaBatch) {
  constexpr int kSteps = 45;  // 45 * 12 = 540 samples: two epoch boundaries
  Loader single(options(12));
  const std::vector<std::vector<int32_t>> expected = read_steps(single, kSteps);
  for (int replicas : {1, 2, 3, 4}) {
    std::vector<std::vector<std::vector<int32_t>>> parts;
    for (int r = 0; r < replicas; ++r) {
      LoaderOptions o = options(12, r, replicas);
      o.prefetch = r % 2 == 0 ? 3 : 0;
      Loader loader(o);
      EXPECT_EQ(loader.rows(), 12 / replicas);
      parts.push_back(read_steps(loader, kSteps));
      EXPECT_EQ(loader.state(), single.state());
    }
    for (int step = 0; step < kSteps; ++step) {
      std::vector<int32_t> joined;
      for (int r = 0; r < replicas; ++r) {
        joined.insert(joined.end(), parts[r][step].begin(), parts[r][step].end());
      }
      ASSERT_EQ(joined, expected[step]) << replicas << " replicas, step " << step;
    }
  }
}

TEST_F(LoaderTest, RestoredStateContinuesIdentically) {
  Loader reference(options(12));
  std::vector<LoaderState> states;
  std::vector<std::vector<int32_t>> batches(50);
  for (auto& batch : batches) {
    states.push_back(reference.state());
    reference.next(batch);
  }
  // Mid-epoch, the step that straddles the first epoch boundary (250 / 12 = 20.8), just after it,
  // and inside the third epoch.
  for (int at : {7, 20, 21, 44}) {
    for (int replicas : {1, 3}) {
      std::vector<std::vector<int32_t>> joined(static_cast<size_t>(50 - at));
      for (int r = 0; r < replicas; ++r) {
        LoaderOptions o = options(12, r, replicas);
        o.start = states[static_cast<size_t>(at)];
        Loader restored(o);
        ASSERT_EQ(restored.state(), states[static_cast<size_t>(at)]);
        for (auto& batch : joined) {
          std::vector<int32_t> part;
          restored.next(part);
          batch.insert(batch.end(), part.begin(), part.end());
        }
      }
      for (int step = at; step < 50; ++step) {
        ASSERT_EQ(joined[static_cast<size_t>(step - at)], batches[static_cast<size_t>(step)])
            << "restored at step " << at << " with " << replicas << " replicas";
      }
    }
  }
  EXPECT_EQ(states[21].epoch, 1u);
  EXPECT_EQ(states[20].epoch, 0u);
}

TEST_F(LoaderTest, PrefetchAndCacheSettingsDoNotChangeTheData) {
  LoaderOptions sync = options(10);
  sync.prefetch = 0;
  Loader a(sync);
  const auto expected = read_steps(a, 60);
  for (int prefetch : {1, 4}) {
    for (uint64_t cache : {uint64_t{0}, uint64_t{1000}, uint64_t{1} << 30}) {
      LoaderOptions o = options(10);
      o.prefetch = prefetch;
      o.cache_bytes = cache;  // 0: every shard read sample by sample from its file
      Loader b(o);
      EXPECT_EQ(read_steps(b, 60), expected) << "prefetch " << prefetch << " cache " << cache;
      EXPECT_GE(b.wait_seconds(), 0.0);
    }
  }
}

TEST_F(LoaderTest, ValidationReadsInOrderAndResets) {
  LoaderOptions o = options(4);
  o.split = kValidationSplit;
  o.shuffle = false;
  Loader loader(o);
  ASSERT_EQ(loader.samples_per_epoch(), 50);
  std::vector<int32_t> batch;
  for (uint64_t step = 0; step < 3; ++step) {
    loader.next(batch);
    for (uint64_t j = 0; j < 4; ++j) {
      const std::vector<int32_t> row(batch.begin() + static_cast<int64_t>(j * (kSeqLen + 1)),
                                     batch.begin() + static_cast<int64_t>((j + 1) * (kSeqLen + 1)));
      ASSERT_EQ(row, sample(validation_, step * 4 + j));
    }
  }
  loader.reset();
  EXPECT_EQ(loader.state(), LoaderState{});
  std::vector<int32_t> again;
  loader.next(again);
  EXPECT_EQ(std::vector<int32_t>(again.begin(), again.begin() + kSeqLen + 1), sample(validation_, 0));
}

TEST_F(LoaderTest, ResetToAStateMatchesAFreshLoader) {
  Loader a(options(12));
  read_steps(a, 5);
  const LoaderState saved = a.state();
  const auto expected = read_steps(a, 5);
  read_steps(a, 30);
  a.reset(saved);
  EXPECT_EQ(read_steps(a, 5), expected);
}

TEST_F(LoaderTest, BadOptionsAreErrors) {
  EXPECT_DATA_ERROR(Loader{options(10, 0, 3)}, "multiple of the number of replicas");
  EXPECT_DATA_ERROR(Loader{options(12, 3, 3)}, "replica 3");
  LoaderOptions o = options(12);
  o.start = {0, 250};
  EXPECT_DATA_ERROR(Loader{o}, "cursor 250");
  o = options(12);
  o.seq_len = 0;
  EXPECT_DATA_ERROR(Loader{o}, "seq_len");
  o = options(12);
  o.split = "test";
  EXPECT_DATA_ERROR(Loader{o}, "manifest.yaml", "split 'test'");
}

TEST(LoaderState, AdvanceRollsOverEpochs) {
  EXPECT_EQ(Loader::advance({0, 0}, 12, 250), (LoaderState{0, 12}));
  EXPECT_EQ(Loader::advance({0, 240}, 12, 250), (LoaderState{1, 2}));
  EXPECT_EQ(Loader::advance({2, 3}, 30, 7), (LoaderState{6, 5}));  // a step longer than an epoch
}

}  // namespace
}  // namespace tessera::data

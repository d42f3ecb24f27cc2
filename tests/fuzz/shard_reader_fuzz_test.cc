// Fuzzes the dataset readers (manifest, shards, split reader, loader): a small dataset written by
// DatasetWriter has its manifest.yaml (text mutations) or one shard (byte mutations) mutated; every
// case must read the whole dataset or throw an exception naming the dataset directory.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "data/dataset_writer.h"
#include "data/loader.h"
#include "data/manifest.h"
#include "data/shard.h"
#include "data/split_reader.h"
#include "tests/fuzz/fuzz_case.h"
#include "tests/fuzz/mutator.h"

namespace tessera::fuzz {
namespace {

namespace fs = std::filesystem;

const int kMutations = mutation_count(400);

// Train: 3 shards (100, 100, 37 tokens) with documents; validation: one of 40. Vocabulary 300.
void write_dataset(const std::string& dir) {
  data::DatasetWriterOptions o;
  o.dir = dir;
  o.vocab_size = 300;
  o.shard_tokens = 100;
  o.overwrite = true;
  data::DatasetWriter writer(o);
  std::vector<uint32_t> tokens(237);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>((i * 37) % 300);
  for (size_t at = 0; at < tokens.size(); at += 50) {
    writer.append(data::Split::kTrain, std::span(tokens).subspan(at, std::min<size_t>(50, tokens.size() - at)), true);
  }
  writer.append(data::Split::kValidation, std::span(tokens).first(40), true);
  data::Manifest base;
  base.tokenizer = "byte";
  writer.finish(base);
}

// Everything a training run reads: the manifest, every shard's metadata, contents (checksums, id
// range) and document offsets, and batches through the loader with its prefetch thread.
void read_everything(const std::string& dir) {
  const data::Manifest manifest = data::read_manifest(dir);
  for (const auto& [name, split] : manifest.splits) {
    data::read_split_tokens(dir, name);
    for (const data::ShardInfo& shard : split.shards) {
      data::ShardReader(dir + "/" + shard.file, shard, manifest.dtype, manifest.vocab_size)
          .read_doc_offsets();
    }
  }
  data::LoaderOptions o;
  o.dataset_dir = dir;
  o.seq_len = 8;
  o.global_batch = 2;
  o.vocab_size = manifest.vocab_size;
  o.prefetch = 2;
  o.cache_bytes = 256;  // some shards resident, the rest read from their files
  data::Loader loader(o);
  std::vector<int32_t> batch;
  for (int64_t i = 0; i < loader.samples_per_epoch() / 2 + 1; ++i) loader.next(batch);
}

TEST(ShardReaderFuzz, EveryMutationReadsOrThrowsNamingTheDataset) {
  const fs::path root = fs::path(::testing::TempDir()) / "tessera-fuzz-shards";
  fs::remove_all(root);
  const fs::path base = root / "base";
  write_dataset(base.string());
  const CaseResult unmutated = run_case([&] { read_everything(base.string()); });
  ASSERT_EQ(unmutated.kind, CaseResult::Kind::kLoaded) << unmutated.detail;
  const std::vector<std::string> files = {"manifest.yaml", "shard-00000.h5", "shard-00001.h5",
                                          "shard-00002.h5", "shard-00003.h5"};
  for (const std::string& file : files) ASSERT_TRUE(fs::exists(base / file)) << file;

  int loaded = 0, threw = 0;
  const fs::path dir = root / "case";
  for (int seed = 0; seed < kMutations; ++seed) {
    Mutator mutator(static_cast<uint64_t>(seed));
    fs::remove_all(dir);
    fs::copy(base, dir);
    // A third of the cases mutate the manifest, the rest one of the shards.
    const std::string file = seed % 3 == 0 ? files[0] : files[1 + mutator.below(files.size() - 1)];
    std::string what = file + ": ";
    const std::string original = read_bytes(dir / file);
    write_bytes(dir / file, file == files[0] ? mutator.mutate_text(original, &what)
                                             : mutator.mutate_binary(original, &what));
    const CaseResult r = run_case([&] { read_everything(dir.string()); });
    if (r.kind == CaseResult::Kind::kLoaded) {
      ++loaded;
    } else if (r.kind == CaseResult::Kind::kThrew && r.detail.find(dir.string()) != std::string::npos) {
      ++threw;
    } else {
      ADD_FAILURE() << "seed " << seed << " (" << what << "): "
                    << (r.kind == CaseResult::Kind::kThrew ? "message does not name the dataset: " : "")
                    << r.detail;
    }
  }
  EXPECT_GT(loaded, 0);
  EXPECT_GT(threw, kMutations / 4);
  std::cout << "shard reader: " << loaded << " read, " << threw << " refused of " << kMutations
            << " mutations\n";
  fs::remove_all(root);
}

}  // namespace
}  // namespace tessera::fuzz

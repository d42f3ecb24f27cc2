// Round trips: prepare text -> read returns exactly the tokens written (byte and BPE tokenizers,
// uint16 and uint32 shards), with documents, EOD tokens, splits and shard metadata as documented;
// invalid UTF-8 refused before anything is written, or replaced with U+FFFD when asked.
#include "data/prepare_text.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "data/data_error.h"
#include "data/manifest.h"
#include "data/random.h"
#include "data/shard.h"
#include "data/split_reader.h"
#include "data/tokenizer.h"
#include "tests/data/data_test_util.h"

namespace tessera::data {
namespace {

using testing::read_file;
using testing::ScratchDir;
using testing::write_file;

std::string random_document(Rng& rng) {
  static const std::vector<std::string> words = {"the", " model", " reads", " tokens", ",", ".",
                                                 "\n", " é", " 日本", " 42", " naïve", " €"};
  std::string doc;
  const size_t n = 5 + rng.below(60);
  for (size_t i = 0; i < n; ++i) doc += words[rng.below(words.size())];
  return doc;
}

// Splits a stream at EOD into documents (each decoded to text).
std::vector<std::string> documents_of(const std::vector<uint32_t>& stream, const Tokenizer& tok) {
  std::vector<std::string> docs;
  std::vector<uint32_t> current;
  for (const uint32_t id : stream) {
    if (id == Tokenizer::kEod) {
      docs.push_back(tok.decode(current));
      current.clear();
    } else {
      current.push_back(id);
    }
  }
  EXPECT_TRUE(current.empty()) << "stream does not end with EOD";
  return docs;
}

// Checks the dataset in `dir` holds exactly `inputs` (documents in input order), split into train
// and validation, encoded with the dataset's own tokenizer, and that doc_offsets agree.
void expect_round_trip(const std::string& dir, const std::vector<std::string>& inputs,
                       uint64_t expected_validation_docs) {
  const Manifest manifest = read_manifest(dir);
  Tokenizer tok = Tokenizer::for_dataset(dir, manifest);
  EXPECT_EQ(manifest.vocab_size, tok.vocab_size());
  EXPECT_EQ(manifest.eod_token, std::optional<int64_t>(Tokenizer::kEod));
  EXPECT_EQ(manifest.dtype, dtype_for_vocab(manifest.vocab_size));

  const std::vector<uint32_t> train = read_split_tokens(dir, kTrainSplit);
  const std::vector<uint32_t> validation = read_split_tokens(dir, kValidationSplit);
  const std::vector<std::string> train_docs = documents_of(train, tok);
  const std::vector<std::string> validation_docs = documents_of(validation, tok);
  EXPECT_EQ(validation_docs.size(), expected_validation_docs);
  EXPECT_EQ(train_docs.size() + validation_docs.size(), inputs.size());

  // Validation documents are a subsequence of the inputs; train is the rest, in order.
  std::vector<std::string> expected_train;
  size_t v = 0;
  for (const std::string& doc : inputs) {
    if (v < validation_docs.size() && validation_docs[v] == doc) {
      ++v;
    } else {
      expected_train.push_back(doc);
    }
  }
  EXPECT_EQ(v, validation_docs.size()) << "validation documents are not input documents in order";
  EXPECT_EQ(train_docs, expected_train);

  // Exact ids: the tokenizer's encoding of each document followed by EOD.
  std::vector<uint32_t> expected_ids;
  for (const std::string& doc : expected_train) {
    tok.encode(doc, expected_ids);
    expected_ids.push_back(Tokenizer::kEod);
  }
  EXPECT_EQ(train, expected_ids);

  // doc_offsets: each shard lists the positions where documents start, i.e. after every EOD.
  for (const char* split : {kTrainSplit, kValidationSplit}) {
    const SplitInfo& info = manifest.split(split, dir);
    const std::vector<uint32_t> stream = read_split_tokens(dir, split);
    std::vector<uint64_t> starts = {0};
    for (uint64_t i = 0; i + 1 < stream.size(); ++i) {
      if (stream[i] == Tokenizer::kEod) starts.push_back(i + 1);
    }
    std::vector<uint64_t> listed;
    uint64_t base = 0;
    for (const ShardInfo& shard : info.shards) {
      ShardReader reader(dir + "/" + shard.file, shard, manifest.dtype, manifest.vocab_size);
      const std::vector<uint64_t> offsets = reader.read_doc_offsets();
      EXPECT_EQ(offsets.size(), shard.documents);
      for (const uint64_t o : offsets) listed.push_back(base + o);
      base += shard.tokens;
    }
    EXPECT_EQ(listed, starts) << split;
    EXPECT_EQ(info.documents(), starts.size());
  }
}

std::vector<std::string> write_documents(const ScratchDir& scratch, int n, uint64_t seed) {
  Rng rng(seed);
  std::vector<std::string> docs;
  for (int i = 0; i < n; ++i) {
    docs.push_back(random_document(rng));
    char name[32];
    std::snprintf(name, sizeof name, "input/doc-%03d.txt", i);
    write_file(scratch / name, docs.back());
  }
  return docs;
}

TEST(PrepareText, ByteTokenizerRoundTripsAcrossShards) {
  ScratchDir scratch;
  const std::vector<std::string> docs = write_documents(scratch, 40, 1);
  PrepareTextOptions o;
  o.inputs = {scratch / "input"};
  o.out_dir = scratch / "ds";
  o.tokenizer = "byte";
  o.val_fraction = 0.1;
  o.shard_tokens = 300;
  const PrepareSummary summary = prepare_text(o);
  EXPECT_EQ(summary.vocab_size, 257);
  EXPECT_EQ(summary.dtype, TokenDtype::kUint16);
  EXPECT_EQ(summary.validation_documents, 4u);
  EXPECT_GT(summary.shards, 4u);
  expect_round_trip(o.out_dir, docs, 4);

  const Manifest m = read_manifest(o.out_dir);
  EXPECT_EQ(m.tokenizer, "byte");
  for (const auto& [name, split] : m.splits) {
    for (const ShardInfo& shard : split.shards) {
      EXPECT_LE(shard.tokens, 300u);
      EXPECT_TRUE(std::filesystem::exists(o.out_dir + "/" + shard.file));
      EXPECT_FALSE(std::filesystem::exists(o.out_dir + "/" + shard.file + ".tmp"));
    }
  }
  EXPECT_EQ(summary.train_tokens + summary.validation_tokens,
            m.split(kTrainSplit, "").tokens() + m.split(kValidationSplit, "").tokens());
}

TEST(PrepareText, BpeRoundTripsWithSavedMerges) {
  ScratchDir scratch;
  const std::vector<std::string> docs = write_documents(scratch, 30, 2);
  PrepareTextOptions o;
  o.inputs = {scratch / "input"};
  o.out_dir = scratch / "ds";
  o.tokenizer = "bpe";
  o.vocab_size = 300;
  o.shard_tokens = 200;
  const PrepareSummary summary = prepare_text(o);
  EXPECT_EQ(summary.dtype, TokenDtype::kUint16);
  EXPECT_GT(summary.vocab_size, 257);
  EXPECT_LE(summary.vocab_size, 300);
  const Manifest m = read_manifest(o.out_dir);
  EXPECT_EQ(m.tokenizer, "bpe");
  EXPECT_EQ(m.bpe_merges, kBpeMergesFile);
  EXPECT_TRUE(std::filesystem::exists(o.out_dir + "/" + kBpeMergesFile));
  expect_round_trip(o.out_dir, docs, 2);  // round(0.05 * 30) = 2
}

TEST(PrepareText, BpeWithALargeVocabularyUsesUint32) {
  // 12000 distinct 20-letter words, each twice: every pair within a word occurs at least twice,
  // so merging continues until words are single ids: far more than 65536 - 257 merges.
  ScratchDir scratch;
  Rng rng(3);
  std::vector<std::string> docs(4);
  for (int w = 0; w < 12000; ++w) {
    std::string word = " ";
    for (int i = 0; i < 20; ++i) word += static_cast<char>('a' + rng.below(26));
    docs[w % 4] += word + word;
  }
  for (size_t i = 0; i < docs.size(); ++i) write_file(scratch / ("input/" + std::to_string(i) + ".txt"), docs[i]);
  PrepareTextOptions o;
  o.inputs = {scratch / "input"};
  o.out_dir = scratch / "ds";
  o.tokenizer = "bpe";
  o.vocab_size = 65600;
  o.val_fraction = 0.25;
  const PrepareSummary summary = prepare_text(o);
  ASSERT_GT(summary.vocab_size, 65536);
  EXPECT_EQ(summary.dtype, TokenDtype::kUint32);
  expect_round_trip(o.out_dir, docs, 1);
}

TEST(PrepareText, DelimiterSplitsDocumentsAndSkipsEmptyOnes) {
  ScratchDir scratch;
  write_file(scratch / "a.txt", "first doc<|endoftext|>second doc<|endoftext|><|endoftext|>third");
  write_file(scratch / "b.txt", "<|endoftext|>fourth<|endoftext|>");
  PrepareTextOptions o;
  o.inputs = {scratch / "a.txt", scratch / "b.txt"};
  o.out_dir = scratch / "ds";
  o.doc_delimiter = "<|endoftext|>";
  o.val_fraction = 0.25;
  const PrepareSummary summary = prepare_text(o);
  EXPECT_EQ(summary.train_documents + summary.validation_documents, 4u);
  expect_round_trip(o.out_dir, {"first doc", "second doc", "third", "fourth"}, 1);
}

TEST(PrepareText, RefusesToOverwriteUnlessAsked) {
  ScratchDir scratch;
  write_documents(scratch, 4, 4);
  PrepareTextOptions o;
  o.inputs = {scratch / "input"};
  o.out_dir = scratch / "ds";
  prepare_text(o);
  EXPECT_DATA_ERROR(prepare_text(o), o.out_dir, "--overwrite");
  o.overwrite = true;
  o.shard_tokens = 50;
  const PrepareSummary again = prepare_text(o);
  // No shard of the first dataset is left behind.
  size_t shards = 0;
  for (const auto& e : std::filesystem::directory_iterator(o.out_dir)) {
    shards += e.path().filename().string().rfind("shard-", 0) == 0;
  }
  EXPECT_EQ(shards, again.shards);
}

TEST(PrepareText, InvalidUtf8IsRefusedAndNothingIsWritten) {
  ScratchDir scratch;
  write_documents(scratch, 6, 6);
  // doc-002's third line holds a lone continuation byte, at offset 15.
  write_file(scratch / "input/doc-002.txt", "first\nsecond\nab\x80" "cd\n");
  PrepareTextOptions o;
  o.inputs = {scratch / "input"};
  o.out_dir = scratch / "ds";
  for (const std::string tokenizer : {"byte", "bpe"}) {
    o.tokenizer = tokenizer;
    o.vocab_size = tokenizer == "bpe" ? 300 : 0;
    EXPECT_DATA_ERROR(prepare_text(o), scratch / "input/doc-002.txt", "byte offset 15 (line 3)",
                      "bytes 80");
    EXPECT_FALSE(std::filesystem::exists(o.out_dir)) << tokenizer;
  }
  // An existing dataset that --overwrite would replace is left whole.
  write_file(scratch / "input/doc-002.txt", "valid again");
  o.tokenizer = "byte";
  o.vocab_size = 0;
  prepare_text(o);
  const std::string before = read_file(o.out_dir + "/manifest.yaml");
  write_file(scratch / "input/doc-004.txt", "cut short \xE2\x82");
  o.overwrite = true;
  EXPECT_DATA_ERROR(prepare_text(o), scratch / "input/doc-004.txt", "byte offset 10 (line 1)");
  EXPECT_EQ(read_file(o.out_dir + "/manifest.yaml"), before);
  EXPECT_NO_THROW(read_split_tokens(o.out_dir, kTrainSplit));  // its shards are still there
}

TEST(PrepareText, ReplaceInvalidUtf8MakesEachSequenceUFFFDAndCountsThem) {
  ScratchDir scratch;
  const std::vector<std::string> valid = write_documents(scratch, 8, 7);
  // Four ill-formed sequences: a lone continuation byte, and a surrogate's three bytes (A0 cannot
  // follow ED, so each byte is a maximal subpart of its own).
  write_file(scratch / "input/doc-003.txt", "a\x80" "b\xED\xA0\x80" "c");
  std::vector<std::string> expected = valid;
  expected[3] = "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "c";
  for (const std::string tokenizer : {"byte", "bpe"}) {
    PrepareTextOptions o;
    o.inputs = {scratch / "input"};
    o.out_dir = scratch / ("ds-" + tokenizer);
    o.tokenizer = tokenizer;
    o.vocab_size = tokenizer == "bpe" ? 300 : 0;
    o.replace_invalid_utf8 = true;
    const PrepareSummary summary = prepare_text(o);
    EXPECT_EQ(summary.invalid_utf8_replaced, std::optional<uint64_t>(4));
    EXPECT_NE(format_summary(summary).find("replaced 4 invalid UTF-8 sequence(s) with U+FFFD"),
              std::string::npos)
        << format_summary(summary);
    EXPECT_EQ(read_manifest(o.out_dir).notes.at("invalid_utf8"),
              "4 invalid sequence(s) replaced with U+FFFD");
    expect_round_trip(o.out_dir, expected, 1);  // round(0.05 * 8) = 0, raised to at least one
  }
}

TEST(PrepareText, BadOptionsAreErrors) {
  ScratchDir scratch;
  write_documents(scratch, 4, 5);
  PrepareTextOptions o;
  o.inputs = {scratch / "input"};
  o.out_dir = scratch / "ds";
  o.tokenizer = "bpe";
  EXPECT_DATA_ERROR(prepare_text(o), "--vocab");  // bpe needs a vocabulary size
  o.tokenizer = "byte";
  o.vocab_size = 1000;
  EXPECT_DATA_ERROR(prepare_text(o), "257");
  o.vocab_size = 0;
  o.inputs = {scratch / "nope.txt"};
  EXPECT_DATA_ERROR(prepare_text(o), scratch / "nope.txt", "not found");
  write_file(scratch / "one.txt", "just one document");
  o.inputs = {scratch / "one.txt"};
  EXPECT_DATA_ERROR(prepare_text(o), "at least 2");
}

}  // namespace
}  // namespace tessera::data

#include "data/tokenizer.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "data/bpe_trainer.h"
#include "data/data_error.h"
#include "data/pretokenize.h"
#include "data/random.h"
#include "tests/data/data_test_util.h"

namespace tessera::data {
namespace {

using testing::ScratchDir;

std::vector<std::string> pieces_of(std::string_view text) {
  std::vector<std::string> pieces;
  for_each_pretoken(text, [&](std::string_view p) { pieces.emplace_back(p); });
  return pieces;
}

std::unordered_map<std::string, uint64_t> pretoken_counts(const std::string& text) {
  std::unordered_map<std::string, uint64_t> counts;
  for_each_pretoken(text, [&](std::string_view p) { ++counts[std::string(p)]; });
  return counts;
}

// Random text mixing ASCII words, multi-byte UTF-8, whitespace runs and invalid bytes.
std::string random_text(Rng& rng, size_t length) {
  static const std::vector<std::string> atoms = {
      "the", " cat", " sat", "  ", "\n", "\n\n", "\t", "42", "!", "...", "é", "ß", "日本語", "😀",
      " ", "ing", "Tessera", "\xff", "\xc3", "\x80\x80", "\xed\xa0\x80", std::string(1, '\0')};
  std::string text;
  while (text.size() < length) text += atoms[rng.below(atoms.size())];
  return text;
}

std::string random_bytes(Rng& rng, size_t length) {
  std::string text(length, '\0');
  for (char& c : text) c = static_cast<char>(rng.below(256));
  return text;
}

Tokenizer trained_tokenizer(size_t merges) {
  Rng rng(11);
  std::string corpus;
  for (int i = 0; i < 200; ++i) corpus += random_text(rng, 200);
  return Tokenizer(train_bpe(pretoken_counts(corpus), merges, Tokenizer::kFirstMerge));
}

TEST(Pretokenize, PiecesConcatenateToTheInput) {
  Rng rng(1);
  for (int trial = 0; trial < 50; ++trial) {
    const std::string text = trial % 2 ? random_text(rng, 300) : random_bytes(rng, 300);
    std::string joined;
    for (const std::string& p : pieces_of(text)) {
      EXPECT_FALSE(p.empty());
      joined += p;
    }
    EXPECT_EQ(joined, text);
  }
}

TEST(Pretokenize, SplitsWordsSpacesAndPunctuation) {
  EXPECT_EQ(pieces_of("Hello world!!  ok\n\nnew 42x"),
            (std::vector<std::string>{"Hello", " world", "!!", " ", " ok", "\n\n", "new", " 42", "x"}));
  EXPECT_EQ(pieces_of("caf\xc3\xa9 ok"), (std::vector<std::string>{"caf\xc3\xa9", " ok"}));
}

TEST(Pretokenize, SafeCutDoesNotChangePieces) {
  Rng rng(2);
  for (int trial = 0; trial < 200; ++trial) {
    const std::string text = random_text(rng, 100 + rng.below(200));
    const size_t cut = last_safe_cut(text);
    if (cut == 0) continue;
    std::vector<std::string> halves = pieces_of(std::string_view(text).substr(0, cut));
    const std::vector<std::string> right = pieces_of(std::string_view(text).substr(cut));
    halves.insert(halves.end(), right.begin(), right.end());
    EXPECT_EQ(halves, pieces_of(text)) << "cut " << cut;
  }
}

TEST(Tokenizer, ByteTokenizerMapsBytesToIds) {
  Tokenizer byte;
  EXPECT_EQ(byte.vocab_size(), 257);
  std::vector<uint32_t> ids;
  byte.encode(std::string("A\xff\0", 3), ids);
  EXPECT_EQ(ids, (std::vector<uint32_t>{65, 255, 0}));
  EXPECT_EQ(byte.decode(ids), std::string("A\xff\0", 3));
  const std::vector<uint32_t> with_eod = {104, 105, Tokenizer::kEod};
  EXPECT_EQ(byte.decode(with_eod), "hi");
  const std::vector<uint32_t> out_of_range = {257};
  EXPECT_THROW(byte.decode(out_of_range), DataError);
}

TEST(Tokenizer, BpeDecodeOfEncodeIsIdentityOnArbitraryBytes) {
  Tokenizer bpe = trained_tokenizer(300);
  ASSERT_GT(bpe.merges().size(), 100u);
  Rng rng(5);
  for (int trial = 0; trial < 100; ++trial) {
    const std::string text = trial % 3 == 0 ? random_bytes(rng, rng.below(500))
                                            : random_text(rng, rng.below(500));
    std::vector<uint32_t> ids;
    bpe.encode(text, ids);
    for (const uint32_t id : ids) {
      ASSERT_LT(id, static_cast<uint32_t>(bpe.vocab_size()));
      ASSERT_NE(id, Tokenizer::kEod);
    }
    ASSERT_EQ(bpe.decode(ids), text);
  }
}

TEST(Tokenizer, BpeCompressesTheTextItWasTrainedOn) {
  Tokenizer bpe = trained_tokenizer(300);
  Rng rng(11);
  const std::string text = random_text(rng, 2000);
  std::vector<uint32_t> ids;
  bpe.encode(text, ids);
  EXPECT_LT(ids.size() * 2, text.size());  // well under one id per byte
}

TEST(BpeTrainer, MergesTheMostFrequentPairFirstWithDeterministicTies) {
  // Pair counts: (a,b) 3 + 2 = 5, (c,d) 3, (b,a) 1, (b,c) 1.
  std::unordered_map<std::string, uint64_t> counts = {{"ab", 3}, {"abab", 1}, {"cd", 3}, {"bc", 1}};
  const std::vector<BpeMerge> merges = train_bpe(counts, 10, 257);
  ASSERT_GE(merges.size(), 2u);
  EXPECT_EQ(merges[0], BpeMerge('a', 'b'));
  EXPECT_EQ(merges[1], BpeMerge('c', 'd'));
  // Every merged pair occurred at least twice, so "bc" (once) is never merged.
  for (const BpeMerge& m : merges) EXPECT_NE(m, BpeMerge('b', 'c'));
  // Ties (count 2 each for "xy" and "uv") go to the smaller pair.
  const std::vector<BpeMerge> tied = train_bpe({{"uv", 2}, {"xy", 2}}, 1, 257);
  ASSERT_EQ(tied.size(), 1u);
  EXPECT_EQ(tied[0], BpeMerge('u', 'v'));
}

TEST(BpeTrainer, EncodingReproducesTrainingSegmentation) {
  // After training, each training pre-token must encode to the symbols training ended with: check
  // that encoding a word that was fully merged gives a single id.
  const std::vector<BpeMerge> merges = train_bpe({{"tessera", 5}}, 100, 257);
  EXPECT_EQ(merges.size(), 6u);  // 7 bytes -> 1 symbol
  Tokenizer bpe(merges);
  std::vector<uint32_t> ids;
  bpe.encode("tessera", ids);
  EXPECT_EQ(ids, (std::vector<uint32_t>{257 + 5}));
}

// The incremental trainer must pick exactly the merges a naive trainer (recount every pair each
// round) picks.
std::vector<BpeMerge> naive_bpe(const std::unordered_map<std::string, uint64_t>& counts, size_t n_merges) {
  std::vector<std::pair<std::vector<uint32_t>, uint64_t>> words;
  for (const auto& [text, count] : counts) {
    std::vector<uint32_t> symbols;
    for (const char c : text) symbols.push_back(static_cast<unsigned char>(c));
    words.emplace_back(symbols, count);
  }
  std::vector<BpeMerge> merges;
  while (merges.size() < n_merges) {
    std::map<BpeMerge, uint64_t> pairs;
    for (const auto& [s, count] : words) {
      for (size_t i = 0; i + 1 < s.size(); ++i) pairs[{s[i], s[i + 1]}] += count;
    }
    BpeMerge best;
    uint64_t best_count = 0;
    for (const auto& [pair, count] : pairs) {
      if (count > best_count) best = pair, best_count = count;  // map order: smallest pair wins ties
    }
    if (best_count < 2) break;
    const uint32_t id = Tokenizer::kFirstMerge + static_cast<uint32_t>(merges.size());
    merges.push_back(best);
    for (auto& [s, count] : words) {
      std::vector<uint32_t> out;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == best.first && s[i + 1] == best.second) {
          out.push_back(id);
          ++i;
        } else {
          out.push_back(s[i]);
        }
      }
      s = out;
    }
  }
  return merges;
}

TEST(BpeTrainer, MatchesANaiveTrainer) {
  Rng rng(21);
  for (int trial = 0; trial < 3; ++trial) {
    std::string corpus = random_text(rng, 3000);
    for (int i = 0; i < 300; ++i) corpus += " " + std::string(1 + rng.below(6), static_cast<char>('a' + rng.below(3)));
    const auto counts = pretoken_counts(corpus);
    const std::vector<BpeMerge> merges = train_bpe(counts, 400, Tokenizer::kFirstMerge);
    EXPECT_GT(merges.size(), 50u);
    EXPECT_EQ(merges, naive_bpe(counts, 400)) << "trial " << trial;
  }
}

TEST(Tokenizer, SaveLoadRoundTrip) {
  ScratchDir dir;
  Tokenizer bpe = trained_tokenizer(200);
  bpe.save(dir / "merges.txt");
  Tokenizer loaded = Tokenizer::load(dir / "merges.txt");
  EXPECT_EQ(loaded.merges(), bpe.merges());
  Rng rng(9);
  const std::string text = random_text(rng, 1000);
  std::vector<uint32_t> a, b;
  bpe.encode(text, a);
  loaded.encode(text, b);
  EXPECT_EQ(a, b);
}

TEST(Tokenizer, LoadErrorsNameFileAndLine) {
  ScratchDir dir;
  testing::write_file(dir / "bad.txt", "tessera-bpe 1\neod 256\nmerges 2\n97 98\n97 x\n");
  EXPECT_DATA_ERROR(Tokenizer::load(dir / "bad.txt"), dir / "bad.txt:5", "97 x");
  testing::write_file(dir / "future.txt", "tessera-bpe 1\neod 256\nmerges 1\n97 300\n");
  EXPECT_DATA_ERROR(Tokenizer::load(dir / "future.txt"), dir / "future.txt", "earlier merge");
  testing::write_file(dir / "short.txt", "tessera-bpe 1\neod 256\nmerges 3\n97 98\n");
  EXPECT_DATA_ERROR(Tokenizer::load(dir / "short.txt"), dir / "short.txt:5", "end of file");
  EXPECT_DATA_ERROR(Tokenizer::load(dir / "missing.txt"), dir / "missing.txt");
}

}  // namespace
}  // namespace tessera::data

#include "data/text_corpus.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "data/data_error.h"
#include "data/random.h"
#include "data/tokenizer.h"
#include "tests/data/data_test_util.h"

namespace tessera::data {
namespace {

using testing::ScratchDir;
using testing::write_file;

struct Collected {
  std::vector<std::string> documents;
  std::vector<size_t> pieces;  // pieces per document
};

Collected collect(const TextCorpus& corpus) {
  Collected c;
  std::string current;
  size_t pieces = 0;
  uint64_t expected_doc = 0;
  const uint64_t n = corpus.for_each(
      {[&](uint64_t doc, std::string_view piece) {
         EXPECT_EQ(doc, expected_doc);
         EXPECT_FALSE(piece.empty());
         current += piece;
         ++pieces;
       },
       [&](uint64_t doc) {
         EXPECT_EQ(doc, expected_doc++);
         c.documents.push_back(current);
         c.pieces.push_back(pieces);
         current.clear();
         pieces = 0;
       },
       {}}).documents;
  EXPECT_EQ(n, c.documents.size());
  return c;
}

TEST(TextCorpus, DirectoriesAreSortedAndHiddenFilesSkipped) {
  ScratchDir dir;
  write_file(dir / "in/b.txt", "B");
  write_file(dir / "in/a.txt", "A");
  write_file(dir / "in/sub/c.txt", "C");
  write_file(dir / "in/.hidden", "H");
  write_file(dir / "in/.git/x.txt", "X");
  write_file(dir / "in/empty.txt", "");
  write_file(dir / "z.txt", "Z");
  const TextCorpus corpus({dir / "in", dir / "z.txt"}, "");
  EXPECT_EQ(corpus.files().size(), 5u);  // a, b, empty, sub/c, z
  EXPECT_EQ(collect(corpus).documents, (std::vector<std::string>{"A", "B", "C", "Z"}));
}

TEST(TextCorpus, DelimitersAcrossReadBlocksAndLongDocumentsInPieces) {
  ScratchDir dir;
  Rng rng(4);
  const std::string delimiter = "<|endoftext|>";
  std::vector<std::string> docs;
  std::string file;
  for (int d = 0; d < 20; ++d) {
    std::string doc;
    const size_t lines = 1 + rng.below(40);
    for (size_t l = 0; l < lines; ++l) {
      doc += std::string(1 + rng.below(30), static_cast<char>('a' + rng.below(26))) + " word\n";
    }
    docs.push_back(doc);
    file += doc + delimiter;
  }
  write_file(dir / "f.txt", file);
  // Tiny read blocks split delimiters between reads; a small max_pending cuts long documents.
  for (size_t block : {size_t{1}, size_t{7}, size_t{64}, size_t{1} << 20}) {
    const TextCorpus corpus({dir / "f.txt"}, delimiter, Utf8Filter::Policy::kRefuse, block, 100);
    const Collected c = collect(corpus);
    EXPECT_EQ(c.documents, docs) << "block " << block;
    size_t max_pieces = 0;
    for (const size_t p : c.pieces) max_pieces = std::max(max_pieces, p);
    if (block < 100) {
      EXPECT_GT(max_pieces, 1u) << "no document was cut into pieces";
    }
  }
}

TEST(TextCorpus, EncodingPiecesEqualsEncodingTheWholeDocument) {
  ScratchDir dir;
  std::string doc;
  Rng rng(8);
  for (int i = 0; i < 300; ++i) doc += (rng.below(2) ? " lorem" : " ipsum") + std::string(rng.below(3) ? "" : ".\n");
  write_file(dir / "d.txt", doc);
  std::unordered_map<std::string, uint64_t> counts = {{" lorem", 5}, {" ipsum", 5}};
  Tokenizer bpe(train_bpe(counts, 20, Tokenizer::kFirstMerge));
  std::vector<uint32_t> whole, pieces;
  bpe.encode(doc, whole);
  const TextCorpus corpus({dir / "d.txt"}, "", Utf8Filter::Policy::kRefuse, 16, 64);
  size_t n_pieces = 0;
  corpus.for_each({[&](uint64_t, std::string_view piece) {
                     bpe.encode(piece, pieces);
                     ++n_pieces;
                   },
                   [](uint64_t) {}, {}});
  EXPECT_GT(n_pieces, 5u);
  EXPECT_EQ(pieces, whole);
}

TEST(TextCorpus, InvalidUtf8IsRefusedOrReplacedBeforeDelimitersAreFound) {
  ScratchDir dir;
  write_file(dir / "a.txt", "good\n");
  // The second file: an invalid byte at offset 9 (line 3), in its second document, and a sequence
  // cut short by the end of the file.
  write_file(dir / "b.txt", "one\n--\ntw\xFFo\n--\nthree\xE2\x82");
  for (size_t block : {size_t{1}, size_t{4}, size_t{1} << 20}) {
    const TextCorpus refusing({dir / "a.txt", dir / "b.txt"}, "--", Utf8Filter::Policy::kRefuse, block);
    EXPECT_DATA_ERROR(collect(refusing), dir / "b.txt", "byte offset 9 (line 3)", "bytes ff");
    const TextCorpus replacing({dir / "a.txt", dir / "b.txt"}, "--", Utf8Filter::Policy::kReplace, block);
    EXPECT_EQ(collect(replacing).documents,
              (std::vector<std::string>{"good\n", "one\n", "\ntw\xEF\xBF\xBDo\n", "\nthree\xEF\xBF\xBD"}))
        << "block " << block;
    EXPECT_EQ(replacing.for_each({[](uint64_t, std::string_view) {}, [](uint64_t) {}, {}}).invalid_utf8_replaced,
              2u);
  }
}

TEST(TextCorpus, MissingInputIsAnError) {
  ScratchDir dir;
  EXPECT_DATA_ERROR(TextCorpus({dir / "missing.txt"}, ""), dir / "missing.txt", "not found");
  write_file(dir / "only/.hidden", "x");
  EXPECT_DATA_ERROR(TextCorpus({dir / "only"}, ""), "no input text files");
}

}  // namespace
}  // namespace tessera::data

// Utf8Filter: well-formed UTF-8 passes unchanged whatever the piece boundaries; each maximal
// subpart of an ill-formed sequence becomes one U+FFFD (Unicode's table 3-8 example included), or,
// when refusing, an error naming the path, byte offset and line.
#include "data/utf8_filter.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "data/data_error.h"
#include "tests/data/data_test_util.h"

namespace tessera::data {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

// `in` through a filter in pieces of `piece` bytes; the number replaced in *replaced.
std::string filtered(const std::string& in, size_t piece, Utf8Filter::Policy policy,
                     uint64_t* replaced = nullptr) {
  Utf8Filter filter("in.txt", policy);
  std::string out;
  for (size_t at = 0; at < in.size(); at += piece) filter.feed(std::string_view(in).substr(at, piece), out);
  filter.finish(out);
  if (replaced != nullptr) *replaced = filter.replaced();
  return out;
}

TEST(Utf8Filter, WellFormedTextPassesUnchangedInPiecesOfAnySize) {
  // The edges of every sequence length and of the surrogate gap: U+0000, U+007F, U+0080, U+07FF,
  // U+0800, U+D7FF, U+E000, U+FFFF, U+10000, U+10FFFF.
  const std::string text = std::string("a\0\x7F", 3) + "\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF" +
                           "\xEE\x80\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF héllo 日本\n";
  for (size_t piece = 1; piece <= text.size(); ++piece) {
    uint64_t replaced = 7;
    EXPECT_EQ(filtered(text, piece, Utf8Filter::Policy::kRefuse), text) << "piece " << piece;
    EXPECT_EQ(filtered(text, piece, Utf8Filter::Policy::kReplace, &replaced), text);
    EXPECT_EQ(replaced, 0u);
  }
}

TEST(Utf8Filter, EachMaximalSubpartBecomesOneReplacement) {
  struct Case {
    std::string in, out;
    uint64_t replaced;
  };
  const std::string F = kFffd;
  const std::vector<Case> cases = {
      // Unicode 15, table 3-8: "a" F1 80 80 | E1 80 | C2 | "b" 80 "c" 80 BF "d".
      {"a\xF1\x80\x80\xE1\x80\xC2" "b\x80" "c\x80\xBF" "d", "a" + F + F + F + "b" + F + "c" + F + F + "d", 6},
      {"\xC0\xAF", F + F, 2},                 // overlong lead byte, then a lone continuation
      {"\xE0\x80\xAF", F + F + F, 3},         // overlong 3-byte form
      {"\xED\xA0\x80", F + F + F, 3},         // a surrogate
      {"\xF4\x90\x80\x80", F + F + F + F, 4}, // above U+10FFFF
      {"\xF5\xFF\xFE", F + F + F, 3},         // bytes that start nothing
      {"x\xE2\x82", "x" + F, 1},              // cut short at the end of the stream
      {"\xF0\x9F\x98" "A", F + "A", 1},       // cut short by an ASCII byte
  };
  for (const Case& c : cases) {
    for (size_t piece : {size_t{1}, size_t{2}, size_t{3}, size_t{64}}) {
      uint64_t replaced = 0;
      EXPECT_EQ(filtered(c.in, piece, Utf8Filter::Policy::kReplace, &replaced), c.out)
          << ::testing::PrintToString(c.in) << " piece " << piece;
      EXPECT_EQ(replaced, c.replaced) << ::testing::PrintToString(c.in);
    }
  }
}

TEST(Utf8Filter, RefusalNamesPathByteOffsetLineAndBytes) {
  const std::string text = "line one\nline two\nok \xC3\xA9 then \xE2\x82 here\n";
  //                        0-8 "line one\n", 9-17 "line two\n", "ok " 18-20, é 21-22, " then " 23-28
  for (size_t piece : {size_t{1}, size_t{5}, size_t{100}}) {
    EXPECT_DATA_ERROR(filtered(text, piece, Utf8Filter::Policy::kRefuse), "in.txt",
                      "invalid UTF-8 at byte offset 29 (line 3)", "bytes e2 82",
                      "--replace-invalid-utf8");
  }
  EXPECT_DATA_ERROR(filtered("abc\xF0\x9F", 2, Utf8Filter::Policy::kRefuse), "byte offset 3 (line 1)",
                    "bytes f0 9f");
}

}  // namespace
}  // namespace tessera::data

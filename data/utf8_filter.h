// Checks that a byte stream is UTF-8, or repairs it, fed in pieces of any size (a sequence cut at
// the end of one piece is completed by the next).
//
// Well-formed sequences are those of Unicode's table 3-7 (no overlong forms, no surrogates, nothing
// above U+10FFFF). An ill-formed sequence is a "maximal subpart" (Unicode 3.9, "U+FFFD substitution
// of maximal subparts", what WHATWG's decoder and Python's errors="replace" do): the longest start
// of a well-formed sequence that the next byte does not continue, or a single byte that starts
// none. Policy kRefuse throws at the first one; kReplace writes U+FFFD (EF BF BD) for each.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tessera::data {

class Utf8Filter {
 public:
  enum class Policy { kRefuse, kReplace };

  // `path` names the stream in errors.
  Utf8Filter(std::string path, Policy policy);

  // Appends `in` to `out`, ill-formed sequences replaced under kReplace. Under kRefuse, throws
  // DataError naming the path, the 0-based byte offset in the stream and the 1-based line of the
  // first ill-formed sequence, and its bytes.
  void feed(std::string_view in, std::string& out);
  // The end of the stream: a sequence still incomplete is ill-formed.
  void finish(std::string& out);

  uint64_t replaced() const { return replaced_; }

 private:
  void filter(std::string_view buffer, bool last, std::string& out);
  void ill_formed(std::string_view bytes, uint64_t offset);

  std::string path_;
  Policy policy_;
  uint64_t offset_ = 0;  // stream offset of the first byte not yet filtered (carry_'s first)
  uint64_t line_ = 1;    // line of that byte
  std::string carry_;    // an incomplete sequence at the end of the last piece (<= 3 bytes)
  uint64_t replaced_ = 0;
};

}  // namespace tessera::data

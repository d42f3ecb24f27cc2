// Pre-tokenisation for byte-level BPE: text is cut into pieces that merges never cross, like
// GPT-2's regex but byte-oriented and without a regex engine. A piece is
//   - an optional single leading space and a run of one class: letters (ASCII letters and every
//     byte >= 0x80, so a UTF-8 sequence - valid or not - stays in one piece), digits, or other
//     non-space bytes (punctuation, control characters);
//   - or a run of whitespace; when a word follows, a final space is left to that word.
// The pieces concatenate to the input exactly. Works on arbitrary bytes.
#pragma once

#include <cstddef>
#include <string_view>

namespace tessera::data {

// Calls fn(std::string_view piece) for each piece of `text`, in order.
template <typename Fn>
void for_each_pretoken(std::string_view text, Fn&& fn);

// A position p in (0, text.size()) at which text may be cut so that pretokenising the two halves
// gives the same pieces as the whole (a '\n' on one side of p, a non-space byte on the other),
// searching backwards from the end; 0 if there is none. Lets long documents be encoded in pieces.
size_t last_safe_cut(std::string_view text);

// ---- implementation ----

namespace pretokenize_detail {
enum Class : unsigned char { kLetter, kDigit, kSpace, kOther };
inline Class classify(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return kLetter;
  if (c >= '0' && c <= '9') return kDigit;
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') return kSpace;
  return kOther;
}
}  // namespace pretokenize_detail

template <typename Fn>
void for_each_pretoken(std::string_view text, Fn&& fn) {
  using namespace pretokenize_detail;
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const auto at = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    size_t j = i;
    if (at(i) == ' ' && i + 1 < n && classify(at(i + 1)) != kSpace) {
      const Class c = classify(at(i + 1));
      j = i + 2;
      while (j < n && classify(at(j)) == c) ++j;
    } else if (classify(at(i)) == kSpace) {
      while (j < n && classify(at(j)) == kSpace) ++j;
      if (j < n && j - i > 1 && at(j - 1) == ' ') --j;  // the last space goes with the word
    } else {
      const Class c = classify(at(i));
      while (j < n && classify(at(j)) == c) ++j;
    }
    fn(text.substr(i, j - i));
    i = j;
  }
}

}  // namespace tessera::data

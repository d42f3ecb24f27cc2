#include "data/utf8_filter.h"

#include <cstdio>

#include "data/data_error.h"

namespace tessera::data {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Continuation bytes a lead byte needs (0: the byte starts no sequence) and the range of the first
// of them, which excludes overlong forms, surrogates and code points above U+10FFFF (table 3-7).
struct Lead {
  int continuation = 0;
  unsigned char low = 0x80, high = 0xBF;
};

Lead lead(unsigned char b) {
  if (b >= 0xC2 && b <= 0xDF) return {1};
  if (b == 0xE0) return {2, 0xA0, 0xBF};
  if (b == 0xED) return {2, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {2};
  if (b == 0xF0) return {3, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {3};
  if (b == 0xF4) return {3, 0x80, 0x8F};
  return {};
}

std::string hex_bytes(std::string_view bytes) {
  std::string out;
  for (const char c : bytes) {
    char text[4];
    std::snprintf(text, sizeof text, "%s%02x", out.empty() ? "" : " ", static_cast<unsigned char>(c));
    out += text;
  }
  return out;
}

}  // namespace

Utf8Filter::Utf8Filter(std::string path, Policy policy) : path_(std::move(path)), policy_(policy) {}

void Utf8Filter::feed(std::string_view in, std::string& out) {
  if (carry_.empty()) {
    filter(in, false, out);
    return;
  }
  // Rare (a sequence cut between pieces): joining copies the piece once.
  std::string joined = carry_;
  joined.append(in);
  carry_.clear();
  filter(joined, false, out);
}

void Utf8Filter::finish(std::string& out) {
  const std::string rest = std::move(carry_);
  carry_.clear();
  filter(rest, true, out);
}

void Utf8Filter::ill_formed(std::string_view bytes, uint64_t offset) {
  if (policy_ == Policy::kRefuse) {
    throw DataError(path_ + ": invalid UTF-8 at byte offset " + std::to_string(offset) + " (line " +
                    std::to_string(line_) + "): bytes " + hex_bytes(bytes) +
                    "; pass --replace-invalid-utf8 to replace each invalid sequence with U+FFFD");
  }
  ++replaced_;
}

void Utf8Filter::filter(std::string_view buffer, bool last, std::string& out) {
  const size_t n = buffer.size();
  size_t copied = 0;  // buffer[copied, i) is well-formed and not yet in `out`
  size_t i = 0;
  while (i < n) {
    const auto b = static_cast<unsigned char>(buffer[i]);
    if (b < 0x80) {
      line_ += b == '\n';
      ++i;
      continue;
    }
    const Lead l = lead(b);
    size_t k = 1;  // bytes of the sequence that fit so far
    while (k <= static_cast<size_t>(l.continuation) && i + k < n) {
      const auto c = static_cast<unsigned char>(buffer[i + k]);
      if (c < (k == 1 ? l.low : 0x80) || c > (k == 1 ? l.high : 0xBF)) break;
      ++k;
    }
    if (l.continuation > 0 && k == static_cast<size_t>(l.continuation) + 1) {
      i += k;  // well-formed
      continue;
    }
    if (l.continuation > 0 && i + k == n && !last) {
      carry_.assign(buffer.substr(i));  // may be completed by the next piece
      break;
    }
    ill_formed(buffer.substr(i, k), offset_ + i);
    out.append(buffer.substr(copied, i - copied));
    out.append(kReplacement);
    i += k;
    copied = i;
  }
  out.append(buffer.substr(copied, i - copied));
  offset_ += i;
}

}  // namespace tessera::data

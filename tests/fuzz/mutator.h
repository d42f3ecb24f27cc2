// Seeded mutations of a file's bytes, for the fuzz tests. The same seed gives the same mutation
// everywhere (data::Rng draws, no std distributions), so a failing case is reproduced by its seed.
//
// Binary mutations: flip a bit, set a byte, write an extreme integer (0, all ones, 2^31, 2^63...)
// over 1-8 bytes (HDF5 sizes, offsets and counts), truncate, delete, duplicate or insert a range.
// Text mutations add line-level ones: remove, duplicate or swap lines, swap two values, and replace
// a value with a huge, negative, non-finite or mistyped one.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "data/random.h"

namespace tessera::fuzz {

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : rng_(seed) {}

  // 1-3 mutations; `describe` gets what was done (for the failure report).
  std::string mutate_binary(std::string bytes, std::string* describe) {
    const uint64_t n = 1 + rng_.below(3);
    for (uint64_t i = 0; i < n; ++i) bytes = binary_once(std::move(bytes), describe);
    return bytes;
  }

  std::string mutate_text(std::string text, std::string* describe) {
    const uint64_t n = 1 + rng_.below(3);
    for (uint64_t i = 0; i < n; ++i) {
      text = rng_.below(3) == 0 ? binary_once(std::move(text), describe)
                                : text_once(std::move(text), describe);
    }
    return text;
  }

  uint64_t below(uint64_t n) { return rng_.below(n); }

 private:
  std::string binary_once(std::string b, std::string* d) {
    if (b.empty()) {
      *d += "insert 'x' into empty; ";
      return "x";
    }
    const size_t at = rng_.below(b.size());
    switch (rng_.below(8)) {
      case 0: {
        const int bit = static_cast<int>(rng_.below(8));
        b[at] = static_cast<char>(b[at] ^ (1 << bit));
        *d += "flip bit " + std::to_string(bit) + " of byte " + std::to_string(at) + "; ";
        break;
      }
      case 1: {
        const auto value = static_cast<char>(rng_.below(256));
        b[at] = value;
        *d += "set byte " + std::to_string(at) + " to " + std::to_string(static_cast<unsigned char>(value)) + "; ";
        break;
      }
      case 2: {
        static const uint64_t kExtremes[] = {0,           ~uint64_t{0},          uint64_t{1} << 31,
                                             0x7FFFFFFF,  uint64_t{1} << 63,     0x7FFFFFFFFFFFFFFF,
                                             0xFFFFFFFF,  uint64_t{1} << 32,     1};
        const uint64_t value = kExtremes[rng_.below(sizeof kExtremes / sizeof kExtremes[0])];
        const size_t width = std::min<size_t>(size_t{1} << rng_.below(4), b.size() - at);
        std::memcpy(b.data() + at, &value, width);
        *d += "write " + std::to_string(value) + " over " + std::to_string(width) + " bytes at " +
              std::to_string(at) + "; ";
        break;
      }
      case 3:
        b.resize(at);
        *d += "truncate to " + std::to_string(at) + " bytes; ";
        break;
      case 4: {
        const size_t len = std::min<size_t>(1 + rng_.below(64), b.size() - at);
        b.erase(at, len);
        *d += "delete " + std::to_string(len) + " bytes at " + std::to_string(at) + "; ";
        break;
      }
      case 5: {
        const size_t len = std::min<size_t>(1 + rng_.below(64), b.size() - at);
        b.insert(at, b.substr(at, len));
        *d += "duplicate " + std::to_string(len) + " bytes at " + std::to_string(at) + "; ";
        break;
      }
      case 6: {
        std::string noise(1 + rng_.below(16), '\0');
        for (char& c : noise) c = static_cast<char>(rng_.below(256));
        b.insert(at, noise);
        *d += "insert " + std::to_string(noise.size()) + " random bytes at " + std::to_string(at) + "; ";
        break;
      }
      default: {
        const size_t other = rng_.below(b.size());
        std::swap(b[at], b[other]);
        *d += "swap bytes " + std::to_string(at) + " and " + std::to_string(other) + "; ";
        break;
      }
    }
    return b;
  }

  static std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
      const size_t end = text.find('\n', start);
      if (end == std::string::npos) {
        lines.push_back(text.substr(start));
        break;
      }
      lines.push_back(text.substr(start, end - start + 1));
      start = end + 1;
    }
    return lines;
  }

  static std::string joined(const std::vector<std::string>& lines) {
    std::string text;
    for (const std::string& line : lines) text += line;
    return text;
  }

  // The value part of "key: value" (after the first ": "), or npos.
  static size_t value_start(const std::string& line) {
    const size_t colon = line.find(": ");
    return colon == std::string::npos ? std::string::npos : colon + 2;
  }

  std::string text_once(std::string text, std::string* d) {
    std::vector<std::string> lines = lines_of(text);
    if (lines.empty()) return binary_once(std::move(text), d);
    const size_t i = rng_.below(lines.size());
    const size_t j = rng_.below(lines.size());
    switch (rng_.below(5)) {
      case 0:
        lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(i));
        *d += "remove line " + std::to_string(i + 1) + "; ";
        break;
      case 1:
        lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(i), lines[i]);
        *d += "duplicate line " + std::to_string(i + 1) + "; ";
        break;
      case 2:
        std::swap(lines[i], lines[j]);
        *d += "swap lines " + std::to_string(i + 1) + " and " + std::to_string(j + 1) + "; ";
        break;
      case 3: {
        const size_t a = value_start(lines[i]), b = value_start(lines[j]);
        if (a == std::string::npos || b == std::string::npos) return binary_once(std::move(text), d);
        const std::string va = lines[i].substr(a), vb = lines[j].substr(b);
        lines[i] = lines[i].substr(0, a) + vb;
        lines[j] = lines[j].substr(0, b) + va;
        *d += "swap the values of lines " + std::to_string(i + 1) + " and " + std::to_string(j + 1) + "; ";
        break;
      }
      default: {
        static const char* const kValues[] = {
            "99999999999999999999999", "9223372036854775807", "-9223372036854775808",
            "4294967296", "2147483648", "-1", "0", "1e308", "1e309", "-1e309", ".nan", ".inf",
            "-.inf", "[]", "{}", "~", "\"\"", "0x7fffffff", "true", "1.5", "'", "[1, [2, {3: 4}]]",
            "*anchor", "&a [*a]", "!!binary AAAA", "\"\\xff\\u0000\"", "18446744073709551616"};
        const size_t a = value_start(lines[i]);
        if (a == std::string::npos) return binary_once(std::move(text), d);
        const std::string value = kValues[rng_.below(sizeof kValues / sizeof kValues[0])];
        const bool newline = !lines[i].empty() && lines[i].back() == '\n';
        lines[i] = lines[i].substr(0, a) + value + (newline ? "\n" : "");
        *d += "set the value of line " + std::to_string(i + 1) + " to " + value + "; ";
        break;
      }
    }
    return joined(lines);
  }

  data::Rng rng_;
};

}  // namespace tessera::fuzz

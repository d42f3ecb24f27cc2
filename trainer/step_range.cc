#include "trainer/step_range.h"

#include <charconv>
#include <stdexcept>
#include <string>

namespace tessera::trainer {

namespace {

std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

int64_t parse_step(std::string_view part) {
  part = trim(part);
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
  if (part.empty() || ec != std::errc() || end != part.data() + part.size()) {
    throw std::invalid_argument("'" + std::string(part) +
                                "' is not a step number (expected \"N\" or \"FIRST-LAST\", "
                                "e.g. \"7\" or \"5-6\")");
  }
  if (v < 1) throw std::invalid_argument("steps count from 1, got " + std::to_string(v));
  return v;
}

}  // namespace

std::optional<StepRange> parse_step_range(std::string_view text) {
  text = trim(text);
  if (text.empty()) return std::nullopt;
  const size_t dash = text.find('-');
  StepRange r;
  r.first = parse_step(text.substr(0, dash));
  r.last = dash == std::string_view::npos ? r.first : parse_step(text.substr(dash + 1));
  if (r.first > r.last) {
    throw std::invalid_argument("the first step " + std::to_string(r.first) +
                                " is after the last " + std::to_string(r.last));
  }
  return r;
}

}  // namespace tessera::trainer

// A range of optimizer steps written as text: "7" (one step) or "5-6" (first-last, inclusive),
// as logging.trace_steps holds it. Steps count from 1, as the trainer logs them.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tessera::trainer {

struct StepRange {
  int64_t first = 0;
  int64_t last = 0;  // >= first
  bool contains(int64_t step) const { return step >= first && step <= last; }
  friend bool operator==(const StepRange&, const StepRange&) = default;
};

// "" (or only blanks) -> std::nullopt (off). Blanks around the numbers are ignored.
// Throws std::invalid_argument saying what is wrong (not a number, 0, first > last); callers
// name their key.
std::optional<StepRange> parse_step_range(std::string_view text);

}  // namespace tessera::trainer

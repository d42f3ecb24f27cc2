// The recipe schema (internal to trainer/recipe/): every key written once, as the table in
// fields(). Each row names a dotted key, the Recipe member it lives in, a doc line and its
// single-key constraint. Parsing (load.cc), unknown-key detection, --set overrides, per-key checks
// (checks.cc) and the dump (dump.cc) all walk that table. The public API is trainer/recipe.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "trainer/recipe.h"

namespace tessera::trainer::recipe_detail {

template <typename T>
using Getter = T* (*)(Recipe&);
using Accessor = std::variant<Getter<int64_t>, Getter<uint64_t>, Getter<double>, Getter<bool>,
                              Getter<std::string>>;

// Constraints on one key's value alone. Bounds are doubles: every integer bound we use is small.
struct Constraint {
  std::optional<double> min;
  bool min_open = false;
  std::optional<double> max;
  bool max_open = false;
  std::vector<std::string_view> choices;  // allowed string values (empty = any)
  std::vector<std::string_view> planned;  // recognised values that are not implemented yet
  bool non_empty = false;
  // A sanity ceiling, checked after the range and reported on its own ("must be <= 1, got
  // 1.0e+30"): it stops typos such as an epsilon of 1e30, which trains without an error but
  // learns nothing, without changing how the range itself reads ("must be > 0").
  std::optional<double> ceiling;
};

struct Field {
  std::string_view key;  // "model.dim"
  Accessor get;
  std::string_view doc;
  Constraint check;

  std::string_view section() const { return key.substr(0, key.find('.')); }
  std::string_view name() const { return key.substr(key.find('.') + 1); }
};

inline constexpr std::string_view kSections[] = {"run",        "model",     "train",    "parallel",
                                                 "data",       "optimizer", "schedule", "precision",
                                                 "checkpoint", "logging",   "slurm"};

// Every key, in dump order. Immutable after first use.
const std::vector<Field>& fields();

// Getters take Recipe& so one table serves writing and reading; reading only takes an address.
template <typename T>
const T& read(Getter<T> get, const Recipe& r) {
  return *get(const_cast<Recipe&>(r));
}

const Field* find_field(std::string_view key);  // nullptr when unknown
bool is_section(std::string_view name);
const char* type_name(const Accessor& get);  // "int", "uint", "float", "bool", "string"

// "Did you mean": the closest candidate within two edits (an adjacent transposition is one
// edit), or "".
std::string closest(std::string_view word, const std::vector<std::string_view>& candidates);
// For an unknown dotted key (or bare name): a near-miss key, else the one key in another section
// with exactly this leaf name (train.lr -> optimizer.lr). Returns " (did you mean X?)" or "".
std::string did_you_mean(std::string_view key);
// The same for an unknown section name (falling back to keys).
std::string did_you_mean_section(std::string_view name);

}  // namespace tessera::trainer::recipe_detail

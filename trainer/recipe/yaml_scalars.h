// YAML scalars (internal to trainer/recipe/): reading one into a recipe field with the YAML 1.2
// core schema's types, strictly (an integer is a plain decimal integer scalar, a float a plain
// decimal number such as 1, 0.5 or 1e-3, a bool true/false; any scalar is a string), and writing
// a field back as text that loads to the same value.
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>

#include "trainer/recipe.h"
#include "trainer/recipe/schema.h"

namespace tessera::trainer::recipe_detail {

// What a node is, for "expected X, got Y" messages: "an empty value", "a list", "'abc'", ...
std::string describe(const YAML::Node& n);

// Stores `node` into the field; on a type mismatch returns the message and leaves it unchanged.
std::optional<std::string> assign(const Field& f, Recipe& r, const YAML::Node& node);

// The field's value as text, unquoted (messages; the dump quotes strings where needed).
std::string value_text(const Field& f, const Recipe& recipe);

// A string as a YAML scalar that loads back as the same string: plain when that is unambiguous,
// double-quoted with escapes otherwise.
std::string yaml_string(const std::string& s);

}  // namespace tessera::trainer::recipe_detail

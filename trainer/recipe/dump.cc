// The recipe as YAML (every key, with its doc line) and the key listing, both walking the schema.
#include <algorithm>
#include <string_view>
#include <utility>
#include <variant>

#include "trainer/recipe.h"
#include "trainer/recipe/schema.h"
#include "trainer/recipe/yaml_scalars.h"

namespace tessera::trainer {

using recipe_detail::Field;
using recipe_detail::fields;
using recipe_detail::Getter;
using recipe_detail::kSections;
using recipe_detail::type_name;
using recipe_detail::value_text;
using recipe_detail::yaml_string;

std::string recipe_to_yaml(const Recipe& recipe) {
  std::string out = "# tessera recipe: every key, defaults filled in";
  if (!recipe.source.empty() && recipe.source.find_first_of("\r\n") == std::string::npos) {
    out += " (loaded from " + recipe.source + ")";
  }
  out += "\n";
  for (std::string_view section : kSections) {
    std::vector<std::pair<std::string, const Field*>> lines;
    size_t width = 0;
    for (const Field& f : fields()) {
      if (f.section() != section) continue;
      std::string value = value_text(f, recipe);
      if (std::holds_alternative<Getter<std::string>>(f.get)) value = yaml_string(value);
      lines.emplace_back("  " + std::string(f.name()) + ": " + value, &f);
      width = std::max(width, lines.back().first.size());
    }
    out += std::string(section) + ":\n";
    for (const auto& [line, f] : lines) {
      out += line + std::string(width - line.size() + 2, ' ') + "# " + std::string(f->doc) + "\n";
    }
  }
  return out;
}

std::vector<RecipeKeyInfo> recipe_keys() {
  const Recipe defaults;
  std::vector<RecipeKeyInfo> keys;
  for (const Field& f : fields()) {
    std::string value = value_text(f, defaults);
    if (std::holds_alternative<Getter<std::string>>(f.get)) value = yaml_string(value);
    keys.push_back({std::string(f.key), type_name(f.get), value, std::string(f.doc)});
  }
  return keys;
}

}  // namespace tessera::trainer

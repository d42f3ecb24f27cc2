// Recipe loading: reading the file's sections and the --set overrides into a Recipe (each value
// through the schema, yaml_scalars.h), recording where every value came from, then the checks.
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>

#include "trainer/recipe.h"
#include "trainer/recipe/checks.h"
#include "trainer/recipe/origins.h"
#include "trainer/recipe/schema.h"
#include "trainer/recipe/yaml_scalars.h"

namespace tessera::trainer {

using recipe_detail::assign;
using recipe_detail::check_recipe;
using recipe_detail::describe;
using recipe_detail::did_you_mean;
using recipe_detail::did_you_mean_section;
using recipe_detail::Field;
using recipe_detail::find_field;
using recipe_detail::is_section;
using recipe_detail::Origin;
using recipe_detail::Origins;
using recipe_detail::position;

namespace {

Origin file_origin(const std::string& file, const YAML::Mark& mark) {
  return Origin{file, mark.line + 1, mark.column + 1};
}

[[noreturn]] void fail_at(const Origin& o, std::string_view key, const std::string& what) {
  throw RecipeError(o.source + ": " + std::string(key) + ": " + what + position(o));
}

void read_sections(const YAML::Node& root, const std::string& file, Recipe& recipe,
                   Origins& origins) {
  if (!root.IsMap()) {
    throw RecipeError(file + ": the top level must be a map of sections (run, model, ...), got " +
                      describe(root));
  }
  std::set<std::string> seen_sections;
  for (const auto& section_kv : root) {
    const YAML::Node& section_key = section_kv.first;
    const Origin at = file_origin(file, section_key.Mark());
    if (!section_key.IsScalar())
      fail_at(at, describe(section_key), "a section name must be a scalar");
    const std::string section = section_key.Scalar();
    if (!is_section(section))
      fail_at(at, section, "unknown section" + did_you_mean_section(section));
    if (!seen_sections.insert(section).second) fail_at(at, section, "duplicate section");

    const YAML::Node& body = section_kv.second;
    if (body.IsNull()) continue;  // "model:" with nothing under it keeps the defaults
    if (!body.IsMap()) {
      fail_at(file_origin(file, body.Mark()), section,
              "expected a map of keys, got " + describe(body));
    }
    std::set<std::string> seen_keys;
    for (const auto& kv : body) {
      const Origin key_at = file_origin(file, kv.first.Mark());
      if (!kv.first.IsScalar())
        fail_at(key_at, section, "a key must be a scalar, got " + describe(kv.first));
      const std::string key = section + "." + kv.first.Scalar();
      const Field* f = find_field(key);
      if (f == nullptr) fail_at(key_at, key, "unknown key" + did_you_mean(key));
      if (!seen_keys.insert(key).second) fail_at(key_at, key, "duplicate key");
      const Origin value_at = kv.second.IsNull() ? key_at : file_origin(file, kv.second.Mark());
      if (auto err = assign(*f, recipe, kv.second)) fail_at(value_at, key, *err);
      origins.set(key, value_at);
    }
  }
}

std::string trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

void apply_override(const std::string& text, Recipe& recipe, Origins& origins) {
  const std::string src = "--set " + text;
  const size_t eq = text.find('=');
  if (eq == std::string::npos) {
    throw RecipeError(src + ": expected key=value (e.g. --set model.dim=128)");
  }
  const std::string key = trim(std::string_view(text).substr(0, eq));
  if (key.empty()) throw RecipeError(src + ": expected key=value, got no key before '='");
  const std::string value = text.substr(eq + 1);
  const Field* f = find_field(key);
  if (f == nullptr) throw RecipeError(src + ": unknown key " + key + did_you_mean(key));
  YAML::Node node;
  try {
    node = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw RecipeError(src + ": " + key + ": cannot parse '" + value +
                      "' as a YAML scalar: " + e.msg);
  }
  if (auto err = assign(*f, recipe, node)) throw RecipeError(src + ": " + key + ": " + *err);
  origins.set(key, Origin{src, -1, -1, true});
}

}  // namespace

Recipe parse_recipe(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(yaml_text);
  } catch (const YAML::Exception& e) {
    throw RecipeError(source + ": YAML syntax error at line " + std::to_string(e.mark.line + 1) +
                      ", column " + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  if (docs.size() > 1) {
    throw RecipeError(source + ": expected one YAML document, found " +
                      std::to_string(docs.size()));
  }
  Recipe recipe;
  recipe.source = source;
  Origins origins(source);
  if (!docs.empty() && !docs[0].IsNull()) read_sections(docs[0], source, recipe, origins);
  for (const std::string& o : overrides) apply_override(o, recipe, origins);
  if (!origins.has("data.path")) {
    throw RecipeError(source +
                      ": data.path: required key is missing (the dataset directory "
                      "written by `tessera prepare`)");
  }
  check_recipe(recipe, origins);
  recipe.model.block_precision = kernels::parse_precision(recipe.precision.compute);
  return recipe;
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw RecipeError(path + ": cannot read recipe: is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RecipeError(path + ": cannot open recipe file (missing or unreadable)");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw RecipeError(path + ": error while reading recipe file");
  return parse_recipe(text.str(), path, overrides);
}

}  // namespace tessera::trainer

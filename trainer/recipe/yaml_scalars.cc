// YAML scalars into and out of recipe fields (yaml_scalars.h). Types follow the YAML 1.2 core
// schema, strictly: an integer is a plain decimal integer scalar, a float is a plain decimal
// number (1, 0.5, 1e-3), a bool is true/false.
#include "trainer/recipe/yaml_scalars.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <type_traits>
#include <variant>

namespace tessera::trainer::recipe_detail {
namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// from_chars rejects a leading '+'; YAML allows it.
std::string_view drop_plus(std::string_view s) {
  return !s.empty() && s[0] == '+' ? s.substr(1) : s;
}

bool looks_like_int(std::string_view s) {
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) s.remove_prefix(1);
  return all_digits(s);
}

bool looks_like_float(std::string_view s) {
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) s.remove_prefix(1);
  const size_t e = s.find_first_of("eE");
  std::string_view mant = s.substr(0, e);
  if (e != std::string_view::npos) {
    std::string_view exp = s.substr(e + 1);
    if (!exp.empty() && (exp[0] == '+' || exp[0] == '-')) exp.remove_prefix(1);
    if (!all_digits(exp)) return false;
  }
  const size_t dot = mant.find('.');
  if (dot == std::string_view::npos) return all_digits(mant);
  const std::string_view whole = mant.substr(0, dot), frac = mant.substr(dot + 1);
  if (whole.empty() && frac.empty()) return false;
  return (whole.empty() || all_digits(whole)) && (frac.empty() || all_digits(frac));
}

// A plain (untagged, unquoted) scalar, or one explicitly tagged with the matching core type.
bool plain_or_tagged(const YAML::Node& n, std::string_view core_type) {
  return n.IsScalar() &&
         (n.Tag() == "?" || n.Tag() == std::string("tag:yaml.org,2002:") + std::string(core_type));
}

std::optional<std::string> set_int(int64_t* out, const YAML::Node& n) {
  const std::string expected = "expected an integer, got " + describe(n);
  if (!plain_or_tagged(n, "int") || !looks_like_int(n.Scalar())) return expected;
  const std::string_view s = drop_plus(n.Scalar());
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec == std::errc::result_out_of_range) return expected + " (out of range)";
  if (ec != std::errc() || end != s.data() + s.size()) return expected;
  return std::nullopt;
}

std::optional<std::string> set_uint(uint64_t* out, const YAML::Node& n) {
  const std::string expected = "expected a non-negative integer, got " + describe(n);
  if (!plain_or_tagged(n, "int") || !looks_like_int(n.Scalar())) return expected;
  const std::string_view s = drop_plus(n.Scalar());
  if (!s.empty() && s[0] == '-') return expected;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec == std::errc::result_out_of_range) return expected + " (out of range)";
  if (ec != std::errc() || end != s.data() + s.size()) return expected;
  return std::nullopt;
}

std::optional<std::string> set_double(double* out, const YAML::Node& n) {
  const std::string expected = "expected a number, got " + describe(n);
  if (!(plain_or_tagged(n, "float") || plain_or_tagged(n, "int")) ||
      !looks_like_float(n.Scalar())) {
    return expected;
  }
  const std::string_view s = drop_plus(n.Scalar());
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec == std::errc::result_out_of_range) return expected + " (out of range)";
  if (ec != std::errc() || end != s.data() + s.size()) return expected;
  return std::nullopt;
}

std::optional<std::string> set_bool(bool* out, const YAML::Node& n) {
  if (plain_or_tagged(n, "bool")) {
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return *out = true, std::nullopt;
    if (s == "false" || s == "False" || s == "FALSE") return *out = false, std::nullopt;
  }
  return "expected true or false, got " + describe(n);
}

// Any scalar is a string (quoted or not); an empty value is the empty string.
std::optional<std::string> set_string(std::string* out, const YAML::Node& n) {
  if (n.IsNull()) return *out = "", std::nullopt;
  if (n.IsScalar()) return *out = n.Scalar(), std::nullopt;
  return "expected a string, got " + describe(n);
}

// Shortest text that parses back to exactly `v`, always with a '.' so YAML 1.1 readers (PyYAML)
// also see a float: 0.001, 1.0, 1.0e-06.
std::string format_double(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, end);
  if (ec != std::errc() || !std::isfinite(v) || s.find('.') != std::string::npos) return s;
  const size_t e = s.find('e');
  return e == std::string::npos ? s + ".0" : s.insert(e, ".0");
}

}  // namespace

// What a node is, for "expected X, got Y" messages.
std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "an empty value";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Scalar:
      if (n.Tag() == "?") return "'" + n.Scalar() + "'";
      if (n.Tag() == "!") return "the quoted string \"" + n.Scalar() + "\"";
      return "'" + n.Scalar() + "' tagged " + n.Tag();
    default:
      return "nothing";
  }
}

// Stores `node` into the field; on a type mismatch returns the message and leaves it unchanged.
std::optional<std::string> assign(const Field& f, Recipe& r, const YAML::Node& node) {
  return std::visit(
      [&](auto get) -> std::optional<std::string> {
        auto* p = get(r);
        using T = std::remove_pointer_t<decltype(p)>;
        T v{};
        std::optional<std::string> err;
        if constexpr (std::is_same_v<T, int64_t>) err = set_int(&v, node);
        if constexpr (std::is_same_v<T, uint64_t>) err = set_uint(&v, node);
        if constexpr (std::is_same_v<T, double>) err = set_double(&v, node);
        if constexpr (std::is_same_v<T, bool>) err = set_bool(&v, node);
        if constexpr (std::is_same_v<T, std::string>) err = set_string(&v, node);
        if (!err) *p = std::move(v);
        return err;
      },
      f.get);
}

// The field's value as text, unquoted (messages; the dump quotes strings where needed).
std::string value_text(const Field& f, const Recipe& recipe) {
  return std::visit(
      [&](auto get) -> std::string {
        const auto& v = read(get, recipe);
        using T = std::remove_cvref_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return v;
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          return format_double(v);
        } else {
          return std::to_string(v);
        }
      },
      f.get);
}

// A string as a YAML scalar that loads back as the same string: plain when that is unambiguous,
// double-quoted with escapes otherwise.
std::string yaml_string(const std::string& s) {
  const bool plain_safe = !s.empty() && s != "~" && s != "null" && s != "Null" && s != "NULL" &&
                          std::all_of(s.begin(), s.end(),
                                      [](char c) {
                                        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                               (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                                               c == '/' || c == '-' || c == '+';
                                      }) &&
                          s[0] != '-' && s[0] != '.';
  if (plain_safe) return s;
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace tessera::trainer::recipe_detail

// Where each recipe key's value came from (internal to trainer/recipe/), so that errors name the
// file and line, or the --set that gave it. Loading records them; the checks read them.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>

namespace tessera::trainer::recipe_detail {

struct Origin {
  std::string source;  // file path, or "--set key=value"
  int line = -1;       // 1-based, when the value came from the file
  int column = -1;
  bool from_override = false;
};

class Origins {
 public:
  explicit Origins(std::string file) : file_{std::move(file)} {}

  void set(std::string_view key, Origin origin) { by_key_[std::string(key)] = std::move(origin); }
  bool has(std::string_view key) const { return by_key_.count(std::string(key)) > 0; }
  // Keys left at their default belong to the file (it chose not to set them).
  Origin of(std::string_view key) const {
    const auto it = by_key_.find(std::string(key));
    return it == by_key_.end() ? Origin{file_} : it->second;
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
  std::map<std::string, Origin> by_key_;
};

// " (line L, column C)" for a value from the file, else "".
inline std::string position(const Origin& o) {
  if (o.line < 0) return "";
  return " (line " + std::to_string(o.line) + ", column " + std::to_string(o.column) + ")";
}

}  // namespace tessera::trainer::recipe_detail

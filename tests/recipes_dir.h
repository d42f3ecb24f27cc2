// Where the tests find the shipped recipes and cluster files: $TESSERA_SOURCE_DIR/recipes (ctest
// sets it), else the source tree this header is in.
#pragma once

#include <cstdlib>
#include <filesystem>

namespace tessera::test_support {

inline std::filesystem::path recipes_dir() {
  if (const char* src = std::getenv("TESSERA_SOURCE_DIR")) {
    return std::filesystem::path(src) / "recipes";
  }
  return std::filesystem::path(__FILE__).parent_path().parent_path() / "recipes";
}

}  // namespace tessera::test_support

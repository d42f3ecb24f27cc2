#include "cluster/shell_quote.h"

#include <stdexcept>

namespace tessera::cluster {

std::string shell_quote(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\0') throw std::invalid_argument("a NUL byte cannot be passed to a shell");
    if (c == '\'') {
      out += "'\\''";  // close, escaped quote, reopen
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace tessera::cluster

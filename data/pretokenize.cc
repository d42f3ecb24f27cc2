#include "data/pretokenize.h"

namespace tessera::data {

size_t last_safe_cut(std::string_view text) {
  using namespace pretokenize_detail;
  for (size_t p = text.size() - (text.empty() ? 0 : 1); p > 0; --p) {
    const unsigned char before = static_cast<unsigned char>(text[p - 1]);
    const unsigned char after = static_cast<unsigned char>(text[p]);
    if ((before == '\n' && classify(after) != kSpace) ||
        (after == '\n' && classify(before) != kSpace)) {
      return p;
    }
  }
  return 0;
}

}  // namespace tessera::data

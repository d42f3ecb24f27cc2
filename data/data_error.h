// The one exception type of data/: bad input, unreadable or inconsistent files. Every message names
// the file (and, where there is one, the key or position) it is about.
#pragma once

#include <stdexcept>

namespace tessera::data {

class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tessera::data

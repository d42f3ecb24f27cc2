#include "parallel/env_number.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace tessera::parallel {

double env_number(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const double x = std::strtod(v, &end);
  if (*end != '\0') {
    throw std::invalid_argument(std::string(name) + "='" + v + "' is not a number");
  }
  return x;
}

}  // namespace tessera::parallel

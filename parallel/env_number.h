// A number from the environment (the communicators' and checkpoints' timeouts, poll intervals).
#pragma once

namespace tessera::parallel {

// $name as a number; `fallback` when it is unset or empty. Throws std::invalid_argument naming
// the variable and its text when it is not a whole number (trailing text included).
double env_number(const char* name, double fallback);

}  // namespace tessera::parallel

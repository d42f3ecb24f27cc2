// CPU loop policy shared by the kernels' .cc files (not part of the public API).
#pragma once

#include <cstdint>

namespace tessera::kernels::cpu {

// Below this many elements of work an OpenMP region costs more than it saves.
constexpr int64_t kMinParallelWork = int64_t{1} << 14;

}  // namespace tessera::kernels::cpu

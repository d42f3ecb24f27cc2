#include "kernels/backend.h"

namespace tessera::kernels {

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::kF32: return "fp32";
  }
  return "unknown";
}

}  // namespace tessera::kernels

#include "kernels/backend.h"

#include <stdexcept>
#include <string>

namespace tessera::kernels {

int64_t attention_saved_numel(Device /*device*/, const AttentionShape& s) {
  return s.batch * s.heads * s.seq_len;  // one logsumexp per score row, on every device
}

int64_t attention_scratch_numel(Device /*device*/, const AttentionShape& s) {
  return s.batch * s.heads * s.seq_len;  // D = rowsum(dO * O), on every device
}

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::kF32: return "fp32";
    case Precision::kBF16: return "bf16";
    case Precision::kFP8: return "fp8";
  }
  return "unknown";
}

Precision parse_precision(const std::string& name) {
  for (Precision p : {Precision::kF32, Precision::kBF16, Precision::kFP8}) {
    if (name == precision_name(p)) return p;
  }
  throw std::invalid_argument("unknown precision '" + name + "' (fp32, bf16 or fp8)");
}

}  // namespace tessera::kernels

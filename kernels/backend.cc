#include "kernels/backend.h"

namespace tessera::kernels {

int64_t attention_saved_numel(Device device, const AttentionShape& s) {
  return device == Device::kCPU ? s.batch * s.heads * s.seq_len * s.seq_len
                                : s.batch * s.heads * s.seq_len;
}

int64_t attention_scratch_numel(Device device, const AttentionShape& s) {
  return device == Device::kCPU ? s.seq_len * s.seq_len : s.batch * s.heads * s.seq_len;
}

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::kF32: return "fp32";
  }
  return "unknown";
}

}  // namespace tessera::kernels

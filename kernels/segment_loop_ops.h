// SegmentLoopOps: the grouped (routed-expert) linear ops of BackendOps as one linear op per
// non-empty row segment, for backends without a grouped GEMM of their own (both today; a grouped
// cuBLAS call may replace the CUDA one's later). Per segment, the same arithmetic as the
// corresponding linear op, in segment order, so results do not depend on the grouping.
#pragma once

#include <span>

#include "kernels/backend.h"

namespace tessera::kernels {

template <typename T>
class SegmentLoopOps : public BackendOps<T> {
 public:
  void grouped_linear_forward(T* y, int64_t ldy, const T* x, int64_t ldx, const T* W,
                              std::span<const RowSegment> segments, int64_t I, int64_t O,
                              const LinearOptions& o) override {
    for (const RowSegment& s : segments) {
      if (s.rows == 0) continue;
      this->linear_forward(y + s.offset * ldy, ldy, x + s.offset * ldx, ldx,
                           W + s.group * O * I, s.rows, I, O, o);
    }
  }
  void grouped_linear_backward_input(T* dx, int64_t lddx, const T* dy, int64_t lddy, const T* W,
                                     std::span<const RowSegment> segments, int64_t I, int64_t O,
                                     const LinearOptions& o) override {
    for (const RowSegment& s : segments) {
      if (s.rows == 0) continue;
      this->linear_backward_input(dx + s.offset * lddx, lddx, dy + s.offset * lddy, lddy,
                                  W + s.group * O * I, s.rows, I, O, o);
    }
  }
  void grouped_linear_backward_weight(T* dW, const T* dy, int64_t lddy, const T* x, int64_t ldx,
                                      std::span<const RowSegment> segments, int64_t I, int64_t O,
                                      Precision precision) override {
    for (const RowSegment& s : segments) {
      if (s.rows == 0) continue;
      this->linear_backward_weight(dW + s.group * O * I, dy + s.offset * lddy, lddy,
                                   x + s.offset * ldx, ldx, s.rows, I, O, precision);
    }
  }
};

}  // namespace tessera::kernels

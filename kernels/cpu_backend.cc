#include "kernels/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/bf16_gemm_choice.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/fp8_quantize.h"
#include "kernels/gemm.h"
#include "kernels/gemm_operand.h"
#include "kernels/linear_gemm.h"
#include "kernels/onednn_bf16_gemm.h"
#include "kernels/permute.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "kernels/segment_loop_ops.h"
#include "kernels/swiglu.h"
#include "kernels/vector_ops.h"

namespace tessera::kernels {

namespace {

// Large copies and zero fills in chunks over the threads (one core's bandwidth is well below
// the socket's); small ones in one call.
constexpr size_t kByteChunk = size_t{1} << 18;

void parallel_copy(void* dst, const void* src, size_t bytes) {
  const int64_t chunks = static_cast<int64_t>((bytes + kByteChunk - 1) / kByteChunk);
#pragma omp parallel for if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t off = static_cast<size_t>(c) * kByteChunk;
    std::memcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off,
                std::min(kByteChunk, bytes - off));
  }
}

void parallel_zero(void* dst, size_t bytes) {
  const int64_t chunks = static_cast<int64_t>((bytes + kByteChunk - 1) / kByteChunk);
#pragma omp parallel for if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t off = static_cast<size_t>(c) * kByteChunk;
    std::memset(static_cast<char*>(dst) + off, 0, std::min(kByteChunk, bytes - off));
  }
}

class CpuEvent final : public Event {
 public:
  bool ready() override { return true; }
  void synchronize() override {}
  void* native() override { return nullptr; }
};

// C (m, n) [ld ldc] = alpha-free A·B^T + beta C, with A = op_a(a) (m, k) and B = op_b(b) (n, k)
// as the precision's GEMM sees them (kernels/gemm_operand.h): rounded copies, then an fp32 GEMM;
// bf16 on the native path rounds into oneDNN's bf16 matmul instead (kernels/bf16_gemm_choice.h).
// Scratch grows to the largest operands and is reused: one instance per thread that runs GEMMs
// (CpuOps keeps one for each thread of its parallel regions).
class LowPrecisionGemm {
 public:
  explicit LowPrecisionGemm(Bf16Gemm bf16)
      : native_(bf16 == Bf16Gemm::kNative ? std::make_unique<OneDnnBf16Gemm>() : nullptr) {}

  void run(Precision p, int64_t m, int64_t n, int64_t k,  //
           const float* a, int64_t lda, Trans trans_a, Fp8Tiling tiling_a,  //
           const float* b, int64_t ldb, Trans trans_b, Fp8Tiling tiling_b,  //
           float beta, float* c, int64_t ldc) {
    if (p == Precision::kBF16 && native_) {
      native_->run(m, n, k, a, lda, trans_a, b, ldb, trans_b, beta, c, ldc);
      return;
    }
    a_.resize(static_cast<size_t>(m * k));
    b_.resize(static_cast<size_t>(n * k));
    round_gemm_operand(a_.data(), p, tiling_a, trans_a, a, lda, m, k);
    round_gemm_operand(b_.data(), p, tiling_b, trans_b, b, ldb, n, k);
    gemm<float>(Trans::kNo, Trans::kYes, m, n, k, 1.0f, a_.data(), k, b_.data(), k, beta, c, ldc);
  }

 private:
  std::unique_ptr<OneDnnBf16Gemm> native_;  // null: bf16 is emulated
  std::vector<float> a_, b_;
};

// Every op forwards to the CPU kernel of the same name; the GEMM-shaped ones to kernels::gemm,
// or (float, bf16/fp8) to LowPrecisionGemm with V3's tilings: forward x (1x128) by W (128x128),
// dgrad dy (1x128) by W^T (128x128), wgrad dy^T by x^T (both tiled along the tokens: 128x1).
template <typename T>
class CpuOps final : public SegmentLoopOps<T> {
 public:
  explicit CpuOps(Bf16Gemm bf16) : bf16_(bf16) { reserve_lp(1); }

  void linear_forward(T* y, int64_t ldy, const T* x, int64_t ldx, const T* W, int64_t N,
                      int64_t I, int64_t O, const LinearOptions& o) override {
    const T beta = o.accumulate ? T(1) : T(0);
    if (o.precision != Precision::kF32) {
      if constexpr (std::is_same_v<T, float>) {
        linear_forward_gemm(y, ldy, x, ldx, W, N, I, O, o.accumulate).run_on(lp(), o.precision);
        return;
      }
      refuse(o.precision);
    }
    gemm<T>(Trans::kNo, Trans::kYes, N, O, I, T(1), x, ldx, W, I, beta, y, ldy);
  }
  void linear_backward_input(T* dx, int64_t lddx, const T* dy, int64_t lddy, const T* W,
                             int64_t N, int64_t I, int64_t O, const LinearOptions& o) override {
    const T beta = o.accumulate ? T(1) : T(0);
    if (o.precision != Precision::kF32) {
      if constexpr (std::is_same_v<T, float>) {
        linear_backward_input_gemm(dx, lddx, dy, lddy, W, N, I, O, o.accumulate)
            .run_on(lp(), o.precision);
        return;
      }
      refuse(o.precision);
    }
    gemm<T>(Trans::kNo, Trans::kNo, N, I, O, T(1), dy, lddy, W, I, beta, dx, lddx);
  }
  void linear_backward_weight(T* dW, const T* dy, int64_t lddy, const T* x, int64_t ldx,
                              int64_t N, int64_t I, int64_t O, const Precision p) override {
    if (p != Precision::kF32) {
      if constexpr (std::is_same_v<T, float>) {
        linear_backward_weight_gemm(dW, dy, lddy, x, ldx, N, I, O).run_on(lp(), p);
        return;
      }
      refuse(p);
    }
    gemm<T>(Trans::kYes, Trans::kNo, O, I, N, T(1), dy, lddy, x, ldx, T(1), dW, I);
  }

  // Grouped maps: in float with several threads, the segments (experts) are spread over the
  // threads, each GEMM on one thread (oneDNN runs single-threaded inside a parallel region):
  // small expert GEMMs lose when split (bf16 on oneDNN's native matmul, bench-moe, Zen 5: the
  // grouped maps ran no faster on 2 threads than on 1). Forward and input gradient write
  // disjoint rows; the weight gradient gives each thread whole groups, their segments in order,
  // so the results are those of the segments in order. Otherwise (one thread, double) the
  // segments run in order on all threads.
  void grouped_linear_forward(T* y, int64_t ldy, const T* x, int64_t ldx, const T* W,
                              std::span<const RowSegment> segments, int64_t I, int64_t O,
                              const LinearOptions& o) override {
    if (!segments_in_parallel(segments)) {
      return SegmentLoopOps<T>::grouped_linear_forward(y, ldy, x, ldx, W, segments, I, O, o);
    }
    const std::vector<RowSegment> order = largest_first(segments);
    for_each_on_threads(order.size(), [&](size_t i) {
      const RowSegment& s = order[i];
      linear_forward(y + s.offset * ldy, ldy, x + s.offset * ldx, ldx, W + s.group * O * I,
                     s.rows, I, O, o);
    });
  }
  void grouped_linear_backward_input(T* dx, int64_t lddx, const T* dy, int64_t lddy, const T* W,
                                     std::span<const RowSegment> segments, int64_t I, int64_t O,
                                     const LinearOptions& o) override {
    if (!segments_in_parallel(segments)) {
      return SegmentLoopOps<T>::grouped_linear_backward_input(dx, lddx, dy, lddy, W, segments, I,
                                                              O, o);
    }
    const std::vector<RowSegment> order = largest_first(segments);
    for_each_on_threads(order.size(), [&](size_t i) {
      const RowSegment& s = order[i];
      linear_backward_input(dx + s.offset * lddx, lddx, dy + s.offset * lddy, lddy,
                            W + s.group * O * I, s.rows, I, O, o);
    });
  }
  void grouped_linear_backward_weight(T* dW, const T* dy, int64_t lddy, const T* x, int64_t ldx,
                                      std::span<const RowSegment> segments, int64_t I, int64_t O,
                                      Precision p) override {
    if (!segments_in_parallel(segments)) {
      return SegmentLoopOps<T>::grouped_linear_backward_weight(dW, dy, lddy, x, ldx, segments, I,
                                                               O, p);
    }
    // Groups, largest first; each keeps its segments in their order.
    std::vector<int64_t> groups;
    std::vector<int64_t> rows_of;
    for (const RowSegment& s : segments) {
      if (s.rows == 0) continue;
      const auto it = std::find(groups.begin(), groups.end(), s.group);
      if (it == groups.end()) {
        groups.push_back(s.group);
        rows_of.push_back(s.rows);
      } else {
        rows_of[it - groups.begin()] += s.rows;
      }
    }
    std::vector<size_t> order(groups.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return rows_of[a] > rows_of[b]; });
    for_each_on_threads(order.size(), [&](size_t i) {
      const int64_t g = groups[order[i]];
      for (const RowSegment& s : segments) {
        if (s.rows == 0 || s.group != g) continue;
        linear_backward_weight(dW + g * O * I, dy + s.offset * lddy, lddy, x + s.offset * ldx,
                               ldx, s.rows, I, O, p);
      }
    });
  }

  // saved: each score row's logsumexp (B, H, T); scratch: D (B, H, T), as the CUDA backend's.
  void attention_forward(T* out, int64_t ld_out, T* saved, const T* q, const T* k, const T* v,
                         int64_t ld_qkv, const AttentionShape& s) override {
    kernels::attention_forward(out, ld_out, saved, q, k, v, ld_qkv, s.batch, s.seq_len, s.heads,
                               s.head_dim);
  }
  void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv, T* scratch, const T* dout,
                          const T* /*out*/, int64_t ld_out, const T* saved, const T* q,
                          const T* k, const T* v, int64_t ld_qkv,
                          const AttentionShape& s) override {
    kernels::attention_backward(dq, dk, dv, ld_dqkv, scratch, dout, ld_out, saved, q, k, v,
                                ld_qkv, s.batch, s.seq_len, s.heads, s.head_dim);
  }

  void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int64_t C,
                       T eps) override {
    kernels::rmsnorm_forward(y, rstd, x, w, N, C, eps);
  }
  void rmsnorm_backward_input(T* dx, const T* dy, const T* x, const T* w, const T* rstd,
                              int64_t N, int64_t C, bool accumulate) override {
    kernels::rmsnorm_backward_input(dx, dy, x, w, rstd, N, C, accumulate);
  }
  void rmsnorm_backward_weight(T* dw, const T* dy, const T* x, const T* rstd, int64_t N,
                               int64_t C) override {
    kernels::rmsnorm_backward_weight(dw, dy, x, rstd, N, C);
  }
  void rope_table(T* cos_table, T* sin_table, int64_t T_len, int64_t hd, double theta) override {
    kernels::rope_table(cos_table, sin_table, T_len, hd, theta);
  }
  void rope_forward(T* x, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                    int64_t T_len, int64_t H, int64_t hd) override {
    kernels::rope_forward(x, ld, cos_table, sin_table, B, T_len, H, hd);
  }
  void rope_backward(T* dx, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                     int64_t T_len, int64_t H, int64_t hd) override {
    kernels::rope_backward(dx, ld, cos_table, sin_table, B, T_len, H, hd);
  }
  void swiglu_forward(T* h, const T* a, const T* b, int64_t ld_ab, int64_t N,
                      int64_t F) override {
    kernels::swiglu_forward(h, a, b, ld_ab, N, F);
  }
  void swiglu_backward(T* da, T* db, const T* dh, const T* a, const T* b, int64_t ld_ab,
                       int64_t N, int64_t F) override {
    kernels::swiglu_backward(da, db, dh, a, b, ld_ab, N, F);
  }

  void router_forward(T* scores, int32_t* expert_idx, T* gates, const T* logits, const T* bias,
                      int64_t N, const RouterShape& shape) override {
    kernels::router_forward(scores, expert_idx, gates, logits, bias, N, shape);
  }
  void router_backward(T* dlogits, const T* dgates, const T* dscores_extra, const T* scores,
                       const int32_t* expert_idx, int64_t N, const RouterShape& shape) override {
    kernels::router_backward(dlogits, dgates, dscores_extra, scores, expert_idx, N, shape);
  }
  double seq_balance_loss_forward(const T* scores, const int32_t* expert_idx, int64_t B,
                                  int64_t T_len, int64_t E, int64_t k, double alpha) override {
    return kernels::seq_balance_loss_forward(scores, expert_idx, B, T_len, E, k, alpha);
  }
  void seq_balance_loss_backward(T* dscores, const T* scores, const int32_t* expert_idx,
                                 int64_t B, int64_t T_len, int64_t E, int64_t k, double alpha,
                                 T scale) override {
    kernels::seq_balance_loss_backward(dscores, scores, expert_idx, B, T_len, E, k, alpha, scale);
  }
  void moe_build_permutation(int32_t* pos_of_slot, int32_t* slot_of_pos, int64_t* expert_counts,
                             const int32_t* expert_idx, int64_t N, int64_t k,
                             int64_t E) override {
    kernels::moe_build_permutation(pos_of_slot, slot_of_pos, expert_counts, expert_idx, N, k, E);
  }
  void moe_permute(T* xp, const T* x, const int32_t* slot_of_pos, int64_t N, int64_t k,
                   int64_t C) override {
    kernels::moe_permute(xp, x, slot_of_pos, N, k, C);
  }
  void moe_permute_backward(T* dx, const T* dxp, const int32_t* pos_of_slot, int64_t N,
                            int64_t k, int64_t C, bool accumulate) override {
    kernels::moe_permute_backward(dx, dxp, pos_of_slot, N, k, C, accumulate);
  }
  void moe_unpermute_combine(T* y, const T* yp, const T* gates, const int32_t* pos_of_slot,
                             int64_t N, int64_t k, int64_t C, bool accumulate) override {
    kernels::moe_unpermute_combine(y, yp, gates, pos_of_slot, N, k, C, accumulate);
  }
  void moe_unpermute_combine_backward(T* dyp, T* dgates, const T* dy, const T* yp,
                                      const T* gates, const int32_t* pos_of_slot, int64_t N,
                                      int64_t k, int64_t C) override {
    kernels::moe_unpermute_combine_backward(dyp, dgates, dy, yp, gates, pos_of_slot, N, k, C);
  }

  void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t N, int64_t C,
                         int64_t /*V: ids are checked by the loader*/) override {
    kernels::embedding_forward(out, ids, table, N, C);
  }
  void embedding_backward_weight(T* dtable, const T* dout, const int32_t* ids, int64_t N,
                                 int64_t C, int64_t /*V*/) override {
    kernels::embedding_backward_weight(dtable, dout, ids, N, C);
  }
  void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets,
                             int64_t N, int64_t V) override {
    kernels::cross_entropy_forward(losses, lse, logits, targets, N, V);
  }
  void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                              int64_t N, int64_t V, T scale) override {
    kernels::cross_entropy_backward(dlogits, logits, lse, targets, N, V, scale);
  }
  void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWStep& hp,
                    bool decay, T grad_scale) override {
    kernels::adamw_update(param, grad, m, v, n, hp, decay, grad_scale);
  }

  void adamw_update_bf16_moments(T* param, const T* grad, uint16_t* m, uint16_t* v, int64_t n,
                                 const AdamWStep& hp, bool decay, T grad_scale) override {
    if constexpr (std::is_same_v<T, float>) {
      kernels::adamw_update_bf16_moments(param, grad, m, v, n, hp, decay, grad_scale);
    } else {
      throw std::invalid_argument("cpu backend: adamw_update_bf16_moments takes float, not "
                                  "double");
    }
  }

  void fp8_quantize_rows(uint8_t* codes, float* scales, const T* x, int64_t ldx, int64_t N,
                         int64_t C) override {
    if constexpr (std::is_same_v<T, float>) {
      kernels::fp8_quantize(codes, scales, Fp8Tiling::k1x128, Trans::kNo, x, ldx, N, C);
    } else {
      throw std::invalid_argument("cpu backend: fp8_quantize_rows takes float, not double");
    }
  }
  void fp8_dequantize_rows(T* x, const uint8_t* codes, const float* scales, int64_t N,
                           int64_t C) override {
    if constexpr (std::is_same_v<T, float>) {
      kernels::fp8_dequantize(x, codes, scales, Fp8Tiling::k1x128, N, C);
    } else {
      throw std::invalid_argument("cpu backend: fp8_dequantize_rows takes float, not double");
    }
  }

  void copy(T* dst, const T* src, int64_t n) override {
    if (n > 0 && dst != src) parallel_copy(dst, src, sizeof(T) * n);
  }
  void fill(T* x, T value, int64_t n) override {
    if (value == T(0) && !std::signbit(value)) {
      parallel_zero(x, sizeof(T) * n);  // +0 is all zero bits
      return;
    }
    std::fill(x, x + n, value);
  }
  void copy_2d(T* dst, int64_t ld_dst, const T* src, int64_t ld_src, int64_t rows, int64_t cols,
               bool accumulate) override {
    kernels::copy_2d(dst, ld_dst, src, ld_src, rows, cols, accumulate);
  }
  void add_inplace(T* y, const T* x, int64_t n) override { kernels::add_inplace(y, x, n); }
  void scale_inplace(T* x, T s, int64_t n) override { kernels::scale_inplace(x, s, n); }
  double sum(const T* x, int64_t n) override {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += x[i];
    return s;
  }
  double sum_squares(const T* x, int64_t n) override { return kernels::sum_squares(x, n); }

 private:
  // bf16/fp8 exist for float only; the double ops (gradient checks) refuse them.
  [[noreturn]] static void refuse(Precision p) {
    throw std::invalid_argument(std::string("cpu backend: ") + precision_name(p) +
                                " linear maps take float, not double");
  }
  // On the calling thread, before a parallel region: a low-precision GEMM for each of its
  // threads (each thread's GEMMs then use their own scratch and, native bf16, primitives).
  bool segments_in_parallel(std::span<const RowSegment> segments) {
    if (!std::is_same_v<T, float> || cpu_threads() < 2) return false;
    int non_empty = 0;
    for (const RowSegment& s : segments) non_empty += s.rows > 0 ? 1 : 0;
    if (non_empty < 2) return false;
    reserve_lp(cpu_threads());
    return true;
  }
  LowPrecisionGemm& lp() { return *lp_.at(omp_in_parallel() ? omp_get_thread_num() : 0); }
  // Grows only. Each instance keeps scratch for the largest operands it has rounded: threads x
  // one expert's weights at most beyond [0]'s (the dense maps run on [0] alone: splitting them
  // over the threads would copy their largest weight, the head's, once per thread).
  void reserve_lp(int threads) {
    while (static_cast<int>(lp_.size()) < threads) {
      lp_.push_back(std::make_unique<LowPrecisionGemm>(bf16_));
    }
  }
  // body(i) for every i < n, handed out one at a time to the threads as they come free. No
  // exception may leave a parallel region (it would end the process): each is kept, and the
  // first by index is rethrown once every thread is done.
  template <typename Body>
  static void for_each_on_threads(size_t n, const Body& body) {
    std::vector<std::exception_ptr> failed(n);
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < n; ++i) {
      try {
        body(i);
      } catch (...) {
        failed[i] = std::current_exception();
      }
    }
    for (const std::exception_ptr& e : failed) {
      if (e) std::rethrow_exception(e);
    }
  }
  // The non-empty segments, most rows first (stable), for dynamic scheduling.
  static std::vector<RowSegment> largest_first(std::span<const RowSegment> segments) {
    std::vector<RowSegment> order;
    for (const RowSegment& s : segments) {
      if (s.rows > 0) order.push_back(s);
    }
    std::stable_sort(order.begin(), order.end(),
                     [](const RowSegment& a, const RowSegment& b) { return a.rows > b.rows; });
    return order;
  }
  Bf16Gemm bf16_;
  // Used by the float ops: [0] outside parallel regions, [t] by thread t inside one.
  std::vector<std::unique_ptr<LowPrecisionGemm>> lp_;
};

}  // namespace

CpuBackend::CpuBackend() : CpuBackend(bf16_gemm_from_environment()) {}

namespace {

Bf16Gemm checked(Bf16Gemm gemm) {
  if (gemm == Bf16Gemm::kNative && !cpu_has_native_bf16()) {
    throw std::invalid_argument(
        "cpu backend: native bf16 GEMM requested, but oneDNN's effective ISA on this CPU has no "
        "bf16 (avx512_core_bf16 or amx)");
  }
  return gemm;
}

}  // namespace

CpuBackend::CpuBackend(Bf16Gemm bf16_gemm)
    : bf16_gemm_(checked(bf16_gemm)),
      f32_(std::make_unique<CpuOps<float>>(bf16_gemm)),
      // The double ops refuse bf16: no oneDNN matmul for them.
      f64_(std::make_unique<CpuOps<double>>(Bf16Gemm::kEmulated)) {
  capabilities_.device = Device::kCPU;
  capabilities_.name = std::string("cpu (") + gemm_backend_description() + " sgemm, " +
                       bf16_gemm_name(bf16_gemm) + " bf16 gemm, " +
                       std::to_string(cpu_threads()) + " thread(s))";
  capabilities_.host_accessible = true;
  capabilities_.asynchronous = false;
  capabilities_.f64 = true;
  capabilities_.adamw_bf16_moments = true;
  capabilities_.memory_bytes = 0;
}

CpuBackend::~CpuBackend() = default;

Tensor CpuBackend::alloc(Shape shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  return Tensor::adopt(
      metered(aligned_host_memory(bytes), static_cast<int64_t>(bytes), meter_),
      std::move(shape), dtype, Device::kCPU);
}

Tensor CpuBackend::alloc_host(Shape shape, DType dtype) {
  return Tensor::empty(std::move(shape), dtype, Device::kCPU);
}

void CpuBackend::copy_to_host(void* host_dst, const void* device_src, size_t bytes) {
  if (bytes > 0 && host_dst != device_src) std::memcpy(host_dst, device_src, bytes);
}

void CpuBackend::copy_from_host(void* device_dst, const void* host_src, size_t bytes) {
  if (bytes > 0 && device_dst != host_src) std::memcpy(device_dst, host_src, bytes);
}

void CpuBackend::copy_bytes(void* device_dst, const void* device_src, size_t bytes) {
  if (bytes > 0 && device_dst != device_src) std::memcpy(device_dst, device_src, bytes);
}

std::unique_ptr<Event> CpuBackend::record_event() { return std::make_unique<CpuEvent>(); }

}  // namespace tessera::kernels

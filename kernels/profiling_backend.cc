#include "kernels/profiling_backend.h"

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

namespace tessera::kernels {

namespace {

using Clock = std::chrono::steady_clock;

// Times one op from construction to destruction (after the stream drained, on an asynchronous
// backend) and records it under `name` with its GEMM FLOPs.
class OpTimer {
 public:
  OpTimer(ProfilingBackend& owner, Backend& inner, const char* name, const char* suffix,
          double flops)
      : owner_(owner), inner_(inner), name_(name), suffix_(suffix), flops_(flops),
        start_(Clock::now()) {}
  ~OpTimer() {
    if (inner_.capabilities().asynchronous) inner_.synchronize();
    const double s = std::chrono::duration<double>(Clock::now() - start_).count();
    owner_.record(std::string(name_) + suffix_, s, flops_);
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  ProfilingBackend& owner_;
  Backend& inner_;
  const char* name_;
  const char* suffix_;
  double flops_;
  Clock::time_point start_;
};

double segment_rows(std::span<const RowSegment> segments) {
  double rows = 0;
  for (const RowSegment& s : segments) rows += static_cast<double>(s.rows);
  return rows;
}

// Every op forwards to the inner backend's op of the same name, timed.
template <typename T>
class ProfilingOps final : public BackendOps<T> {
 public:
  ProfilingOps(ProfilingBackend& owner, Backend& inner, const char* suffix)
      : owner_(owner), inner_(inner), ops_(inner.ops<T>()), suffix_(suffix) {}

  void linear_forward(T* y, int64_t ldy, const T* x, int64_t ldx, const T* W, int64_t N,
                      int64_t I, int64_t O, const LinearOptions& o) override {
    OpTimer t = timer("linear_forward", 2.0 * N * I * O);
    ops_.linear_forward(y, ldy, x, ldx, W, N, I, O, o);
  }
  void linear_backward_input(T* dx, int64_t lddx, const T* dy, int64_t lddy, const T* W,
                             int64_t N, int64_t I, int64_t O, const LinearOptions& o) override {
    OpTimer t = timer("linear_backward_input", 2.0 * N * I * O);
    ops_.linear_backward_input(dx, lddx, dy, lddy, W, N, I, O, o);
  }
  void linear_backward_weight(T* dW, const T* dy, int64_t lddy, const T* x, int64_t ldx,
                              int64_t N, int64_t I, int64_t O, Precision p) override {
    OpTimer t = timer("linear_backward_weight", 2.0 * N * I * O);
    ops_.linear_backward_weight(dW, dy, lddy, x, ldx, N, I, O, p);
  }
  void grouped_linear_forward(T* y, int64_t ldy, const T* x, int64_t ldx, const T* W,
                              std::span<const RowSegment> segments, int64_t I, int64_t O,
                              const LinearOptions& o) override {
    OpTimer t = timer("grouped_linear_forward", 2.0 * segment_rows(segments) * I * O);
    ops_.grouped_linear_forward(y, ldy, x, ldx, W, segments, I, O, o);
  }
  void grouped_linear_backward_input(T* dx, int64_t lddx, const T* dy, int64_t lddy, const T* W,
                                     std::span<const RowSegment> segments, int64_t I, int64_t O,
                                     const LinearOptions& o) override {
    OpTimer t = timer("grouped_linear_backward_input", 2.0 * segment_rows(segments) * I * O);
    ops_.grouped_linear_backward_input(dx, lddx, dy, lddy, W, segments, I, O, o);
  }
  void grouped_linear_backward_weight(T* dW, const T* dy, int64_t lddy, const T* x, int64_t ldx,
                                      std::span<const RowSegment> segments, int64_t I, int64_t O,
                                      Precision p) override {
    OpTimer t = timer("grouped_linear_backward_weight", 2.0 * segment_rows(segments) * I * O);
    ops_.grouped_linear_backward_weight(dW, dy, lddy, x, ldx, segments, I, O, p);
  }

  // Causal: q.k and p.v over the prefix, (T + 1) / 2 keys per query on average.
  void attention_forward(T* out, int64_t ld_out, T* saved, const T* q, const T* k, const T* v,
                         int64_t ld_qkv, const AttentionShape& s) override {
    OpTimer t = timer("attention_forward", attention_flops(s));
    ops_.attention_forward(out, ld_out, saved, q, k, v, ld_qkv, s);
  }
  void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv, T* scratch, const T* dout,
                          const T* out, int64_t ld_out, const T* saved, const T* q, const T* k,
                          const T* v, int64_t ld_qkv, const AttentionShape& s) override {
    OpTimer t = timer("attention_backward", 2 * attention_flops(s));
    ops_.attention_backward(dq, dk, dv, ld_dqkv, scratch, dout, out, ld_out, saved, q, k, v,
                            ld_qkv, s);
  }

  void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int64_t C,
                       T eps) override {
    OpTimer t = timer("rmsnorm_forward");
    ops_.rmsnorm_forward(y, rstd, x, w, N, C, eps);
  }
  void rmsnorm_backward_input(T* dx, const T* dy, const T* x, const T* w, const T* rstd,
                              int64_t N, int64_t C, bool accumulate) override {
    OpTimer t = timer("rmsnorm_backward_input");
    ops_.rmsnorm_backward_input(dx, dy, x, w, rstd, N, C, accumulate);
  }
  void rmsnorm_backward_weight(T* dw, const T* dy, const T* x, const T* rstd, int64_t N,
                               int64_t C) override {
    OpTimer t = timer("rmsnorm_backward_weight");
    ops_.rmsnorm_backward_weight(dw, dy, x, rstd, N, C);
  }
  void rope_table(T* cos_table, T* sin_table, int64_t T_len, int64_t hd, double theta) override {
    OpTimer t = timer("rope_table");
    ops_.rope_table(cos_table, sin_table, T_len, hd, theta);
  }
  void rope_forward(T* x, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                    int64_t T_len, int64_t H, int64_t hd) override {
    OpTimer t = timer("rope_forward");
    ops_.rope_forward(x, ld, cos_table, sin_table, B, T_len, H, hd);
  }
  void rope_backward(T* dx, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                     int64_t T_len, int64_t H, int64_t hd) override {
    OpTimer t = timer("rope_backward");
    ops_.rope_backward(dx, ld, cos_table, sin_table, B, T_len, H, hd);
  }
  void swiglu_forward(T* h, const T* a, const T* b, int64_t ld_ab, int64_t N,
                      int64_t F) override {
    OpTimer t = timer("swiglu_forward");
    ops_.swiglu_forward(h, a, b, ld_ab, N, F);
  }
  void swiglu_backward(T* da, T* db, const T* dh, const T* a, const T* b, int64_t ld_ab,
                       int64_t N, int64_t F) override {
    OpTimer t = timer("swiglu_backward");
    ops_.swiglu_backward(da, db, dh, a, b, ld_ab, N, F);
  }

  void router_forward(T* scores, int32_t* expert_idx, T* gates, const T* logits, const T* bias,
                      int64_t N, const RouterShape& shape) override {
    OpTimer t = timer("router_forward");
    ops_.router_forward(scores, expert_idx, gates, logits, bias, N, shape);
  }
  void router_backward(T* dlogits, const T* dgates, const T* dscores_extra, const T* scores,
                       const int32_t* expert_idx, int64_t N, const RouterShape& shape) override {
    OpTimer t = timer("router_backward");
    ops_.router_backward(dlogits, dgates, dscores_extra, scores, expert_idx, N, shape);
  }
  double seq_balance_loss_forward(const T* scores, const int32_t* expert_idx, int64_t B,
                                  int64_t T_len, int64_t E, int64_t k, double alpha) override {
    OpTimer t = timer("seq_balance_loss_forward");
    return ops_.seq_balance_loss_forward(scores, expert_idx, B, T_len, E, k, alpha);
  }
  void seq_balance_loss_backward(T* dscores, const T* scores, const int32_t* expert_idx,
                                 int64_t B, int64_t T_len, int64_t E, int64_t k, double alpha,
                                 T scale) override {
    OpTimer t = timer("seq_balance_loss_backward");
    ops_.seq_balance_loss_backward(dscores, scores, expert_idx, B, T_len, E, k, alpha, scale);
  }
  void moe_build_permutation(int32_t* pos_of_slot, int32_t* slot_of_pos, int64_t* expert_counts,
                             const int32_t* expert_idx, int64_t N, int64_t k,
                             int64_t E) override {
    OpTimer t = timer("moe_build_permutation");
    ops_.moe_build_permutation(pos_of_slot, slot_of_pos, expert_counts, expert_idx, N, k, E);
  }
  void moe_permute(T* xp, const T* x, const int32_t* slot_of_pos, int64_t N, int64_t k,
                   int64_t C) override {
    OpTimer t = timer("moe_permute");
    ops_.moe_permute(xp, x, slot_of_pos, N, k, C);
  }
  void moe_permute_backward(T* dx, const T* dxp, const int32_t* pos_of_slot, int64_t N,
                            int64_t k, int64_t C, bool accumulate) override {
    OpTimer t = timer("moe_permute_backward");
    ops_.moe_permute_backward(dx, dxp, pos_of_slot, N, k, C, accumulate);
  }
  void moe_unpermute_combine(T* y, const T* yp, const T* gates, const int32_t* pos_of_slot,
                             int64_t N, int64_t k, int64_t C, bool accumulate) override {
    OpTimer t = timer("moe_unpermute_combine");
    ops_.moe_unpermute_combine(y, yp, gates, pos_of_slot, N, k, C, accumulate);
  }
  void moe_unpermute_combine_backward(T* dyp, T* dgates, const T* dy, const T* yp,
                                      const T* gates, const int32_t* pos_of_slot, int64_t N,
                                      int64_t k, int64_t C) override {
    OpTimer t = timer("moe_unpermute_combine_backward");
    ops_.moe_unpermute_combine_backward(dyp, dgates, dy, yp, gates, pos_of_slot, N, k, C);
  }

  void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t N, int64_t C,
                         int64_t V) override {
    OpTimer t = timer("embedding_forward");
    ops_.embedding_forward(out, ids, table, N, C, V);
  }
  void embedding_backward_weight(T* dtable, const T* dout, const int32_t* ids, int64_t N,
                                 int64_t C, int64_t V) override {
    OpTimer t = timer("embedding_backward_weight");
    ops_.embedding_backward_weight(dtable, dout, ids, N, C, V);
  }
  void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets,
                             int64_t N, int64_t V) override {
    OpTimer t = timer("cross_entropy_forward");
    ops_.cross_entropy_forward(losses, lse, logits, targets, N, V);
  }
  void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                              int64_t N, int64_t V, T scale) override {
    OpTimer t = timer("cross_entropy_backward");
    ops_.cross_entropy_backward(dlogits, logits, lse, targets, N, V, scale);
  }
  void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWStep& hp,
                    bool decay, T grad_scale) override {
    OpTimer t = timer("adamw_update");
    ops_.adamw_update(param, grad, m, v, n, hp, decay, grad_scale);
  }
  void adamw_update_bf16_moments(T* param, const T* grad, uint16_t* m, uint16_t* v, int64_t n,
                                 const AdamWStep& hp, bool decay, T grad_scale) override {
    OpTimer t = timer("adamw_update_bf16_moments");
    ops_.adamw_update_bf16_moments(param, grad, m, v, n, hp, decay, grad_scale);
  }

  void fp8_quantize_rows(uint8_t* codes, float* scales, const T* x, int64_t ldx, int64_t N,
                         int64_t C) override {
    OpTimer t = timer("fp8_quantize_rows");
    ops_.fp8_quantize_rows(codes, scales, x, ldx, N, C);
  }
  void fp8_dequantize_rows(T* x, const uint8_t* codes, const float* scales, int64_t N,
                           int64_t C) override {
    OpTimer t = timer("fp8_dequantize_rows");
    ops_.fp8_dequantize_rows(x, codes, scales, N, C);
  }

  void copy(T* dst, const T* src, int64_t n) override {
    OpTimer t = timer("copy");
    ops_.copy(dst, src, n);
  }
  void copy_2d(T* dst, int64_t ld_dst, const T* src, int64_t ld_src, int64_t rows, int64_t cols,
               bool accumulate) override {
    OpTimer t = timer("copy_2d");
    ops_.copy_2d(dst, ld_dst, src, ld_src, rows, cols, accumulate);
  }
  void fill(T* x, T value, int64_t n) override {
    OpTimer t = timer("fill");
    ops_.fill(x, value, n);
  }
  void add_inplace(T* y, const T* x, int64_t n) override {
    OpTimer t = timer("add_inplace");
    ops_.add_inplace(y, x, n);
  }
  void scale_inplace(T* x, T s, int64_t n) override {
    OpTimer t = timer("scale_inplace");
    ops_.scale_inplace(x, s, n);
  }
  double sum(const T* x, int64_t n) override {
    OpTimer t = timer("sum");
    return ops_.sum(x, n);
  }
  double sum_squares(const T* x, int64_t n) override {
    OpTimer t = timer("sum_squares");
    return ops_.sum_squares(x, n);
  }

 private:
  OpTimer timer(const char* name, double flops = 0) {
    return OpTimer(owner_, inner_, name, suffix_, flops);
  }
  static double attention_flops(const AttentionShape& s) {
    return 2.0 * 2.0 * s.batch * s.heads * s.head_dim * s.seq_len * (s.seq_len + 1) / 2.0;
  }

  ProfilingBackend& owner_;
  Backend& inner_;
  BackendOps<T>& ops_;
  const char* suffix_;
};

}  // namespace

ProfilingBackend::ProfilingBackend(Backend& inner) : inner_(inner) {}

ProfilingBackend::~ProfilingBackend() = default;

BackendOps<float>& ProfilingBackend::ops_f32() {
  if (!f32_) f32_ = std::make_unique<ProfilingOps<float>>(*this, inner_, "");
  return *f32_;
}

BackendOps<double>& ProfilingBackend::ops_f64() {
  if (!f64_) f64_ = std::make_unique<ProfilingOps<double>>(*this, inner_, " (f64)");
  return *f64_;
}

Tensor ProfilingBackend::alloc(Shape shape, DType dtype) {
  OpTimer t(*this, inner_, "alloc", "", 0);
  return inner_.alloc(std::move(shape), dtype);
}

Tensor ProfilingBackend::alloc_host(Shape shape, DType dtype) {
  OpTimer t(*this, inner_, "alloc_host", "", 0);
  return inner_.alloc_host(std::move(shape), dtype);
}

void ProfilingBackend::copy_to_host(void* host_dst, const void* device_src, size_t bytes) {
  OpTimer t(*this, inner_, "copy_to_host", "", 0);
  inner_.copy_to_host(host_dst, device_src, bytes);
}

void ProfilingBackend::copy_from_host(void* device_dst, const void* host_src, size_t bytes) {
  OpTimer t(*this, inner_, "copy_from_host", "", 0);
  inner_.copy_from_host(device_dst, host_src, bytes);
}

void ProfilingBackend::copy_bytes(void* device_dst, const void* device_src, size_t bytes) {
  OpTimer t(*this, inner_, "copy_bytes", "", 0);
  inner_.copy_bytes(device_dst, device_src, bytes);
}

void ProfilingBackend::record(const std::string& op, double seconds, double flops) {
  OpProfile& p = profile_[op];
  ++p.calls;
  p.seconds += seconds;
  p.flops += flops;
}

void ProfilingBackend::print(std::FILE* out, double total_seconds) const {
  std::vector<std::pair<std::string, OpProfile>> rows(profile_.begin(), profile_.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  double in_ops = 0;
  for (const auto& [name, p] : rows) in_ops += p.seconds;
  std::fprintf(out, "%-34s %8s %10s %7s %9s\n", "op", "calls", "seconds", "share", "GFLOP/s");
  auto line = [&](const std::string& name, int64_t calls, double s, double flops) {
    const double share = total_seconds > 0 ? 100.0 * s / total_seconds : 0.0;
    if (flops > 0 && s > 0) {
      std::fprintf(out, "%-34s %8lld %10.4f %6.1f%% %9.1f\n", name.c_str(),
                   static_cast<long long>(calls), s, share, flops / s / 1e9);
    } else {
      std::fprintf(out, "%-34s %8lld %10.4f %6.1f%% %9s\n", name.c_str(),
                   static_cast<long long>(calls), s, share, "");
    }
  };
  for (const auto& [name, p] : rows) line(name, p.calls, p.seconds, p.flops);
  line("(outside backend ops)", 0, total_seconds - in_ops, 0);
}

}  // namespace tessera::kernels

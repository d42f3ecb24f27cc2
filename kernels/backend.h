// Backend: the one seam between the model and a device (DESIGN.md "Kernels and backends").
// A backend allocates buffers on its device, orders work on its compute stream, and offers the
// ops the model needs. Layers, the model, the optimizer and the pipeline/dispatch buffers call
// only these ops on memory the backend allocated; they never call gemm or memcpy themselves.
//
//   CpuBackend  (kernels/cpu_backend.h): today's CPU code, oneDNN/BLAS + the shared TESSERA_HD
//               math; "device" memory is host memory and every op is complete on return.
//   CudaBackend (kernels/cuda/cuda_backend.h): the same math launched as CUDA kernels, cuBLAS for
//               GEMMs, its own tiled online-softmax attention; ops are asynchronous on the
//               backend's compute stream.
//
// Pointers passed to ops are DEVICE pointers of this backend (from alloc() or views of it),
// except where a parameter says "host". Ops follow kernels/README.md: outputs first, row strides
// in elements, weights [out, in], weight gradients ACCUMULATE, activation gradients are written
// unless `accumulate` says otherwise. Ops are templated on the scalar through BackendOps<T>:
// float for training, double where the backend offers it (capabilities().f64) for gradient
// checks. make_backend() (kernels/factory/make_backend.h) builds one from a device name.
//
// Thread-safety: one thread drives a backend's ops (its compute stream is a queue); alloc and
// the copy functions may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

#include "kernels/adamw.h"
#include "kernels/memory_meter.h"
#include "kernels/router.h"
#include "kernels/tensor.h"

namespace tessera::kernels {

// Arithmetic of a linear map (DESIGN.md "Precision"). Weights, gradients and outputs stay fp32;
// the GEMM's INPUTS are rounded:
//   kF32   none
//   kBF16  every input to bf16 (nearest even), fp32 accumulation
//   kFP8   DeepSeek-V3's fine-grained e4m3: activations per 1x128 tile along K, weights per
//          128x128 block, scale max(amax, 1e-4)/448 computed on the fly (kernels/fp8_quantize.h);
//          the backward's activation operands are tiled along the tokens (128x1)
// Only float ops take kBF16/kFP8 (the double ops are for gradient checks).
enum class Precision : uint8_t { kF32, kBF16, kFP8 };
const char* precision_name(Precision precision);
// "fp32" | "bf16" | "fp8"; throws std::invalid_argument naming the value otherwise.
Precision parse_precision(const std::string& name);

struct LinearOptions {
  bool accumulate = false;  // y += ... instead of y = ... (forward and input gradient)
  Precision precision = Precision::kF32;
};

// Rows [offset, offset + rows) of a grouped GEMM's activations multiply the weights of `group`
// (a local expert): a routed-expert layer runs one grouped GEMM over all its segments.
struct RowSegment {
  int64_t group = 0;
  int64_t offset = 0;
  int64_t rows = 0;
};

struct AttentionShape {
  int64_t batch = 0, seq_len = 0, heads = 0, head_dim = 0;
  int64_t tokens() const { return batch * seq_len; }
};

// Elements of the attention forward's saved state and of the backward's scratch on `device`:
// both backends keep one logsumexp per score row (B*H*T) and one rowsum(dO * O) per row, the
// backward recomputing the probabilities. Functions of the device kind (a backend may keep
// something else), so memory can be planned without the device (train --dry-run).
int64_t attention_saved_numel(Device device, const AttentionShape& shape);
int64_t attention_scratch_numel(Device device, const AttentionShape& shape);

// What a backend can do; asked, never assumed.
struct BackendCapabilities {
  Device device = Device::kCPU;
  std::string name;              // "cpu (onednn sgemm, 2 threads)", "cuda:0 NVIDIA H200 (sm_90)"
  bool host_accessible = true;   // device pointers may be read and written by the host
  bool asynchronous = false;     // ops may return before their work is done (streams)
  bool f64 = true;               // BackendOps<double> is available
  int64_t memory_bytes = 0;      // device memory; 0 = host memory, bounded by the machine
  int device_index = -1;         // the CUDA device ordinal; -1 on the CPU
  bool adamw_bf16_moments = false;  // BackendOps<float>::adamw_update_bf16_moments is offered
};

// A point on the compute stream: everything enqueued before record_event() is done once the
// event is. On the CPU backend every event is complete when recorded.
class Event {
 public:
  virtual ~Event() = default;
  virtual bool ready() = 0;          // never blocks
  virtual void synchronize() = 0;    // blocks the calling thread until ready
  virtual void* native() = 0;        // cudaEvent_t on CUDA, nullptr on the CPU
};

template <typename T>
class BackendOps {
 public:
  virtual ~BackendOps() = default;

  // ---- Linear maps: the single place a layer's GEMM goes.
  // y (N, O) [ld ldy] = x (N, I) [ld ldx] · W^T, W (O, I) contiguous.
  virtual void linear_forward(T* y, int64_t ldy, const T* x, int64_t ldx, const T* W, int64_t N,
                              int64_t I, int64_t O, const LinearOptions& options = {}) = 0;
  // dx (N, I) [ld lddx] = dy (N, O) [ld lddy] · W.
  virtual void linear_backward_input(T* dx, int64_t lddx, const T* dy, int64_t lddy, const T* W,
                                     int64_t N, int64_t I, int64_t O,
                                     const LinearOptions& options = {}) = 0;
  // dW (O, I) += dy^T · x.
  virtual void linear_backward_weight(T* dW, const T* dy, int64_t lddy, const T* x, int64_t ldx,
                                      int64_t N, int64_t I, int64_t O,
                                      const Precision precision = Precision::kF32) = 0;

  // ---- Grouped linear maps (routed experts): W is (G, O, I) stacked, segments on the HOST;
  // segment s computes rows [offset, offset + rows) with W[group]. Rows of no segment are not
  // touched. Segments must not overlap.
  virtual void grouped_linear_forward(T* y, int64_t ldy, const T* x, int64_t ldx, const T* W,
                                      std::span<const RowSegment> segments, int64_t I, int64_t O,
                                      const LinearOptions& options = {}) = 0;
  virtual void grouped_linear_backward_input(T* dx, int64_t lddx, const T* dy, int64_t lddy,
                                             const T* W, std::span<const RowSegment> segments,
                                             int64_t I, int64_t O,
                                             const LinearOptions& options = {}) = 0;
  // dW[group] (O, I) += dy[rows]^T · x[rows] per segment.
  virtual void grouped_linear_backward_weight(T* dW, const T* dy, int64_t lddy, const T* x,
                                              int64_t ldx, std::span<const RowSegment> segments,
                                              int64_t I, int64_t O,
                                              Precision precision = Precision::kF32) = 0;

  // ---- Causal attention, scale 1/sqrt(head_dim). q, k, v: (B, T, H, hd) rows with stride
  // ld_qkv; out: stride ld_out. What the forward saves for the backward (`saved`) and the
  // backward's `scratch` depend on the device: attention_saved_numel / attention_scratch_numel.
  virtual void attention_forward(T* out, int64_t ld_out, T* saved, const T* q, const T* k,
                                 const T* v, int64_t ld_qkv, const AttentionShape& shape) = 0;
  // Writes dq, dk, dv (stride ld_dqkv). out is the forward's output.
  virtual void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv, T* scratch,
                                  const T* dout, const T* out, int64_t ld_out, const T* saved,
                                  const T* q, const T* k, const T* v, int64_t ld_qkv,
                                  const AttentionShape& shape) = 0;

  // ---- Row-wise math (kernels/math): same contracts as the kernels/*.h functions.
  virtual void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int64_t C,
                               T eps) = 0;
  virtual void rmsnorm_backward_input(T* dx, const T* dy, const T* x, const T* w, const T* rstd,
                                      int64_t N, int64_t C, bool accumulate) = 0;
  virtual void rmsnorm_backward_weight(T* dw, const T* dy, const T* x, const T* rstd, int64_t N,
                                       int64_t C) = 0;
  virtual void rope_table(T* cos_table, T* sin_table, int64_t T_len, int64_t hd,
                          double theta) = 0;
  virtual void rope_forward(T* x, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                            int64_t T_len, int64_t H, int64_t hd) = 0;
  virtual void rope_backward(T* dx, int64_t ld, const T* cos_table, const T* sin_table,
                             int64_t B, int64_t T_len, int64_t H, int64_t hd) = 0;
  virtual void swiglu_forward(T* h, const T* a, const T* b, int64_t ld_ab, int64_t N,
                              int64_t F) = 0;
  virtual void swiglu_backward(T* da, T* db, const T* dh, const T* a, const T* b, int64_t ld_ab,
                               int64_t N, int64_t F) = 0;

  // ---- MoE routing.
  virtual void router_forward(T* scores, int32_t* expert_idx, T* gates, const T* logits,
                              const T* bias, int64_t N, const RouterShape& shape) = 0;
  virtual void router_backward(T* dlogits, const T* dgates, const T* dscores_extra,
                               const T* scores, const int32_t* expert_idx, int64_t N,
                               const RouterShape& shape) = 0;
  // Sequence-wise balance loss (kernels/router.h): the loss is returned to the host.
  virtual double seq_balance_loss_forward(const T* scores, const int32_t* expert_idx, int64_t B,
                                          int64_t T_len, int64_t E, int64_t k, double alpha) = 0;
  virtual void seq_balance_loss_backward(T* dscores, const T* scores, const int32_t* expert_idx,
                                         int64_t B, int64_t T_len, int64_t E, int64_t k,
                                         double alpha, T scale) = 0;
  // The expert-sorted order of (token, slot) pairs (kernels/permute.h). expert_counts is on the
  // HOST (written): the all-to-all sizes and the grouped GEMM segments are planned there.
  virtual void moe_build_permutation(int32_t* pos_of_slot, int32_t* slot_of_pos,
                                     int64_t* expert_counts, const int32_t* expert_idx,
                                     int64_t N, int64_t k, int64_t E) = 0;
  virtual void moe_permute(T* xp, const T* x, const int32_t* slot_of_pos, int64_t N, int64_t k,
                           int64_t C) = 0;
  virtual void moe_permute_backward(T* dx, const T* dxp, const int32_t* pos_of_slot, int64_t N,
                                    int64_t k, int64_t C, bool accumulate) = 0;
  virtual void moe_unpermute_combine(T* y, const T* yp, const T* gates,
                                     const int32_t* pos_of_slot, int64_t N, int64_t k, int64_t C,
                                     bool accumulate) = 0;
  virtual void moe_unpermute_combine_backward(T* dyp, T* dgates, const T* dy, const T* yp,
                                              const T* gates, const int32_t* pos_of_slot,
                                              int64_t N, int64_t k, int64_t C) = 0;

  // ---- Embedding, loss, optimizer. table (V, C); ids in [0, V) (the data loader checks them;
  // a device that cannot check on the host writes NaN for a bad id instead of reading past V).
  virtual void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t N,
                                 int64_t C, int64_t V) = 0;
  virtual void embedding_backward_weight(T* dtable, const T* dout, const int32_t* ids, int64_t N,
                                         int64_t C, int64_t V) = 0;
  virtual void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets,
                                     int64_t N, int64_t V) = 0;
  virtual void cross_entropy_backward(T* dlogits, const T* logits, const T* lse,
                                      const int32_t* targets, int64_t N, int64_t V, T scale) = 0;
  virtual void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWStep& hp,
                            bool decay, T grad_scale) = 0;
  // AdamW with bf16 moments (optimizer.state_dtype bf16): m and v hold bf16 bit patterns, each
  // widened to fp32 (exact), updated as adamw_update and rounded back to nearest even. Offered
  // where capabilities().adamw_bf16_moments says so (CPU and CUDA, float). Default: throws
  // std::logic_error naming the op.
  virtual void adamw_update_bf16_moments(T* /*param*/, const T* /*grad*/, uint16_t* /*m*/,
                                         uint16_t* /*v*/, int64_t /*n*/, const AdamWStep& /*hp*/,
                                         bool /*decay*/, T /*grad_scale*/) {
    throw std::logic_error("adamw_update_bf16_moments: not offered by this backend");
  }

  // ---- FP8 activation storage (precision fp8 caches linear inputs for the backward as V3
  // does): codes (N, C) packed e4m3 and scales (N, ceil(C/128)) = x (N, C) [row stride ldx]
  // quantised in 1x128 tiles along C (kernels/fp8_quantize.h, bit for bit on every device);
  // dequantise writes x (N, C) contiguous, code * scale. Float only: double throws
  // std::invalid_argument.
  virtual void fp8_quantize_rows(uint8_t* codes, float* scales, const T* x, int64_t ldx,
                                 int64_t N, int64_t C) = 0;
  virtual void fp8_dequantize_rows(T* x, const uint8_t* codes, const float* scales, int64_t N,
                                   int64_t C) = 0;

  // ---- Element-wise and reductions. Reductions return to the host (a sync on devices) and
  // accumulate in double in index order, so the result does not depend on the device.
  virtual void copy(T* dst, const T* src, int64_t n) = 0;
  // A block of `rows` rows of `cols` elements between strided layouts (dst row stride ld_dst,
  // src ld_src): dst = src, or dst += src when accumulate. The blocks must not overlap. Used to
  // pack and unpack heads (MLA's per-head [k_nope; v] and shared k_pe).
  virtual void copy_2d(T* dst, int64_t ld_dst, const T* src, int64_t ld_src, int64_t rows,
                       int64_t cols, bool accumulate) = 0;
  virtual void fill(T* x, T value, int64_t n) = 0;
  virtual void add_inplace(T* y, const T* x, int64_t n) = 0;
  virtual void scale_inplace(T* x, T s, int64_t n) = 0;
  virtual double sum(const T* x, int64_t n) = 0;
  virtual double sum_squares(const T* x, int64_t n) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  virtual const BackendCapabilities& capabilities() const = 0;
  Device device() const { return capabilities().device; }

  // Uninitialised device memory (64-byte aligned on the host).
  virtual Tensor alloc(Shape shape, DType dtype) = 0;
  // Host memory the device copies from/to fastest (pinned on CUDA; plain on the CPU).
  virtual Tensor alloc_host(Shape shape, DType dtype) = 0;
  // Bytes of alloc() buffers alive now and at most since construction or reset_peak_allocated()
  // (alloc_host() buffers are not counted: they are not device memory).
  virtual AllocatedBytes allocated_bytes() const = 0;
  virtual void reset_peak_allocated() = 0;

  // Blocking copies between host memory and this backend's memory (complete on return, after
  // the work already enqueued on the compute stream). On the CPU both are memcpy.
  virtual void copy_to_host(void* host_dst, const void* device_src, size_t bytes) = 0;
  virtual void copy_from_host(void* device_dst, const void* host_src, size_t bytes) = 0;
  // Device-to-device byte copy, ordered on the compute stream.
  virtual void copy_bytes(void* device_dst, const void* device_src, size_t bytes) = 0;

  // Streams: ops run in order on one compute stream. native_stream() is its cudaStream_t on
  // CUDA (communicators order their streams after it through events), nullptr on the CPU.
  virtual std::unique_ptr<Event> record_event() = 0;
  virtual void synchronize() = 0;
  virtual void* native_stream() = 0;

  // The op table for scalar T. Throws std::logic_error naming the backend when it does not
  // offer T (see capabilities().f64).
  template <typename T> BackendOps<T>& ops();

 protected:
  Backend() = default;
  virtual BackendOps<float>& ops_f32() = 0;
  virtual BackendOps<double>& ops_f64() = 0;
};

template <> inline BackendOps<float>& Backend::ops<float>() { return ops_f32(); }
template <> inline BackendOps<double>& Backend::ops<double>() { return ops_f64(); }

}  // namespace tessera::kernels

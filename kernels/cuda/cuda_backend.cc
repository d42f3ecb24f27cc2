#include "kernels/cuda/cuda_backend.h"

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/fp8_quantize.h"
#include "kernels/cuda/low_precision_gemm.h"
#include "kernels/cuda/permute.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/router.h"
#include "kernels/cuda/swiglu.h"
#include "kernels/cuda/vector_ops.h"
#include "kernels/linear_gemm.h"
#include "kernels/permute.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "kernels/segment_loop_ops.h"

namespace tessera::kernels::cuda {

namespace {

class CudaEvent final : public Event {
 public:
  explicit CudaEvent(cudaStream_t stream) {
    TESSERA_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
    const cudaError_t status = cudaEventRecord(event_, stream);
    if (status != cudaSuccess) {
      cudaEventDestroy(event_);
      check(status, "cudaEventRecord(event_, stream)");
    }
  }
  ~CudaEvent() override { cudaEventDestroy(event_); }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  bool ready() override {
    const cudaError_t status = cudaEventQuery(event_);
    if (status == cudaErrorNotReady) return false;
    TESSERA_CUDA_CHECK(status);
    return true;
  }
  void synchronize() override { TESSERA_CUDA_CHECK(cudaEventSynchronize(event_)); }
  void* native() override { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// Blocking host <-> device copies of whole vectors for the host round-trip ops.
template <typename V>
V download(CudaBackend& backend, const typename V::value_type* device_src, int64_t n) {
  V host(static_cast<size_t>(n));
  backend.copy_to_host(host.data(), device_src, sizeof(typename V::value_type) * host.size());
  return host;
}

template <typename V>
void upload(CudaBackend& backend, typename V::value_type* device_dst, const V& host) {
  backend.copy_from_host(device_dst, host.data(), sizeof(typename V::value_type) * host.size());
}

void check_non_negative(const char* op, std::initializer_list<int64_t> sizes) {
  for (int64_t s : sizes) {
    if (s < 0) throw std::invalid_argument(std::string(op) + ": negative size " + std::to_string(s));
  }
}

// Every op makes the device current (enter()) and enqueues on the compute stream; the linear
// maps go to cuBLAS with exactly the GEMMs of CpuOps (kernels/cpu_backend.cc), bf16/fp8 ones
// to LowPrecisionGemm with the CPU's operands and tilings.
template <typename T>
class CudaOps final : public SegmentLoopOps<T> {
 public:
  CudaOps(CudaBackend& backend, cublasHandle_t cublas)
      : backend_(backend), cublas_(cublas), low_precision_(cublas) {}

  // Float bf16/fp8 maps go to LowPrecisionGemm with the GEMMs of kernels/linear_gemm.h.
  void linear_forward(T* y, int64_t ldy, const T* x, int64_t ldx, const T* W, int64_t N,
                      int64_t I, int64_t O, const LinearOptions& o) override {
    backend_.enter();
    const T beta = o.accumulate ? T(1) : T(0);
    if (o.precision != Precision::kF32) {
      if constexpr (std::is_same_v<T, float>) {
        linear_forward_gemm(y, ldy, x, ldx, W, N, I, O, o.accumulate)
            .run_on(low_precision_, o.precision);
        return;
      }
      refuse(o.precision);
    }
    gemm<T>(cublas_, Trans::kNo, Trans::kYes, N, O, I, T(1), x, ldx, W, I, beta, y, ldy);
  }
  void linear_backward_input(T* dx, int64_t lddx, const T* dy, int64_t lddy, const T* W,
                             int64_t N, int64_t I, int64_t O, const LinearOptions& o) override {
    backend_.enter();
    const T beta = o.accumulate ? T(1) : T(0);
    if (o.precision != Precision::kF32) {
      if constexpr (std::is_same_v<T, float>) {
        linear_backward_input_gemm(dx, lddx, dy, lddy, W, N, I, O, o.accumulate)
            .run_on(low_precision_, o.precision);
        return;
      }
      refuse(o.precision);
    }
    gemm<T>(cublas_, Trans::kNo, Trans::kNo, N, I, O, T(1), dy, lddy, W, I, beta, dx, lddx);
  }
  void linear_backward_weight(T* dW, const T* dy, int64_t lddy, const T* x, int64_t ldx,
                              int64_t N, int64_t I, int64_t O, const Precision p) override {
    backend_.enter();
    if (p != Precision::kF32) {
      if constexpr (std::is_same_v<T, float>) {
        linear_backward_weight_gemm(dW, dy, lddy, x, ldx, N, I, O).run_on(low_precision_, p);
        return;
      }
      refuse(p);
    }
    gemm<T>(cublas_, Trans::kYes, Trans::kNo, O, I, N, T(1), dy, lddy, x, ldx, T(1), dW, I);
  }

  // saved: one logsumexp per (b, h, row); scratch: D = rowsum(dO * O) per (b, h, row)
  // (kernels::attention_saved_numel / attention_scratch_numel for Device::kCUDA).
  void attention_forward(T* out, int64_t ld_out, T* saved, const T* q, const T* k, const T* v,
                         int64_t ld_qkv, const AttentionShape& s) override {
    cuda::attention_forward(out, ld_out, saved, q, k, v, ld_qkv, s.batch, s.seq_len, s.heads,
                            s.head_dim, backend_.enter());
  }
  void attention_backward(T* dq, T* dk, T* dv, int64_t ld_dqkv, T* scratch, const T* dout,
                          const T* out, int64_t ld_out, const T* saved, const T* q, const T* k,
                          const T* v, int64_t ld_qkv, const AttentionShape& s) override {
    cuda::attention_backward(dq, dk, dv, ld_dqkv, scratch, dout, out, ld_out, saved, q, k, v,
                             ld_qkv, s.batch, s.seq_len, s.heads, s.head_dim, backend_.enter());
  }

  void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int64_t C,
                       T eps) override {
    cuda::rmsnorm_forward(y, rstd, x, w, N, C, eps, backend_.enter());
  }
  void rmsnorm_backward_input(T* dx, const T* dy, const T* x, const T* w, const T* rstd,
                              int64_t N, int64_t C, bool accumulate) override {
    cuda::rmsnorm_backward_input(dx, dy, x, w, rstd, N, C, accumulate, backend_.enter());
  }
  void rmsnorm_backward_weight(T* dw, const T* dy, const T* x, const T* rstd, int64_t N,
                               int64_t C) override {
    cuda::rmsnorm_backward_weight(dw, dy, x, rstd, N, C, backend_.enter());
  }

  // Host round trip: correct, not fast (a table is built once per run).
  void rope_table(T* cos_table, T* sin_table, int64_t T_len, int64_t hd, double theta) override {
    check_non_negative("cuda rope_table", {T_len});
    const int64_t n = T_len * (hd / 2);
    std::vector<T> cos_host(static_cast<size_t>(n > 0 ? n : 0)), sin_host(cos_host.size());
    kernels::rope_table(cos_host.data(), sin_host.data(), T_len, hd, theta);  // checks hd
    upload(backend_, cos_table, cos_host);
    upload(backend_, sin_table, sin_host);
  }
  void rope_forward(T* x, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                    int64_t T_len, int64_t H, int64_t hd) override {
    cuda::rope_forward(x, ld, cos_table, sin_table, B, T_len, H, hd, backend_.enter());
  }
  void rope_backward(T* dx, int64_t ld, const T* cos_table, const T* sin_table, int64_t B,
                     int64_t T_len, int64_t H, int64_t hd) override {
    cuda::rope_backward(dx, ld, cos_table, sin_table, B, T_len, H, hd, backend_.enter());
  }
  void swiglu_forward(T* h, const T* a, const T* b, int64_t ld_ab, int64_t N,
                      int64_t F) override {
    cuda::swiglu_forward(h, a, b, ld_ab, N, F, backend_.enter());
  }
  void swiglu_backward(T* da, T* db, const T* dh, const T* a, const T* b, int64_t ld_ab,
                       int64_t N, int64_t F) override {
    cuda::swiglu_backward(da, db, dh, a, b, ld_ab, N, F, backend_.enter());
  }

  void router_forward(T* scores, int32_t* expert_idx, T* gates, const T* logits, const T* bias,
                      int64_t N, const RouterShape& shape) override {
    cuda::router_forward(scores, expert_idx, gates, logits, bias, N, shape, backend_.enter());
  }
  void router_backward(T* dlogits, const T* dgates, const T* dscores_extra, const T* scores,
                       const int32_t* expert_idx, int64_t N, const RouterShape& shape) override {
    cuda::router_backward(dlogits, dgates, dscores_extra, scores, expert_idx, N, shape,
                          backend_.enter());
  }
  // Host round trip: correct, not fast.
  double seq_balance_loss_forward(const T* scores, const int32_t* expert_idx, int64_t B,
                                  int64_t T_len, int64_t E, int64_t k, double alpha) override {
    check_non_negative("cuda seq_balance_loss_forward", {B, T_len, E, k});
    const auto s = download<std::vector<T>>(backend_, scores, B * T_len * E);
    const auto idx = download<std::vector<int32_t>>(backend_, expert_idx, B * T_len * k);
    return kernels::seq_balance_loss_forward(s.data(), idx.data(), B, T_len, E, k, alpha);
  }
  // Host round trip: correct, not fast. dscores accumulates, so it travels both ways.
  void seq_balance_loss_backward(T* dscores, const T* scores, const int32_t* expert_idx,
                                 int64_t B, int64_t T_len, int64_t E, int64_t k, double alpha,
                                 T scale) override {
    check_non_negative("cuda seq_balance_loss_backward", {B, T_len, E, k});
    const auto s = download<std::vector<T>>(backend_, scores, B * T_len * E);
    const auto idx = download<std::vector<int32_t>>(backend_, expert_idx, B * T_len * k);
    auto ds = download<std::vector<T>>(backend_, dscores, B * T_len * E);
    kernels::seq_balance_loss_backward(ds.data(), s.data(), idx.data(), B, T_len, E, k, alpha,
                                       scale);
    upload(backend_, dscores, ds);
  }
  // Host round trip: correct, not fast (the counts are a host output anyway).
  void moe_build_permutation(int32_t* pos_of_slot, int32_t* slot_of_pos, int64_t* expert_counts,
                             const int32_t* expert_idx, int64_t N, int64_t k,
                             int64_t E) override {
    check_non_negative("cuda moe_build_permutation", {N, k, E});
    const auto idx = download<std::vector<int32_t>>(backend_, expert_idx, N * k);
    std::vector<int32_t> pos(idx.size()), slot(idx.size());
    kernels::moe_build_permutation(pos.data(), slot.data(), expert_counts, idx.data(), N, k, E);
    upload(backend_, pos_of_slot, pos);
    upload(backend_, slot_of_pos, slot);
  }
  void moe_permute(T* xp, const T* x, const int32_t* slot_of_pos, int64_t N, int64_t k,
                   int64_t C) override {
    cuda::moe_permute(xp, x, slot_of_pos, N, k, C, backend_.enter());
  }
  void moe_permute_backward(T* dx, const T* dxp, const int32_t* pos_of_slot, int64_t N,
                            int64_t k, int64_t C, bool accumulate) override {
    cuda::moe_permute_backward(dx, dxp, pos_of_slot, N, k, C, accumulate, backend_.enter());
  }
  void moe_unpermute_combine(T* y, const T* yp, const T* gates, const int32_t* pos_of_slot,
                             int64_t N, int64_t k, int64_t C, bool accumulate) override {
    cuda::moe_unpermute_combine(y, yp, gates, pos_of_slot, N, k, C, accumulate,
                                backend_.enter());
  }
  void moe_unpermute_combine_backward(T* dyp, T* dgates, const T* dy, const T* yp,
                                      const T* gates, const int32_t* pos_of_slot, int64_t N,
                                      int64_t k, int64_t C) override {
    cuda::moe_unpermute_combine_backward(dyp, dgates, dy, yp, gates, pos_of_slot, N, k, C,
                                         backend_.enter());
  }

  void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t N, int64_t C,
                         int64_t V) override {
    cuda::embedding_forward(out, ids, table, N, C, V, backend_.enter());
  }
  void embedding_backward_weight(T* dtable, const T* dout, const int32_t* ids, int64_t N,
                                 int64_t C, int64_t V) override {
    cuda::embedding_backward_weight(dtable, dout, ids, N, C, V, backend_.enter());
  }
  void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets,
                             int64_t N, int64_t V) override {
    cuda::cross_entropy_forward(losses, lse, logits, targets, N, V, backend_.enter());
  }
  void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets,
                              int64_t N, int64_t V, T scale) override {
    cuda::cross_entropy_backward(dlogits, logits, lse, targets, N, V, scale, backend_.enter());
  }
  void adamw_update(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWStep& hp,
                    bool decay, T grad_scale) override {
    cuda::adamw_update(param, grad, m, v, n, hp, decay, grad_scale, backend_.enter());
  }
  void adamw_update_bf16_moments(T* param, const T* grad, uint16_t* m, uint16_t* v, int64_t n,
                                 const AdamWStep& hp, bool decay, T grad_scale) override {
    if constexpr (std::is_same_v<T, float>) {
      cuda::adamw_update_bf16_moments(param, grad, m, v, n, hp, decay, grad_scale,
                                      backend_.enter());
    } else {
      throw std::invalid_argument("cuda backend: adamw_update_bf16_moments takes float, not "
                                  "double");
    }
  }

  void fp8_quantize_rows(uint8_t* codes, float* scales, const T* x, int64_t ldx, int64_t N,
                         int64_t C) override {
    if constexpr (std::is_same_v<T, float>) {
      cuda::fp8_quantize(codes, scales, Fp8Tiling::k1x128, Trans::kNo, x, ldx, N, C,
                         backend_.enter());
    } else {
      throw std::invalid_argument("cuda backend: fp8_quantize_rows takes float, not double");
    }
  }
  void fp8_dequantize_rows(T* x, const uint8_t* codes, const float* scales, int64_t N,
                           int64_t C) override {
    if constexpr (std::is_same_v<T, float>) {
      cuda::fp8_dequantize(x, codes, scales, Fp8Tiling::k1x128, N, C, backend_.enter());
    } else {
      throw std::invalid_argument("cuda backend: fp8_dequantize_rows takes float, not double");
    }
  }

  void copy(T* dst, const T* src, int64_t n) override {
    cuda::copy(dst, src, n, backend_.enter());
  }
  void fill(T* x, T value, int64_t n) override { cuda::fill(x, value, n, backend_.enter()); }
  void add_inplace(T* y, const T* x, int64_t n) override {
    cuda::add_inplace(y, x, n, backend_.enter());
  }
  void copy_2d(T* dst, int64_t ld_dst, const T* src, int64_t ld_src, int64_t rows, int64_t cols,
               bool accumulate) override {
    cuda::copy_2d(dst, ld_dst, src, ld_src, rows, cols, accumulate, backend_.enter());
  }
  void scale_inplace(T* x, T s, int64_t n) override {
    cuda::scale_inplace(x, s, n, backend_.enter());
  }
  double sum(const T* x, int64_t n) override { return cuda::sum(x, n, backend_.enter()); }
  double sum_squares(const T* x, int64_t n) override {
    return cuda::sum_squares(x, n, backend_.enter());
  }

 private:
  [[noreturn]] static void refuse(Precision p) {
    throw std::invalid_argument(std::string("cuda backend: ") + precision_name(p) +
                                " linear maps take float, not double");
  }

  CudaBackend& backend_;
  cublasHandle_t cublas_;
  LowPrecisionGemm low_precision_;  // used by the float ops
};

size_t checked_bytes(const Shape& shape, DType dtype) {
  return static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);  // throws on negatives
}

}  // namespace

void CudaBackend::StreamDeleter::operator()(cudaStream_t stream) const {
  cudaStreamDestroy(stream);  // no throwing from a deleter
}

CudaBackend::CudaBackend(int device) : device_(device) {
  const int count = device_count();
  if (device < 0 || device >= count) {
    throw std::runtime_error("CudaBackend: device " + std::to_string(device) +
                             " is not a visible CUDA device (" + std::to_string(count) +
                             " visible)");
  }
  TESSERA_CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop{};
  TESSERA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));

  cudaStream_t stream = nullptr;
  TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  stream_.reset(stream);
  cublas_ = std::make_unique<CublasHandle>(stream);
  f32_ = std::make_unique<CudaOps<float>>(*this, cublas_->get());
  f64_ = std::make_unique<CudaOps<double>>(*this, cublas_->get());

  const double gib = static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0);
  char memory[32];
  std::snprintf(memory, sizeof(memory), "%.0f GiB", gib);
  capabilities_.device = Device::kCUDA;
  capabilities_.device_index = device;
  capabilities_.name = "cuda:" + std::to_string(device) + " " + prop.name + " (sm_" +
                       std::to_string(prop.major) + std::to_string(prop.minor) + ", " + memory +
                       ")";
  capabilities_.host_accessible = false;
  capabilities_.asynchronous = true;
  capabilities_.f64 = true;
  capabilities_.adamw_bf16_moments = true;
  capabilities_.memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
}

CudaBackend::~CudaBackend() {
  // Work still queued may use memory whose tensors outlive us: let it finish first.
  if (cudaSetDevice(device_) == cudaSuccess) cudaStreamSynchronize(stream_.get());
}

cudaStream_t CudaBackend::enter() const {
  TESSERA_CUDA_CHECK(cudaSetDevice(device_));
  return stream_.get();
}

Tensor CudaBackend::alloc(Shape shape, DType dtype) {
  const size_t bytes = checked_bytes(shape, dtype);
  enter();
  void* ptr = nullptr;
  // At least one byte, so that an empty tensor is still defined() (as on the CPU).
  TESSERA_CUDA_CHECK(cudaMalloc(&ptr, bytes > 0 ? bytes : 1));
  const int device = device_;
  // The deleter may run on any thread, after the backend is gone: it names the device itself.
  std::shared_ptr<void> memory(ptr, [device](void* p) {
    int previous = -1;
    const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != device &&
                          cudaSetDevice(device) == cudaSuccess;
    cudaFree(p);  // no throwing from a deleter; a failed free (e.g. at exit) leaks
    if (switched) cudaSetDevice(previous);
  });
  return Tensor::adopt(metered(std::move(memory), static_cast<int64_t>(bytes), meter_),
                       std::move(shape), dtype, Device::kCUDA);
}

Tensor CudaBackend::alloc_host(Shape shape, DType dtype) {
  const size_t bytes = checked_bytes(shape, dtype);
  enter();
  void* ptr = nullptr;
  TESSERA_CUDA_CHECK(cudaMallocHost(&ptr, bytes > 0 ? bytes : 1));
  std::shared_ptr<void> memory(ptr, [](void* p) { cudaFreeHost(p); });
  return Tensor::adopt(std::move(memory), std::move(shape), dtype, Device::kCPU);
}

void CudaBackend::copy_to_host(void* host_dst, const void* device_src, size_t bytes) {
  if (bytes == 0) return;
  const cudaStream_t s = enter();
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, s));
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(s));
}

void CudaBackend::copy_from_host(void* device_dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  const cudaStream_t s = enter();
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, s));
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(s));
}

void CudaBackend::copy_bytes(void* device_dst, const void* device_src, size_t bytes) {
  if (bytes == 0 || device_dst == device_src) return;
  const cudaStream_t s = enter();
  TESSERA_CUDA_CHECK(
      cudaMemcpyAsync(device_dst, device_src, bytes, cudaMemcpyDeviceToDevice, s));
}

std::unique_ptr<Event> CudaBackend::record_event() { return std::make_unique<CudaEvent>(enter()); }

void CudaBackend::synchronize() { TESSERA_CUDA_CHECK(cudaStreamSynchronize(enter())); }

}  // namespace tessera::kernels::cuda

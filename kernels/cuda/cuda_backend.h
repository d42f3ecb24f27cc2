// CudaBackend: the Backend of one CUDA device (kernels/backend.h). Memory comes from cudaMalloc
// (pinned cudaMallocHost for alloc_host); every op is enqueued on the backend's one non-blocking
// compute stream and returns before it has run (capabilities().asynchronous): the launchers of
// kernels/cuda/*.h for the row-wise math, cuBLAS (kernels/cuda/gemm_cublas.h, fp32 without TF32)
// for the linear maps (bf16/fp8 ones through kernels/cuda/low_precision_gemm.h, float only), and
// our own tiled online-softmax attention (kernels/cuda/attention.h, which saves B*H*T logsumexps
// rather than the CPU's B*H*T*T probabilities). AdamW with bf16 moments is an op here
// (capabilities().adamw_bf16_moments).
//
// Ops that are host round trips for now (host round trip: correct, not fast). Each copies its
// device inputs to the host (a stream sync), runs the CPU kernel and copies results back, so it
// also synchronises the compute stream:
//   - seq_balance_loss_forward / seq_balance_loss_backward: scores and expert indices down
//     (and dscores, which is accumulated), kernels::seq_balance_loss_*, dscores back up.
//   - moe_build_permutation: expert indices down, kernels::moe_build_permutation (a counting
//     sort whose expert counts the host needs anyway), pos_of_slot/slot_of_pos back up.
//   - rope_table: kernels::rope_table on the host, uploaded.
// Reductions (sum, sum_squares) return to the host and so synchronise too.
//
// Device-side indices are not checked on the host (that would need a sync): a bad target,
// expert index, token id or permutation position makes its row NaN (see
// kernels/cuda/README.md).
//
// Thread-safety: as Backend. alloc, alloc_host and the copy functions make this backend's device
// current on the calling thread; so does every op, so any single thread may drive the ops.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "kernels/backend.h"
#include "kernels/cuda/gemm_cublas.h"

namespace tessera::kernels::cuda {

class CudaBackend final : public Backend {
 public:
  // Makes `device` current on the calling thread and creates the compute stream and a cuBLAS
  // handle bound to it. Throws std::runtime_error when `device` is not a visible CUDA device
  // ordinal, or naming the CUDA/cuBLAS call that failed.
  explicit CudaBackend(int device);
  // Waits for the compute stream, then releases it (errors are swallowed: no throwing here).
  ~CudaBackend() override;

  const BackendCapabilities& capabilities() const override { return capabilities_; }
  // cudaMalloc'ed memory (Device::kCUDA; 256-byte aligned), freed with cudaFree when the last
  // view of the tensor goes.
  Tensor alloc(Shape shape, DType dtype) override;
  // Pinned host memory (cudaMallocHost; Device::kCPU), freed with cudaFreeHost.
  Tensor alloc_host(Shape shape, DType dtype) override;
  AllocatedBytes allocated_bytes() const override { return meter_->read(); }
  void reset_peak_allocated() override { meter_->reset_peak(); }
  // Enqueued on the compute stream, then the stream is synchronised: complete on return, after
  // the work enqueued before.
  void copy_to_host(void* host_dst, const void* device_src, size_t bytes) override;
  void copy_from_host(void* device_dst, const void* host_src, size_t bytes) override;
  // cudaMemcpyAsync device to device on the compute stream.
  void copy_bytes(void* device_dst, const void* device_src, size_t bytes) override;
  // A cudaEvent_t (timing disabled) recorded on the compute stream.
  std::unique_ptr<Event> record_event() override;
  // cudaStreamSynchronize of the compute stream.
  void synchronize() override;
  // The compute stream's cudaStream_t.
  void* native_stream() override { return stream(); }

  int device_ordinal() const { return device_; }
  cudaStream_t stream() const { return stream_.get(); }
  // Makes this backend's device current on the calling thread; returns the compute stream.
  cudaStream_t enter() const;

 protected:
  BackendOps<float>& ops_f32() override { return *f32_; }
  BackendOps<double>& ops_f64() override { return *f64_; }

 private:
  struct StreamDeleter {
    void operator()(cudaStream_t stream) const;
  };

  int device_ = 0;
  BackendCapabilities capabilities_;
  std::shared_ptr<MemoryMeter> meter_ = std::make_shared<MemoryMeter>();
  // Declaration order is destruction order reversed: the ops and the cuBLAS handle go before
  // the stream they use.
  std::unique_ptr<CUstream_st, StreamDeleter> stream_;
  std::unique_ptr<CublasHandle> cublas_;
  std::unique_ptr<BackendOps<float>> f32_;
  std::unique_ptr<BackendOps<double>> f64_;
};

}  // namespace tessera::kernels::cuda

// CpuBackend: the Backend of host memory. Its ops are today's CPU kernels (kernels/*.h: oneDNN or
// BLAS GEMMs through kernels::gemm, OpenMP loops over the shared TESSERA_HD math), so a model on
// this backend computes exactly what the kernels compute, bit for bit (bf16 linear maps: on the
// GEMM kernels/bf16_gemm_choice.h picks). Every op is complete on return; events are complete
// when recorded.
//
// Thread-safety: as Backend.
#pragma once

#include <memory>

#include "kernels/backend.h"
#include "kernels/bf16_gemm_choice.h"

namespace tessera::kernels {

class CpuBackend final : public Backend {
 public:
  // bf16 linear maps on bf16_gemm_from_environment() (throws on a bad TESSERA_BF16_GEMM).
  CpuBackend();
  // bf16 linear maps on the given GEMM. Throws std::invalid_argument for kNative where
  // cpu_has_native_bf16() is false.
  explicit CpuBackend(Bf16Gemm bf16_gemm);
  ~CpuBackend() override;

  const BackendCapabilities& capabilities() const override { return capabilities_; }
  Tensor alloc(Shape shape, DType dtype) override;
  Tensor alloc_host(Shape shape, DType dtype) override;
  AllocatedBytes allocated_bytes() const override { return meter_->read(); }
  void reset_peak_allocated() override { meter_->reset_peak(); }
  void copy_to_host(void* host_dst, const void* device_src, size_t bytes) override;
  void copy_from_host(void* device_dst, const void* host_src, size_t bytes) override;
  void copy_bytes(void* device_dst, const void* device_src, size_t bytes) override;
  std::unique_ptr<Event> record_event() override;
  void synchronize() override {}
  void* native_stream() override { return nullptr; }

  Bf16Gemm bf16_gemm() const { return bf16_gemm_; }

 protected:
  BackendOps<float>& ops_f32() override { return *f32_; }
  BackendOps<double>& ops_f64() override { return *f64_; }

 private:
  Bf16Gemm bf16_gemm_;
  BackendCapabilities capabilities_;
  std::shared_ptr<MemoryMeter> meter_ = std::make_shared<MemoryMeter>();
  std::unique_ptr<BackendOps<float>> f32_;
  std::unique_ptr<BackendOps<double>> f64_;
};

}  // namespace tessera::kernels

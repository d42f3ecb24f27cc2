// CpuBackend: the Backend of host memory. Its ops are today's CPU kernels (kernels/*.h: oneDNN or
// BLAS GEMMs through kernels::gemm, OpenMP loops over the shared TESSERA_HD math), so a model on
// this backend computes exactly what the kernels compute, bit for bit. Every op is complete on
// return; events are complete when recorded.
//
// Thread-safety: as Backend.
#pragma once

#include <memory>

#include "kernels/backend.h"

namespace tessera::kernels {

class CpuBackend final : public Backend {
 public:
  CpuBackend();
  ~CpuBackend() override;

  const BackendCapabilities& capabilities() const override { return capabilities_; }
  Tensor alloc(Shape shape, DType dtype) override;
  Tensor alloc_host(Shape shape, DType dtype) override;
  void copy_to_host(void* host_dst, const void* device_src, size_t bytes) override;
  void copy_from_host(void* device_dst, const void* host_src, size_t bytes) override;
  void copy_bytes(void* device_dst, const void* device_src, size_t bytes) override;
  std::unique_ptr<Event> record_event() override;
  void synchronize() override {}
  void* native_stream() override { return nullptr; }

 protected:
  BackendOps<float>& ops_f32() override { return *f32_; }
  BackendOps<double>& ops_f64() override { return *f64_; }

 private:
  BackendCapabilities capabilities_;
  std::unique_ptr<BackendOps<float>> f32_;
  std::unique_ptr<BackendOps<double>> f64_;
};

}  // namespace tessera::kernels

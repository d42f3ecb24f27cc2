// StagedCpuBackend: CPU memory and ops presented as a device whose memory the host cannot address
// (as CUDA's): code must go through copy_to_host / copy_from_host / alloc_host, which it counts.
// Lets the CPU tests walk the code paths a GPU takes. bf16_moments false withdraws
// adamw_update_bf16_moments, as a device that cannot update bf16 optimizer state.
#pragma once

#include <memory>

#include "kernels/cpu_backend.h"

namespace tessera::trainer::testing {

class StagedCpuBackend final : public kernels::Backend {
 public:
  explicit StagedCpuBackend(bool bf16_moments = true) : caps_(cpu_.capabilities()) {
    caps_.host_accessible = false;
    caps_.adamw_bf16_moments = bf16_moments;
    caps_.name = "staged " + caps_.name;
  }
  const kernels::BackendCapabilities& capabilities() const override { return caps_; }
  kernels::Tensor alloc(kernels::Shape s, kernels::DType t) override { return cpu_.alloc(s, t); }
  kernels::Tensor alloc_host(kernels::Shape s, kernels::DType t) override {
    return cpu_.alloc_host(s, t);
  }
  kernels::AllocatedBytes allocated_bytes() const override { return cpu_.allocated_bytes(); }
  void reset_peak_allocated() override { cpu_.reset_peak_allocated(); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    ++to_host;
    cpu_.copy_to_host(dst, src, bytes);
  }
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    ++from_host;
    cpu_.copy_from_host(dst, src, bytes);
  }
  void copy_bytes(void* dst, const void* src, size_t bytes) override {
    cpu_.copy_bytes(dst, src, bytes);
  }
  std::unique_ptr<kernels::Event> record_event() override { return cpu_.record_event(); }
  void synchronize() override {}
  void* native_stream() override { return nullptr; }
  int to_host = 0, from_host = 0;

 protected:
  kernels::BackendOps<float>& ops_f32() override { return cpu_.ops<float>(); }
  kernels::BackendOps<double>& ops_f64() override { return cpu_.ops<double>(); }

 private:
  kernels::CpuBackend cpu_;
  kernels::BackendCapabilities caps_;
};

}  // namespace tessera::trainer::testing

// ProfilingBackend: a decorator Backend that times every op of the backend it wraps, by op kind
// ("linear_forward", "grouped_linear_backward_weight", "attention_backward", "copy_bytes", ...),
// and counts the GEMM FLOPs of the linear ops. Nothing changes in what is computed: each call is
// forwarded unchanged. On an asynchronous backend every op is followed by synchronize() so its
// time is its own (which serialises the stream: profile, do not benchmark, that way).
//
//   CpuBackend cpu;
//   ProfilingBackend prof(cpu);
//   Model model(config, prof);   // every op of the model now goes through prof
//   ... steps ...
//   prof.print(stdout, step_seconds_total);
//
// Thread-safety: as Backend (one thread drives the ops; the counters are not atomic).
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "kernels/backend.h"

namespace tessera::kernels {

struct OpProfile {
  int64_t calls = 0;
  double seconds = 0;
  double flops = 0;  // GEMM FLOPs (2 m n k) of linear ops; 0 for the rest
};

class ProfilingBackend final : public Backend {
 public:
  // `inner` must outlive this object.
  explicit ProfilingBackend(Backend& inner);
  ~ProfilingBackend() override;

  const BackendCapabilities& capabilities() const override { return inner_.capabilities(); }
  Tensor alloc(Shape shape, DType dtype) override;
  Tensor alloc_host(Shape shape, DType dtype) override;
  AllocatedBytes allocated_bytes() const override { return inner_.allocated_bytes(); }
  void reset_peak_allocated() override { inner_.reset_peak_allocated(); }
  void copy_to_host(void* host_dst, const void* device_src, size_t bytes) override;
  void copy_from_host(void* device_dst, const void* host_src, size_t bytes) override;
  void copy_bytes(void* device_dst, const void* device_src, size_t bytes) override;
  std::unique_ptr<Event> record_event() override { return inner_.record_event(); }
  void synchronize() override { inner_.synchronize(); }
  void* native_stream() override { return inner_.native_stream(); }

  // Per op kind since construction or the last reset(). Double ops are named "<op> (f64)".
  const std::map<std::string, OpProfile>& profile() const { return profile_; }
  void reset() { profile_.clear(); }
  // A table: op kind, calls, seconds, share of `total_seconds` (the wall time the profile
  // covers; the remainder is printed as "outside backend ops"), GFLOP/s of GEMM ops. Sorted by
  // time, largest first.
  void print(std::FILE* out, double total_seconds) const;

  // Called by the op wrappers: adds one call of `op`.
  void record(const std::string& op, double seconds, double flops);

 protected:
  BackendOps<float>& ops_f32() override;
  BackendOps<double>& ops_f64() override;

 private:
  Backend& inner_;
  std::map<std::string, OpProfile> profile_;
  std::unique_ptr<BackendOps<float>> f32_;
  std::unique_ptr<BackendOps<double>> f64_;
};

}  // namespace tessera::kernels

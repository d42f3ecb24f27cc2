#include "trainer/checkpoint/staging.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/host_staging.h"
#include "kernels/math/low_precision.h"

namespace tessera::trainer {

namespace {

// Below this many elements a conversion loop runs on one thread.
constexpr int64_t kParallelConvert = int64_t{1} << 14;

void widen(float* dst, const uint16_t* src, int64_t n) {
#pragma omp parallel for simd if (n >= kParallelConvert)
  for (int64_t i = 0; i < n; ++i) dst[i] = kernels::math::bf16_to_float(src[i]);
}

void round_to_bf16(uint16_t* dst, const float* src, int64_t n) {
#pragma omp parallel for simd if (n >= kParallelConvert)
  for (int64_t i = 0; i < n; ++i) dst[i] = kernels::math::float_to_bf16(src[i]);
}

// Moments in backend memory the host cannot address go through a host chunk of bf16 bits.
void widen_from(kernels::Backend& be, float* dst, const uint16_t* src, int64_t n) {
  if (be.capabilities().host_accessible) return widen(dst, src, n);
  kernels::stage_from_backend(be, src, n, [&](const uint16_t* bits, int64_t c, int64_t len) {
    widen(dst + c, bits, len);
  });
}

void round_into(kernels::Backend& be, uint16_t* dst, const float* src, int64_t n) {
  if (be.capabilities().host_accessible) return round_to_bf16(dst, src, n);
  kernels::stage_to_backend(be, dst, n, [&](uint16_t* bits, int64_t c, int64_t len) {
    round_to_bf16(bits, src + c, len);
  });
}

}  // namespace

CheckpointBuffers model_buffers(ParamTable& params, ZeroOptimizer& optimizer) {
  if (optimizer.state_dtype() != StateDtype::kF32) {
    throw std::logic_error(
        "model_buffers: bf16 optimizer state has no float32 moments to checkpoint in place; use "
        "CheckpointStaging's buffers");
  }
  CheckpointBuffers b;
  b.values = params.values().data<float>();
  for (size_t k = 0; k < optimizer.shards().size(); ++k) {
    b.exp_avg.push_back(optimizer.exp_avg(k).data());
    b.exp_avg_sq.push_back(optimizer.exp_avg_sq(k).data());
  }
  return b;
}

CheckpointStaging::CheckpointStaging(ParamTable& params, ZeroOptimizer& optimizer)
    : params_(params),
      optimizer_(optimizer),
      values_staged_(!params.backend().capabilities().host_accessible),
      moments_staged_(values_staged_ && optimizer.state_dtype() == StateDtype::kF32) {
  kernels::Backend& be = params.backend();
  const std::vector<FlatRange>& shards = optimizer.shards();
  if (values_staged_) {
    values_ = be.alloc_host({params.padded_numel()}, kernels::DType::kF32);
    buffers_.values = values_.data<float>();
  } else {
    buffers_.values = params.values().data<float>();
  }
  if (optimizer.state_dtype() == StateDtype::kBF16) {
    // One mapping for every shard's two mirrors; its pages exist once written. Slots no tensor
    // covers (region padding, frozen parameters' moments) are zero on the device forever (AdamW
    // never writes them), as the mapping's untouched pages read.
    int64_t total = 0;
    for (const FlatRange& s : shards) total += 2 * s.size();
    widened_bytes_ = sizeof(float) * static_cast<size_t>(total > 0 ? total : 1);
    void* p = mmap(nullptr, widened_bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      throw std::runtime_error("checkpoint staging: mapping " + std::to_string(widened_bytes_) +
                               " bytes for the float32 mirrors of the bf16 moments failed: " +
                               std::strerror(errno));
    }
    widened_ = static_cast<float*>(p);
    float* at = widened_;
    for (const FlatRange& s : shards) {
      buffers_.exp_avg.push_back(at);
      at += s.size();
      buffers_.exp_avg_sq.push_back(at);
      at += s.size();
    }
  } else if (moments_staged_) {
    for (const FlatRange& s : shards) {
      moments_.push_back(be.alloc_host({s.size()}, kernels::DType::kF32));
      buffers_.exp_avg.push_back(moments_.back().data<float>());
      moments_.push_back(be.alloc_host({s.size()}, kernels::DType::kF32));
      buffers_.exp_avg_sq.push_back(moments_.back().data<float>());
    }
  } else {
    for (size_t k = 0; k < shards.size(); ++k) {
      buffers_.exp_avg.push_back(optimizer.exp_avg(k).data());
      buffers_.exp_avg_sq.push_back(optimizer.exp_avg_sq(k).data());
    }
  }
  // A resume reads only the tensors' elements: region padding and frozen parameters' moment
  // slots keep what the device holds (zeros) when to_device() copies everything back.
  if (values_staged_ || moments_staged_) to_host();
}

CheckpointStaging::~CheckpointStaging() {
  if (widened_) munmap(widened_, widened_bytes_);
}

void CheckpointStaging::to_host() {
  kernels::Backend& be = params_.backend();
  if (values_staged_) {
    be.copy_to_host(buffers_.values, params_.values().data<float>(),
                    sizeof(float) * params_.padded_numel());
  }
  for (size_t k = 0; k < buffers_.exp_avg.size(); ++k) {
    if (widened_) {
      const int64_t n = static_cast<int64_t>(optimizer_.exp_avg_bf16(k).size());
      widen_from(be, buffers_.exp_avg[k], optimizer_.exp_avg_bf16(k).data(), n);
      widen_from(be, buffers_.exp_avg_sq[k], optimizer_.exp_avg_sq_bf16(k).data(), n);
    } else if (moments_staged_) {
      const size_t bytes = sizeof(float) * optimizer_.exp_avg(k).size();
      be.copy_to_host(buffers_.exp_avg[k], optimizer_.exp_avg(k).data(), bytes);
      be.copy_to_host(buffers_.exp_avg_sq[k], optimizer_.exp_avg_sq(k).data(), bytes);
    }
  }
}

void CheckpointStaging::to_device() {
  kernels::Backend& be = params_.backend();
  if (values_staged_) {
    be.copy_from_host(params_.values().data<float>(), buffers_.values,
                      sizeof(float) * params_.padded_numel());
  }
  for (size_t k = 0; k < buffers_.exp_avg.size(); ++k) {
    if (widened_) {
      const int64_t n = static_cast<int64_t>(optimizer_.exp_avg_bf16(k).size());
      round_into(be, optimizer_.exp_avg_bf16(k).data(), buffers_.exp_avg[k], n);
      round_into(be, optimizer_.exp_avg_sq_bf16(k).data(), buffers_.exp_avg_sq[k], n);
    } else if (moments_staged_) {
      const size_t bytes = sizeof(float) * optimizer_.exp_avg(k).size();
      be.copy_from_host(optimizer_.exp_avg(k).data(), buffers_.exp_avg[k], bytes);
      be.copy_from_host(optimizer_.exp_avg_sq(k).data(), buffers_.exp_avg_sq[k], bytes);
    }
  }
  release();
}

void CheckpointStaging::release() {
  if (widened_) madvise(widened_, widened_bytes_, MADV_DONTNEED);
}

}  // namespace tessera::trainer

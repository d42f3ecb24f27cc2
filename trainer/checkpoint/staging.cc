#include "trainer/checkpoint/staging.h"

namespace tessera::trainer {

CheckpointBuffers model_buffers(ParamTable& params, ZeroOptimizer& optimizer) {
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
      staged_(!params.backend().capabilities().host_accessible) {
  kernels::Backend& be = params.backend();
  const size_t shards = optimizer.shards().size();
  if (!staged_) {
    buffers_ = model_buffers(params, optimizer);
    return;
  }
  values_ = be.alloc_host({params.padded_numel()}, kernels::DType::kF32);
  buffers_.values = values_.data<float>();
  for (size_t k = 0; k < shards; ++k) {
    const int64_t n = optimizer.shards()[k].size();
    moments_.push_back(be.alloc_host({n}, kernels::DType::kF32));
    buffers_.exp_avg.push_back(moments_.back().data<float>());
    moments_.push_back(be.alloc_host({n}, kernels::DType::kF32));
    buffers_.exp_avg_sq.push_back(moments_.back().data<float>());
  }
  // A resume reads only the tensors' elements: region padding and frozen parameters' moment
  // slots keep what the device holds (zeros) when to_device() copies everything back.
  to_host();
}

void CheckpointStaging::to_host() {
  if (!staged_) return;
  kernels::Backend& be = params_.backend();
  be.copy_to_host(buffers_.values, params_.values().data<float>(),
                  sizeof(float) * params_.padded_numel());
  for (size_t k = 0; k < buffers_.exp_avg.size(); ++k) {
    const size_t bytes = sizeof(float) * optimizer_.exp_avg(k).size();
    be.copy_to_host(buffers_.exp_avg[k], optimizer_.exp_avg(k).data(), bytes);
    be.copy_to_host(buffers_.exp_avg_sq[k], optimizer_.exp_avg_sq(k).data(), bytes);
  }
}

void CheckpointStaging::to_device() {
  if (!staged_) return;
  kernels::Backend& be = params_.backend();
  be.copy_from_host(params_.values().data<float>(), buffers_.values,
                    sizeof(float) * params_.padded_numel());
  for (size_t k = 0; k < buffers_.exp_avg.size(); ++k) {
    const size_t bytes = sizeof(float) * optimizer_.exp_avg(k).size();
    be.copy_from_host(optimizer_.exp_avg(k).data(), buffers_.exp_avg[k], bytes);
    be.copy_from_host(optimizer_.exp_avg_sq(k).data(), buffers_.exp_avg_sq[k], bytes);
  }
}

}  // namespace tessera::trainer

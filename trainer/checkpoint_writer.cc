#include "trainer/checkpoint_writer.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <utility>

namespace tessera::trainer {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

CheckpointWriter::CheckpointWriter(MPI_Comm world, std::vector<CheckpointTensor> tensors,
                                   bool async)
    : tensors_(std::move(tensors)), async_(async) {
  if (MPI_Comm_dup(world, &comm_) != MPI_SUCCESS) {
    throw std::runtime_error("checkpoint writer: MPI_Comm_dup failed");
  }
}

CheckpointWriter::~CheckpointWriter() {
  Join();
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void CheckpointWriter::Join() {
  if (thread_.joinable()) thread_.join();
}

std::string CheckpointWriter::Wait() {
  Join();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  return last_dir_;
}

double CheckpointWriter::Save(const std::vector<TensorSlice>& owned, const CheckpointMeta& meta,
                              const Recipe& recipe, const std::string& checkpoints_dir,
                              int64_t keep_last) {
  const auto t0 = std::chrono::steady_clock::now();
  Wait();
  if (!async_) {
    last_dir_ = write_checkpoint(comm_, checkpoints_dir, tensors_, owned, meta, recipe, keep_last);
    return seconds_since(t0);
  }
  // Snapshot: the training loop may change the parameters as soon as we return.
  size_t total = 0;
  for (const TensorSlice& s : owned) total += static_cast<size_t>(s.end - s.begin);
  snapshot_.resize(total);
  snapshot_slices_.clear();
  size_t at = 0;
  for (const TensorSlice& s : owned) {
    std::copy(s.data, s.data + (s.end - s.begin), snapshot_.data() + at);
    snapshot_slices_.push_back({s.tensor, s.begin, s.end, snapshot_.data() + at});
    at += static_cast<size_t>(s.end - s.begin);
  }
  thread_ = std::thread([this, meta, recipe, checkpoints_dir, keep_last] {
    try {
      last_dir_ = write_checkpoint(comm_, checkpoints_dir, tensors_, snapshot_slices_, meta,
                                   recipe, keep_last);
    } catch (...) {
      error_ = std::current_exception();
    }
  });
  return seconds_since(t0);
}

}  // namespace tessera::trainer

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
    : tensors_(std::make_shared<const std::vector<CheckpointTensor>>(std::move(tensors))),
      async_(async) {
  if (MPI_Comm_dup(world, &comm_) != MPI_SUCCESS) {
    throw std::runtime_error("checkpoint writer: MPI_Comm_dup failed");
  }
}

CheckpointWriter::~CheckpointWriter() {
  if (thread_.joinable() && std::uncaught_exceptions() > 0) {
    thread_.detach();  // it owns what it uses (pending_, tensors_); the communicator stays
    return;
  }
  Join();
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void CheckpointWriter::Join() {
  if (thread_.joinable()) thread_.join();
}

std::string CheckpointWriter::Wait() {
  Join();
  if (pending_) {
    const std::shared_ptr<Pending> done = std::exchange(pending_, nullptr);
    spare_ = std::move(done->snapshot);  // reused by the next snapshot: no page faults
    if (done->error) std::rethrow_exception(done->error);
    last_dir_ = done->dir;
  }
  return last_dir_;
}

double CheckpointWriter::Save(const std::vector<TensorSlice>& owned, const CheckpointMeta& meta,
                              const Recipe& recipe, const std::string& checkpoints_dir,
                              int64_t keep_last) {
  const auto t0 = std::chrono::steady_clock::now();
  Wait();
  if (!async_) {
    last_dir_ = write_checkpoint(comm_, checkpoints_dir, *tensors_, owned, meta, recipe, keep_last);
    return seconds_since(t0);
  }
  // Snapshot: the training loop may change the parameters as soon as we return.
  auto pending = std::make_shared<Pending>();
  pending->snapshot = std::move(spare_);
  size_t total = 0;
  for (const TensorSlice& s : owned) total += static_cast<size_t>(s.end - s.begin);
  pending->snapshot.resize(total);
  size_t at = 0;
  for (const TensorSlice& s : owned) {
    std::copy(s.data, s.data + (s.end - s.begin), pending->snapshot.data() + at);
    pending->slices.push_back({s.tensor, s.begin, s.end, pending->snapshot.data() + at});
    at += static_cast<size_t>(s.end - s.begin);
  }
  pending_ = pending;
  thread_ = std::thread([pending, tensors = tensors_, comm = comm_, meta, recipe, checkpoints_dir,
                         keep_last] {
    try {
      pending->dir = write_checkpoint(comm, checkpoints_dir, *tensors, pending->slices, meta,
                                      recipe, keep_last);
    } catch (...) {
      pending->error = std::current_exception();
    }
  });
  return seconds_since(t0);
}

}  // namespace tessera::trainer

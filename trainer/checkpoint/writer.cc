#include "trainer/checkpoint/writer.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <stdexcept>
#include <utility>

#include "parallel/env_number.h"
#include "parallel/mpi_comm.h"

namespace tessera::trainer {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

double checkpoint_timeout_s(int64_t bytes) {
  const double s = parallel::env_number("TESSERA_CHECKPOINT_TIMEOUT_S",
                                        600.0 + static_cast<double>(bytes) / 20e6);
  if (!(s >= 0)) {
    throw std::invalid_argument("TESSERA_CHECKPOINT_TIMEOUT_S=" + std::to_string(s) +
                                " is not a number of seconds >= 0");
  }
  return s;
}

parallel::BlockingWatch::Region watch_checkpoint_io(
    const std::shared_ptr<parallel::BlockingWatch>& watch, const std::string& what, int64_t bytes) {
  if (!watch) return {};
  return parallel::BlockingWatch::watch(watch, what + " (collective HDF5 I/O)",
                                        checkpoint_timeout_s(bytes));
}

void bound_by_checkpoint_timeout(parallel::Comm& comm, int64_t bytes) {
  if (auto* mpi = dynamic_cast<parallel::MpiComm*>(&comm)) {
    mpi->set_timeout_s(checkpoint_timeout_s(bytes));
  }
}

std::unique_ptr<parallel::Comm> checkpoint_comm(parallel::Comm& world, int64_t bytes) {
  std::vector<int> everyone(static_cast<size_t>(world.size()));
  std::iota(everyone.begin(), everyone.end(), 0);
  std::unique_ptr<parallel::Comm> comm = world.split(everyone, "checkpoint");
  bound_by_checkpoint_timeout(*comm, bytes);
  return comm;
}

int64_t slice_bytes(const std::vector<TensorSlice>& slices) {
  int64_t n = 0;
  for (const TensorSlice& s : slices) n += (s.end - s.begin) * static_cast<int64_t>(sizeof(float));
  return n;
}

CheckpointWriter::CheckpointWriter(parallel::Comm& world, std::vector<CheckpointTensor> tensors,
                                   bool async, std::shared_ptr<parallel::BlockingWatch> watch,
                                   CheckpointEnv& env)
    : comm_(checkpoint_comm(world, 0)),
      tensors_(std::make_shared<const std::vector<CheckpointTensor>>(std::move(tensors))),
      async_(async),
      watch_(std::move(watch)),
      env_(&env) {}

CheckpointWriter::~CheckpointWriter() {
  // A detached write keeps its own reference to the communicator.
  if (std::uncaught_exceptions() > 0) Abandon();
  if (!abandoned_) Join();
}

void CheckpointWriter::Abandon() {
  if (!thread_.joinable()) return;
  thread_.detach();  // it owns what it uses (pending_, tensors_)
  abandoned_ = true;
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
  const std::string what = "checkpoint save of step " + std::to_string(meta.step);
  // The ranks' agreements wait for the slowest rank's writes.
  bound_by_checkpoint_timeout(*comm_, slice_bytes(owned));
  if (!async_) {
    const auto region = watch_checkpoint_io(watch_, what, slice_bytes(owned));
    last_dir_ = write_checkpoint(*comm_, checkpoints_dir, *tensors_, owned, meta, recipe, keep_last,
                                 *env_);
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
                         keep_last, watch = watch_, env = env_, what, bytes = slice_bytes(owned)] {
    try {
      const auto region = watch_checkpoint_io(watch, what, bytes);
      pending->dir = write_checkpoint(*comm, checkpoints_dir, *tensors, pending->slices, meta,
                                      recipe, keep_last, *env);
    } catch (...) {
      pending->error = std::current_exception();
    }
  });
  return seconds_since(t0);
}

}  // namespace tessera::trainer

// Saves checkpoints (directory.h's collective write_checkpoint) synchronously, or with
// checkpoint.async on a background thread: Save() then copies this rank's slices into a snapshot
// and returns while the thread writes them, so training goes on; the next Save() (or Wait()) first
// waits for the write in flight. The writes use a communicator of their own (checkpoint_comm), so
// they never interleave with the training's collectives. Each write runs inside a BlockingWatch region
// (HDF5's collective I/O blocks inside MPI, where no Work's watchdog reaches): a silent rank or
// a write past its timeout (checkpoint_timeout_s) ends every rank with an error naming it.
//
// Thread-safety: call Save/Wait from one thread (the training loop).
#pragma once

#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "parallel/blocking_watch.h"
#include "parallel/comm.h"
#include "trainer/checkpoint/directory.h"

namespace tessera::trainer {

// How long one rank's checkpoint read or write of `bytes` may block before every rank is ended:
// $TESSERA_CHECKPOINT_TIMEOUT_S if set, else 10 minutes plus 20 MB/s (a rank's share of a busy
// parallel file system). Liveness checks name a stopped rank long before (TESSERA_COMM_STALL_S).
double checkpoint_timeout_s(int64_t bytes);
// Lets `comm`'s operations (an MpiComm's; others have no timeout) wait checkpoint_timeout_s(bytes)
// instead of the default for small collectives: the ranks' agreements on a read or write wait
// for the slowest rank's I/O. Applies to operations posted afterwards.
void bound_by_checkpoint_timeout(parallel::Comm& comm, int64_t bytes);
// Collective over `world`: a communicator of all its ranks for checkpoint I/O of `bytes` per
// rank, bounded as above.
std::unique_ptr<parallel::Comm> checkpoint_comm(parallel::Comm& world, int64_t bytes);
// Bytes of this rank's slices (what a checkpoint read or write of them moves).
int64_t slice_bytes(const std::vector<TensorSlice>& slices);
// A region of `watch` for a checkpoint read or write (an empty Region when watch is null).
parallel::BlockingWatch::Region watch_checkpoint_io(
    const std::shared_ptr<parallel::BlockingWatch>& watch, const std::string& what, int64_t bytes);

class CheckpointWriter {
 public:
  // Collective over `world` (splits a communicator of its own off it; an MpiComm, since HDF5
  // writes through MPI-IO). `watch` bounds each write; null: unbounded. Every write's file
  // operations go through `env` (REQUIRES: env outlives the writer and its writes).
  CheckpointWriter(parallel::Comm& world, std::vector<CheckpointTensor> tensors, bool async,
                   std::shared_ptr<parallel::BlockingWatch> watch,
                   CheckpointEnv& env = CheckpointEnv::Posix());
  // Joins a write in flight (its error, if any, is lost: call Wait first). While an exception
  // unwinds the training loop it does NOT wait: the write's collective may never complete on the
  // other ranks, and the caller is about to abort every rank (parallel::abort_all).
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Collective: saves `owned` (this rank's slices, read now or before returning) as the
  // checkpoint of meta.step. Returns the seconds the caller was held up: the whole write when
  // synchronous; the wait for the previous write plus the snapshot copy when asynchronous.
  double Save(const std::vector<TensorSlice>& owned, const CheckpointMeta& meta,
              const Recipe& recipe, const std::string& checkpoints_dir, int64_t keep_last);
  // Waits for the write in flight and rethrows its error. Returns the directory of the newest
  // checkpoint written so far ("" if none).
  std::string Wait();
  // Lets a write in flight go on without waiting for it (its thread owns what it uses), for a
  // training loop that failed and is about to end every rank. Nothing may be called afterwards.
  void Abandon();

 private:
  // What a background write owns, shared with its thread so that an abandoned thread never
  // touches a destroyed writer.
  struct Pending {
    std::vector<float> snapshot;
    std::vector<TensorSlice> slices;
    std::string dir;  // the written checkpoint, once done
    std::exception_ptr error;
  };
  void Join();

  std::shared_ptr<parallel::Comm> comm_;  // shared with a write's thread
  std::shared_ptr<const std::vector<CheckpointTensor>> tensors_;
  bool async_;
  std::shared_ptr<parallel::BlockingWatch> watch_;
  CheckpointEnv* env_;
  std::thread thread_;
  std::shared_ptr<Pending> pending_;
  std::vector<float> spare_;  // the last snapshot's buffer
  std::string last_dir_;
  bool abandoned_ = false;  // a write thread was detached
};

}  // namespace tessera::trainer

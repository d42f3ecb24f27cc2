// The training and validation data loader (DESIGN.md "Data").
//
// Samples. Within a split, the shards' tokens concatenated in manifest order form one stream of n
// tokens. Sample s, 0 <= s < S = (n - 1 - extra_tokens) / seq_len, is tokens
// [s*seq_len, s*seq_len + seq_len + 1 + extra_tokens): samples overlap by 1 + extra_tokens tokens
// (the last target of one is the first input of the next; multi-token prediction reads
// extra_tokens more targets past it) and pack across document boundaries.
//
// Order. Epoch e visits the samples in the order of EpochPermutation(S, seed, e) (identity when
// shuffle is off). A step consumes the next global_batch positions; when fewer remain in the epoch
// the step continues into the next epoch's order, so batches are never short. Replica r of R gets
// the contiguous rows [r*global_batch/R, (r+1)*global_batch/R) of each step, so what a sample
// holds and where it lands in the global batch never depend on R, and the concatenation of the R
// replicas' batches is the batch one replica would read.
//
// State. LoaderState{epoch, cursor} (cursor: samples of the epoch consumed) is all a checkpoint
// stores; a Loader started from a saved state returns exactly the batches the original would have.
//
// Prefetch. A background thread builds up to `prefetch` batches ahead into a bounded queue. An
// error it meets (a corrupt shard, a token id out of range) is rethrown by next() when the batch it
// was building is due, and by every next() after that; it never terminates the process or hangs.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/data_error.h"
#include "data/manifest.h"

namespace tessera::data {

class SplitReader;

struct LoaderState {
  uint64_t epoch = 0;
  uint64_t cursor = 0;  // samples consumed in the epoch, < samples_per_epoch()
  bool operator==(const LoaderState&) const = default;
};

struct LoaderOptions {
  std::string dataset_dir;
  std::string split = "train";  // "train" | "validation"
  int64_t seq_len = 0;          // >= 1
  int64_t extra_tokens = 0;     // >= 0: tokens each row carries past seq_len + 1 (MTP targets)
  int64_t global_batch = 0;     // samples per step over all replicas; % n_replicas == 0
  int replica = 0;              // in [0, n_replicas)
  int n_replicas = 1;
  int64_t vocab_size = 0;       // the model's (model.vocab_size): must be >= the manifest's, else
                                // a DataError naming both; 0: not checked. Token ids are checked
                                // against the manifest's vocab_size (errors name the shard file).
  uint64_t seed = 0;
  bool shuffle = true;          // false for validation: samples in stream order
  int prefetch = 4;             // batches kept ready by the background thread (0 = synchronous)
  LoaderState start;            // where to begin (restore); start.cursor < samples_per_epoch()
  // Verified shards are kept in memory up to this many bytes; the rest are read from their files
  // sample by sample. Default: 4 GiB.
  uint64_t cache_bytes = uint64_t{4} << 30;
};

// Thread-safety: one consumer thread calls everything; the prefetch thread is internal.
class Loader {
 public:
  // Reads and checks the manifest and every shard's metadata (missing, truncated, dtype, size) and
  // the options; throws DataError naming the file or the option. Shard contents (checksum, token
  // range) are verified when first read, on the prefetch thread; errors then surface from next().
  explicit Loader(LoaderOptions options);
  ~Loader();  // stops and joins the prefetch thread
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // This replica's rows of the next step, row-major: rows() x row_tokens() token ids.
  void next(std::vector<int32_t>& out);
  // The state before the next call to next().
  LoaderState state() const { return state_; }
  // Drops prefetched batches and continues from `start` (validation: reset() rereads from the top).
  void reset(LoaderState start = {});

  int64_t samples_per_epoch() const { return static_cast<int64_t>(samples_per_epoch_); }
  int64_t rows() const { return rows_; }
  int64_t seq_len() const { return options_.seq_len; }
  int64_t row_tokens() const { return options_.seq_len + 1 + options_.extra_tokens; }
  // Total time next() blocked waiting for the prefetch thread.
  double wait_seconds() const { return wait_seconds_; }
  const Manifest& manifest() const { return manifest_; }
  const LoaderOptions& options() const { return options_; }

  // The state after `samples` more samples are consumed from `state`.
  static LoaderState advance(LoaderState state, uint64_t samples, uint64_t samples_per_epoch);

 private:
  struct Batch {
    std::vector<int32_t> tokens;
    std::exception_ptr error;
  };
  void build(LoaderState at, std::vector<int32_t>& out);
  void start_thread();
  void stop_thread();
  void produce(LoaderState at);

  LoaderOptions options_;
  Manifest manifest_;
  std::unique_ptr<SplitReader> reader_;
  uint64_t samples_per_epoch_ = 0;
  int64_t rows_ = 0;
  LoaderState state_;
  double wait_seconds_ = 0.0;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Batch> ready_;                 // built batches, oldest first
  std::vector<std::vector<int32_t>> free_;  // spent buffers for reuse
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tessera::data

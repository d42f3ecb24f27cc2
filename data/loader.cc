#include "data/loader.h"

#include <chrono>
#include <optional>

#include "data/sample_order.h"
#include "data/split_reader.h"

namespace tessera::data {

namespace {

[[noreturn]] void bad_option(const LoaderOptions& o, const std::string& what) {
  throw DataError("loader for " + o.dataset_dir + " (split '" + o.split + "'): " + what);
}

}  // namespace

LoaderState Loader::advance(LoaderState state, uint64_t samples, uint64_t samples_per_epoch) {
  const uint64_t position = state.cursor + samples;
  state.epoch += position / samples_per_epoch;
  state.cursor = position % samples_per_epoch;
  return state;
}

Loader::Loader(LoaderOptions options) : options_(std::move(options)) {
  const LoaderOptions& o = options_;
  if (o.seq_len < 1) bad_option(o, "seq_len must be >= 1, got " + std::to_string(o.seq_len));
  if (o.n_replicas < 1) bad_option(o, "n_replicas must be >= 1");
  if (o.replica < 0 || o.replica >= o.n_replicas) {
    bad_option(o, "replica " + std::to_string(o.replica) + " is not in [0, " +
                      std::to_string(o.n_replicas) + ")");
  }
  if (o.global_batch < 1 || o.global_batch % o.n_replicas != 0) {
    bad_option(o, "global_batch (" + std::to_string(o.global_batch) +
                      ") must be a positive multiple of the number of replicas (" +
                      std::to_string(o.n_replicas) + ")");
  }
  if (o.prefetch < 0) bad_option(o, "prefetch must be >= 0");
  if (o.extra_tokens < 0) bad_option(o, "extra_tokens must be >= 0");
  if (o.vocab_size < 0) bad_option(o, "vocab_size must be >= 0");

  manifest_ = read_manifest(o.dataset_dir);
  reader_ = std::make_unique<SplitReader>(o.dataset_dir, manifest_, o.split, o.vocab_size,
                                          o.cache_bytes);
  const uint64_t n = reader_->size();
  const uint64_t row = static_cast<uint64_t>(row_tokens());
  if (n < row) {
    throw DataError(manifest_path(o.dataset_dir) + ": split '" + o.split + "' is empty for seq_len " +
                    std::to_string(o.seq_len) + ": it holds " + std::to_string(n) +
                    " tokens and one sample needs " + std::to_string(row));
  }
  samples_per_epoch_ = (n - row + o.seq_len) / static_cast<uint64_t>(o.seq_len);
  rows_ = o.global_batch / o.n_replicas;
  if (o.start.cursor >= samples_per_epoch_) {
    bad_option(o, "start cursor " + std::to_string(o.start.cursor) + " is past the epoch's " +
                      std::to_string(samples_per_epoch_) + " samples (different dataset or seq_len?)");
  }
  state_ = o.start;
  start_thread();
}

Loader::~Loader() { stop_thread(); }

void Loader::build(LoaderState at, std::vector<int32_t>& out) {
  const uint64_t row = static_cast<uint64_t>(row_tokens());
  const uint64_t first = static_cast<uint64_t>(options_.replica) * static_cast<uint64_t>(rows_);
  out.resize(static_cast<size_t>(rows_) * row);
  std::optional<EpochPermutation> order;
  uint64_t order_epoch = 0;
  for (int64_t j = 0; j < rows_; ++j) {
    const LoaderState position = advance(at, first + static_cast<uint64_t>(j), samples_per_epoch_);
    uint64_t sample = position.cursor;
    if (options_.shuffle) {
      if (!order || order_epoch != position.epoch) {
        order.emplace(samples_per_epoch_, options_.seed, position.epoch);
        order_epoch = position.epoch;
      }
      sample = (*order)(position.cursor);
    }
    reader_->read(sample * static_cast<uint64_t>(options_.seq_len), row,
                  out.data() + static_cast<size_t>(j) * row);
  }
}

void Loader::start_thread() {
  stop_ = false;
  if (options_.prefetch == 0) return;
  thread_ = std::thread([this, at = state_] { produce(at); });
}

void Loader::stop_thread() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Loader::produce(LoaderState at) {
  const size_t capacity = static_cast<size_t>(options_.prefetch);
  for (;;) {
    std::vector<int32_t> buffer;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || ready_.size() < capacity; });
      if (stop_) return;
      if (!free_.empty()) {
        buffer = std::move(free_.back());
        free_.pop_back();
      }
    }
    Batch batch;
    try {
      build(at, buffer);
      batch.tokens = std::move(buffer);
    } catch (...) {
      batch.error = std::current_exception();
    }
    const bool failed = batch.error != nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.push_back(std::move(batch));
    }
    cv_.notify_all();
    if (failed) return;  // the error stays at the head of the queue for next() to rethrow
    at = advance(at, static_cast<uint64_t>(options_.global_batch), samples_per_epoch_);
  }
}

void Loader::next(std::vector<int32_t>& out) {
  if (options_.prefetch == 0) {
    build(state_, out);
  } else {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (ready_.empty()) {
        const auto t0 = std::chrono::steady_clock::now();
        cv_.wait(lock, [&] { return !ready_.empty(); });
        wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      Batch& batch = ready_.front();
      if (batch.error) std::rethrow_exception(batch.error);
      out.swap(batch.tokens);
      if (batch.tokens.capacity() > 0) free_.push_back(std::move(batch.tokens));
      ready_.pop_front();
    }
    cv_.notify_all();
  }
  state_ = advance(state_, static_cast<uint64_t>(options_.global_batch), samples_per_epoch_);
}

void Loader::reset(LoaderState start) {
  if (start.cursor >= samples_per_epoch_) {
    bad_option(options_, "reset cursor " + std::to_string(start.cursor) + " is past the epoch's " +
                             std::to_string(samples_per_epoch_) + " samples");
  }
  stop_thread();
  for (Batch& batch : ready_) {
    if (batch.tokens.capacity() > 0) free_.push_back(std::move(batch.tokens));
  }
  ready_.clear();
  state_ = start;
  start_thread();
}

}  // namespace tessera::data

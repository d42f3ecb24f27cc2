// Loader throughput: tokens/s that data::Loader delivers to a training loop, with the prefetch
// thread doing the work (one core) while the consumer only takes batches. Also reports the
// synchronous loader (prefetch 0) and the out-of-cache path (every sample read from its HDF5 file),
// and checks that all of them deliver identical batches.
//
//   loader_bench [--dataset DIR] [--tokens N] [--seq-len L] [--batch B] [--steps S] [--prefetch P]
//
// Without --dataset it prepares a synthetic dataset (vocab 50304, uint16) under $TMPDIR first.
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/prepare_synthetic.h"
#include "data/xxhash64.h"

namespace {

using tessera::data::Loader;
using tessera::data::LoaderOptions;

struct Result {
  double seconds = 0;
  double wait_seconds = 0;
  uint64_t tokens = 0;  // training tokens: rows * seq_len per step
  uint64_t hash = 0;    // XXH64 over every batch, to check all variants agree
};

Result run(LoaderOptions options, int64_t steps) {
  Loader loader(options);
  std::vector<int32_t> batch;
  loader.next(batch);  // warm-up: thread start, first shard reads and checksums
  const double warmup_wait = loader.wait_seconds();
  tessera::data::Xxh64 hash;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < steps; ++s) {
    loader.next(batch);
    hash.update(batch.data(), batch.size() * sizeof(int32_t));
  }
  Result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.wait_seconds = loader.wait_seconds() - warmup_wait;
  r.tokens = static_cast<uint64_t>(steps * loader.rows() * options.seq_len);
  r.hash = hash.digest();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dataset;
  uint64_t tokens = 64'000'000;
  int64_t seq_len = 1024;
  int64_t batch = 32;
  int64_t steps = 10000;
  int prefetch = 4;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (value == nullptr) {
      std::fprintf(stderr, "loader_bench: %s needs a value\n", arg.c_str());
      return 2;
    }
    if (arg == "--dataset") dataset = value;
    else if (arg == "--tokens") tokens = std::stoull(value);
    else if (arg == "--seq-len") seq_len = std::stoll(value);
    else if (arg == "--batch") batch = std::stoll(value);
    else if (arg == "--steps") steps = std::stoll(value);
    else if (arg == "--prefetch") prefetch = std::stoi(value);
    else {
      std::fprintf(stderr, "loader_bench: unknown option %s\n", arg.c_str());
      return 2;
    }
    ++i;
  }

  std::string scratch;
  if (dataset.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    scratch = std::string(tmp != nullptr ? tmp : "/tmp") + "/tessera-loader-bench-XXXXXX";
    if (::mkdtemp(scratch.data()) == nullptr) {
      std::perror("mkdtemp");
      return 1;
    }
    dataset = scratch + "/ds";
    tessera::data::PrepareSyntheticOptions p;
    p.chain.vocab = 50304;
    p.chain.order = 1;
    p.chain.seed = 1;
    p.tokens = tokens;
    p.out_dir = dataset;
    const auto summary = tessera::data::prepare_synthetic(p);
    std::printf("%s", tessera::data::format_summary(summary).c_str());
  }

  LoaderOptions o;
  o.dataset_dir = dataset;
  o.seq_len = seq_len;
  o.global_batch = batch;
  o.seed = 7;
  int status = 0;
  try {
    std::printf("loader: seq_len %lld, batch %lld, %lld steps (%lld samples per epoch)\n",
                static_cast<long long>(seq_len), static_cast<long long>(batch),
                static_cast<long long>(steps), static_cast<long long>(Loader(o).samples_per_epoch()));
    o.prefetch = prefetch;
    const Result with_prefetch = run(o, steps);
    o.prefetch = 0;
    const Result sync = run(o, steps);
    o.prefetch = prefetch;
    o.cache_bytes = 0;
    const Result uncached = run(o, steps / 10);
    const Result uncached_ref = [&] {
      LoaderOptions c = o;
      c.cache_bytes = uint64_t{4} << 30;
      c.prefetch = 0;
      return run(c, steps / 10);
    }();
    const auto line = [](const char* name, const Result& r) {
      std::printf("  %-34s %8.1fM tokens/s  (%.3f s, next() waited %.3f s)\n", name,
                  static_cast<double>(r.tokens) / r.seconds / 1e6, r.seconds, r.wait_seconds);
    };
    line("prefetch (resident shards)", with_prefetch);
    line("synchronous (prefetch 0)", sync);
    line("prefetch, shards read per sample", uncached);
    const bool same = with_prefetch.hash == sync.hash && uncached.hash == uncached_ref.hash;
    std::printf("check: all variants delivered identical batches: %s\n", same ? "yes" : "NO");
    status = same ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loader_bench: %s\n", e.what());
    status = 1;
  }
  if (!scratch.empty()) std::filesystem::remove_all(scratch);
  return status;
}

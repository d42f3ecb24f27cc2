// Learns byte-level BPE merges from pre-token counts (see pretokenize.h for what a pre-token is).
//
// Every pre-token starts as its bytes (ids 0..255). Each round merges the adjacent pair that occurs
// most often, weighted by pre-token counts; ties go to the smallest (left, right) ids, so the result
// is deterministic. Within a pre-token, occurrences are merged left to right without overlap. The
// i-th merge creates id first_id + i. Training stops after n_merges, or earlier when no pair occurs
// at least twice.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tessera::data {

using BpeMerge = std::pair<uint32_t, uint32_t>;

// `progress(merges_done)` is called now and then if given.
std::vector<BpeMerge> train_bpe(const std::unordered_map<std::string, uint64_t>& pretoken_counts,
                                size_t n_merges, uint32_t first_id,
                                const std::function<void(size_t)>& progress = {});

}  // namespace tessera::data

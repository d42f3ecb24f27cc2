#include "data/bpe_trainer.h"

#include <algorithm>
#include <queue>

namespace tessera::data {

namespace {

inline uint64_t pair_key(uint32_t left, uint32_t right) {
  return static_cast<uint64_t>(left) << 32 | right;
}

struct Word {
  std::vector<uint32_t> symbols;
  int64_t count = 0;
  size_t last_visit = SIZE_MAX;  // merge round that last rewrote this word
};

struct Candidate {
  int64_t count;
  uint64_t pair;
  // std::priority_queue pops the largest: most frequent first, then the smallest pair.
  bool operator<(const Candidate& other) const {
    if (count != other.count) return count < other.count;
    return pair > other.pair;
  }
};

}  // namespace

std::vector<BpeMerge> train_bpe(const std::unordered_map<std::string, uint64_t>& pretoken_counts,
                                size_t n_merges, uint32_t first_id,
                                const std::function<void(size_t)>& progress) {
  // Sorted, so that the work order (not only the result) is the same on every platform.
  std::vector<std::pair<std::string, uint64_t>> sorted(pretoken_counts.begin(), pretoken_counts.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (const auto& [text, count] : sorted) {
    if (text.size() < 2) continue;  // nothing to merge
    Word word;
    word.symbols.assign(text.begin(), text.end());
    for (uint32_t& s : word.symbols) s &= 0xFF;  // char may be signed
    word.count = static_cast<int64_t>(count);
    words.push_back(std::move(word));
  }

  std::unordered_map<uint64_t, int64_t> counts;
  std::unordered_map<uint64_t, std::vector<uint32_t>> where;  // pair -> words (may be stale)
  for (uint32_t w = 0; w < words.size(); ++w) {
    const std::vector<uint32_t>& s = words[w].symbols;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t key = pair_key(s[i], s[i + 1]);
      counts[key] += words[w].count;
      std::vector<uint32_t>& list = where[key];
      if (list.empty() || list.back() != w) list.push_back(w);
    }
  }
  std::priority_queue<Candidate> heap;
  for (const auto& [key, count] : counts) heap.push({count, key});

  std::vector<BpeMerge> merges;
  std::vector<std::pair<uint64_t, int64_t>> changes;  // (pair, count delta) of this round
  std::vector<uint32_t> merged;
  while (merges.size() < n_merges && !heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    const auto it = counts.find(top.pair);
    if (it == counts.end() || it->second > top.count) continue;  // merged, or a newer entry exists
    if (it->second < top.count) {
      // Counts that fell were not re-pushed when they fell; requeue at the current count.
      heap.push({it->second, top.pair});
      continue;
    }
    if (top.count < 2) break;
    const uint32_t left = static_cast<uint32_t>(top.pair >> 32);
    const uint32_t right = static_cast<uint32_t>(top.pair);
    const uint32_t id = first_id + static_cast<uint32_t>(merges.size());
    const size_t round = merges.size();
    merges.emplace_back(left, right);

    std::vector<uint32_t> affected = std::move(where[top.pair]);
    where.erase(top.pair);
    changes.clear();
    for (const uint32_t w : affected) {
      Word& word = words[w];
      if (word.last_visit == round) continue;
      word.last_visit = round;
      std::vector<uint32_t>& s = word.symbols;
      merged.clear();
      bool found = false;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
          merged.push_back(id);
          ++i;
          found = true;
        } else {
          merged.push_back(s[i]);
        }
      }
      if (!found) continue;
      // Replace the word's pair contributions: all of the old ones out, all of the new ones in.
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        changes.emplace_back(pair_key(s[i], s[i + 1]), -word.count);
      }
      for (size_t i = 0; i + 1 < merged.size(); ++i) {
        const uint64_t key = pair_key(merged[i], merged[i + 1]);
        changes.emplace_back(key, word.count);
        if (merged[i] == id || merged[i + 1] == id) {
          std::vector<uint32_t>& list = where[key];
          if (list.empty() || list.back() != w) list.push_back(w);
        }
      }
      s.swap(merged);
    }
    // Apply the net change per pair. Only increases need a heap entry: a decrease is noticed
    // (and requeued) when the pair's old entry is popped.
    std::sort(changes.begin(), changes.end());
    for (size_t i = 0; i < changes.size();) {
      const uint64_t key = changes[i].first;
      int64_t delta = 0;
      for (; i < changes.size() && changes[i].first == key; ++i) delta += changes[i].second;
      if (delta == 0) continue;
      int64_t& count = counts[key];
      count += delta;
      if (count <= 0) {
        counts.erase(key);
      } else if (delta > 0) {
        heap.push({count, key});
      }
    }
    if (progress && merges.size() % 256 == 0) progress(merges.size());
  }
  if (progress) progress(merges.size());
  return merges;
}

}  // namespace tessera::data

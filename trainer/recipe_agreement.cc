#include "trainer/recipe_agreement.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "data/xxhash64.h"

namespace tessera::trainer {

namespace {

// One entry per key of a resolved recipe's dump: "section.key" and its value (comments and the
// header line, which names the file the recipe came from, left out).
struct KeyValue {
  std::string key;
  std::string value;
};

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(' ');
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(' ') - b + 1);
}

// Keys a rank may set for itself: they change nothing the ranks exchange. A node may read the
// dataset from its own local copy, and use the threads its own cores allow.
bool is_local_key(const std::string& key) {
  return key == "data.path" || key == "run.cpu_threads" || key == "data.prefetch";
}

std::vector<KeyValue> key_values(const std::string& yaml) {
  std::vector<KeyValue> out;
  std::istringstream in(yaml);
  std::string line, section;
  while (std::getline(in, line)) {
    if (const size_t hash = line.find("  #"); hash != std::string::npos) line.resize(hash);
    if (line.empty() || line[0] == '#') continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    if (line[0] != ' ') {
      section = trim(line.substr(0, colon));
      continue;
    }
    std::string key = section + "." + trim(line.substr(0, colon));
    if (!is_local_key(key)) out.push_back({std::move(key), trim(line.substr(colon + 1))});
  }
  return out;
}

int64_t hash_of(const std::string& text) {
  const uint64_t h = data::xxh64(text.data(), text.size());
  int64_t out;
  std::memcpy(&out, &h, sizeof out);
  return out;
}

}  // namespace

void check_same_recipe(const Recipe& recipe, parallel::Comm& world) {
  if (world.size() == 1) return;
  const std::vector<KeyValue> mine = key_values(recipe_to_yaml(recipe));
  std::string canonical;
  for (const KeyValue& kv : mine) canonical += kv.key + "=" + kv.value + "\n";
  std::vector<int64_t> hashes(static_cast<size_t>(world.size()));
  const int64_t my_hash = hash_of(canonical);
  world.all_gather(parallel::InSpan<int64_t>(&my_hash, 1), std::span<int64_t>(hashes)).wait();
  const auto differs = std::find_if(hashes.begin(), hashes.end(),
                                    [&](int64_t h) { return h != hashes[0]; });
  if (differs == hashes.end()) return;
  const int other = static_cast<int>(differs - hashes.begin());

  // Every rank learns the first key whose value differs between rank 0 and `other`: one hash
  // per key from both, then that key's value from each as characters.
  std::vector<int64_t> key_hashes(mine.size());
  for (size_t i = 0; i < mine.size(); ++i) {
    key_hashes[i] = hash_of(mine[i].key + "=" + mine[i].value);
  }
  std::vector<int64_t> zero = key_hashes, theirs = key_hashes;
  world.broadcast(std::span<int64_t>(zero), 0).wait();
  world.broadcast(std::span<int64_t>(theirs), other).wait();
  size_t at = 0;
  while (at < mine.size() && zero[at] == theirs[at]) ++at;
  std::string message = "the ranks' recipes differ (every rank must load the same recipe with the "
                        "same --set overrides): ";
  if (at == mine.size()) {
    throw RecipeError(message + "world rank " + std::to_string(other) + " and world rank 0");
  }
  constexpr size_t kMaxChars = 256;
  auto value_of = [&](int root) {
    std::vector<int32_t> chars(kMaxChars, 0);
    if (world.rank() == root) {
      const std::string& v = mine[at].value;
      for (size_t i = 0; i < std::min(v.size(), kMaxChars); ++i) chars[i] = v[i];
    }
    world.broadcast(std::span<int32_t>(chars), root).wait();
    std::string v;
    for (int32_t c : chars) {
      if (c == 0) break;
      v += static_cast<char>(c);
    }
    return v;
  };
  const std::string value0 = value_of(0);
  const std::string value_other = value_of(other);
  throw RecipeError(message + mine[at].key + " is " + value_other + " on world rank " +
                    std::to_string(other) + " but " + value0 + " on world rank 0");
}

}  // namespace tessera::trainer

#include "parallel/rank_grid.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <numeric>
#include <sstream>

namespace tessera::parallel {
namespace {

// Joins problems into one message so a user fixes a recipe in one go.
void throw_if_any(const std::vector<std::string>& problems) {
  if (problems.empty()) return;
  std::string msg = "invalid parallel layout: ";
  for (size_t i = 0; i < problems.size(); ++i) {
    if (i > 0) msg += "; ";
    msg += problems[i];
  }
  throw LayoutError(msg);
}

std::vector<std::string> structural_problems(const LayoutSpec& s) {
  std::vector<std::string> p;
  auto at_least_one = [&](const char* key, int v) {
    if (v < 1) p.push_back(std::string(key) + "=" + std::to_string(v) + " must be >= 1");
  };
  at_least_one("world size", s.world);
  at_least_one("parallel.pp", s.pp);
  at_least_one("parallel.dp", s.dp);
  at_least_one("parallel.ep", s.ep);
  if (s.ranks_per_node < 0) {
    p.push_back("ranks per node=" + std::to_string(s.ranks_per_node) + " must be >= 0");
  }
  if (!p.empty()) return p;
  if (int64_t{s.pp} * s.dp != s.world) {
    p.push_back("parallel.pp=" + std::to_string(s.pp) + " x parallel.dp=" + std::to_string(s.dp) +
                " = " + std::to_string(int64_t{s.pp} * s.dp) + " but the world size is " +
                std::to_string(s.world) + " ranks");
  }
  if (s.dp % s.ep != 0) {
    p.push_back("parallel.ep=" + std::to_string(s.ep) + " does not divide parallel.dp=" +
                std::to_string(s.dp) + " (expert parallelism is carved out of data parallelism)");
  }
  if (s.mirrored && s.pp % 2 != 0) {
    p.push_back("parallel.pp=" + std::to_string(s.pp) +
                " must be even for parallel.schedule=dualpipe (stage k mirrors stage pp-1-k)");
  }
  return p;
}

int parse_positive(const std::string& text, const std::string& what) {
  int v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end || v < 1) {
    throw LayoutError(what + ": '" + text + "' is not a positive integer");
  }
  return v;
}

int parse_non_negative(const std::string& text, const std::string& what) {
  int v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end || v < 0) {
    throw LayoutError(what + ": '" + text + "' is not a non-negative integer");
  }
  return v;
}

}  // namespace

const char* group_kind_name(GroupKind kind) {
  switch (kind) {
    case GroupKind::kPipeline: return "pp";
    case GroupKind::kData: return "dp";
    case GroupKind::kExpert: return "ep";
    case GroupKind::kExpertData: return "expert-dp";
    case GroupKind::kWorld: return "world";
  }
  return "?";
}

RankGrid::RankGrid(const LayoutSpec& spec) : spec_(spec) {
  throw_if_any(structural_problems(spec));
  ranks_per_node_ = spec.ranks_per_node == 0 ? spec.world : spec.ranks_per_node;
}

std::vector<int> RankGrid::mirror_pair(int pp_rank) const {
  const int other = mirror_stage(pp_rank);
  if (other == pp_rank) return {pp_rank};
  return {std::min(pp_rank, other), std::max(pp_rank, other)};
}

void RankGrid::check_rank(int rank) const {
  if (rank < 0 || rank >= spec_.world) {
    throw std::out_of_range("rank " + std::to_string(rank) + " is outside the world of " +
                            std::to_string(spec_.world));
  }
}

RankCoords RankGrid::coords(int rank) const {
  check_rank(rank);
  RankCoords c;
  if (spec_.order == RankOrder::kStageMajor) {
    c.pp_rank = rank / spec_.dp;
    c.dp_rank = rank % spec_.dp;
  } else {
    c.dp_rank = rank / spec_.pp;
    c.pp_rank = rank % spec_.pp;
  }
  c.ep_rank = c.dp_rank % spec_.ep;
  c.expert_dp_rank = c.dp_rank / spec_.ep;
  return c;
}

int RankGrid::rank_of(int pp_rank, int dp_rank) const {
  if (pp_rank < 0 || pp_rank >= spec_.pp || dp_rank < 0 || dp_rank >= spec_.dp) {
    throw std::out_of_range("coordinates (pp_rank " + std::to_string(pp_rank) + ", dp_rank " +
                            std::to_string(dp_rank) + ") are outside pp=" +
                            std::to_string(spec_.pp) + " dp=" + std::to_string(spec_.dp));
  }
  return spec_.order == RankOrder::kStageMajor ? pp_rank * spec_.dp + dp_rank
                                               : dp_rank * spec_.pp + pp_rank;
}

int RankGrid::n_groups(GroupKind kind) const {
  // A mirrored pair of stages shares its data and expert-data groups.
  const int stage_groups = spec_.mirrored ? spec_.pp / 2 : spec_.pp;
  switch (kind) {
    case GroupKind::kPipeline: return spec_.dp;
    case GroupKind::kData: return stage_groups;
    case GroupKind::kExpert: return spec_.pp * expert_dp();
    case GroupKind::kExpertData: return stage_groups * spec_.ep;
    case GroupKind::kWorld: return 1;
  }
  return 0;
}

int RankGrid::group_size(GroupKind kind) const { return spec_.world / n_groups(kind); }

int RankGrid::group_id(GroupKind kind, int rank) const {
  const RankCoords c = coords(rank);
  // Mirrored: pair k = {k, pp-1-k} for k < pp/2.
  const int stage_group = std::min(c.pp_rank, mirror_stage(c.pp_rank));
  switch (kind) {
    case GroupKind::kPipeline: return c.dp_rank;
    case GroupKind::kData: return stage_group;
    case GroupKind::kExpert: return c.pp_rank * expert_dp() + c.expert_dp_rank;
    case GroupKind::kExpertData: return stage_group * spec_.ep + c.ep_rank;
    case GroupKind::kWorld: return 0;
  }
  return 0;
}

int RankGrid::rank_in_group(GroupKind kind, int rank) const {
  const RankCoords c = coords(rank);
  if (spec_.mirrored && (kind == GroupKind::kData || kind == GroupKind::kExpertData)) {
    const std::vector<int> g = group(kind, rank);
    return static_cast<int>(std::find(g.begin(), g.end(), rank) - g.begin());
  }
  switch (kind) {
    case GroupKind::kPipeline: return c.pp_rank;
    case GroupKind::kData: return c.dp_rank;
    case GroupKind::kExpert: return c.ep_rank;
    case GroupKind::kExpertData: return c.expert_dp_rank;
    case GroupKind::kWorld: return rank;
  }
  return 0;
}

std::vector<int> RankGrid::group(GroupKind kind, int rank) const {
  const RankCoords c = coords(rank);
  std::vector<int> g;
  g.reserve(group_size(kind));
  switch (kind) {
    case GroupKind::kPipeline:
      for (int s = 0; s < spec_.pp; ++s) g.push_back(rank_of(s, c.dp_rank));
      break;
    case GroupKind::kData:
      for (int s : mirror_pair(c.pp_rank)) {
        for (int d = 0; d < spec_.dp; ++d) g.push_back(rank_of(s, d));
      }
      break;
    case GroupKind::kExpert:
      for (int e = 0; e < spec_.ep; ++e) {
        g.push_back(rank_of(c.pp_rank, c.expert_dp_rank * spec_.ep + e));
      }
      break;
    case GroupKind::kExpertData:
      for (int s : mirror_pair(c.pp_rank)) {
        for (int x = 0; x < expert_dp(); ++x) g.push_back(rank_of(s, x * spec_.ep + c.ep_rank));
      }
      break;
    case GroupKind::kWorld:
      for (int r = 0; r < spec_.world; ++r) g.push_back(r);
      break;
  }
  std::sort(g.begin(), g.end());  // a mirrored pair's two stages interleave when replica-major
  return g;
}

std::vector<std::vector<int>> RankGrid::all_groups(GroupKind kind) const {
  std::vector<std::vector<int>> groups(n_groups(kind));
  for (auto& g : groups) g.reserve(group_size(kind));
  // Ascending ranks land in ascending order inside each group, so one pass builds every group
  // sorted.
  for (int r = 0; r < spec_.world; ++r) groups[group_id(kind, r)].push_back(r);
  return groups;
}

int RankGrid::node_of(int rank) const {
  check_rank(rank);
  return rank / ranks_per_node_;
}

bool RankGrid::ep_groups_cross_nodes() const {
  for (const auto& g : all_groups(GroupKind::kExpert)) {
    for (int r : g) {
      if (node_of(r) != node_of(g.front())) return true;
    }
  }
  return false;
}

std::string RankGrid::describe() const {
  std::ostringstream os;
  os << "world=" << spec_.world << " pp=" << spec_.pp << " dp=" << spec_.dp
     << " ep=" << spec_.ep << " expert-dp=" << expert_dp() << " ranks/node=" << ranks_per_node_
     << " order=" << (spec_.order == RankOrder::kStageMajor ? "stage-major" : "replica-major");
  if (spec_.mirrored) os << " mirrored (stages k and pp-1-k share their dp groups)";
  if (ep_groups_cross_nodes()) os << " (EP groups cross nodes)";
  return os.str();
}

std::vector<int> split_layers(int n_layers, int n_parts, const std::vector<int>& explicit_split,
                              const std::string& split_key) {
  if (n_parts < 1) throw LayoutError("pipeline parts=" + std::to_string(n_parts) + " must be >= 1");
  if (n_layers < n_parts) {
    throw LayoutError("model.n_layers=" + std::to_string(n_layers) + " cannot give each of " +
                      std::to_string(n_parts) + " pipeline parts a layer");
  }
  if (explicit_split.empty()) {
    std::vector<int> split(n_parts, n_layers / n_parts);
    for (int i = 0; i < n_layers % n_parts; ++i) ++split[i];
    return split;
  }
  auto listed = [&] {
    std::string s = "[";
    for (size_t i = 0; i < explicit_split.size(); ++i) {
      s += (i ? ", " : "") + std::to_string(explicit_split[i]);
    }
    return s + "]";
  };
  if (static_cast<int>(explicit_split.size()) != n_parts) {
    throw LayoutError(split_key + "=" + listed() + " has " +
                      std::to_string(explicit_split.size()) + " entries but the pipeline has " +
                      std::to_string(n_parts) + " parts");
  }
  int64_t sum = 0;
  for (int n : explicit_split) {
    if (n < 1) throw LayoutError(split_key + "=" + listed() + ": every part needs >= 1 layer");
    sum += n;
  }
  if (sum != n_layers) {
    throw LayoutError(split_key + "=" + listed() + " sums to " + std::to_string(sum) +
                      " but model.n_layers=" + std::to_string(n_layers));
  }
  return explicit_split;
}

std::pair<int, int> layer_range(const std::vector<int>& split, int part) {
  if (part < 0 || part >= static_cast<int>(split.size())) {
    throw std::out_of_range("pipeline part " + std::to_string(part) + " outside 0.." +
                            std::to_string(static_cast<int>(split.size()) - 1));
  }
  const int begin = std::accumulate(split.begin(), split.begin() + part, 0);
  return {begin, begin + split[part]};
}

std::vector<int> parse_slurm_tasks_per_node(const std::string& value) {
  const std::string what = "SLURM_TASKS_PER_NODE='" + value + "' (expected a list like '4(x2),3')";
  std::vector<int> counts;
  std::istringstream in(value);
  std::string item;
  while (std::getline(in, item, ',')) {
    const size_t paren = item.find('(');
    if (paren == std::string::npos) {
      counts.push_back(parse_positive(item, what));
      continue;
    }
    if (item.size() < paren + 4 || item[paren + 1] != 'x' || item.back() != ')') {
      throw LayoutError(what + ": bad item '" + item + "'");
    }
    const int count = parse_positive(item.substr(0, paren), what);
    const int repeat = parse_positive(item.substr(paren + 2, item.size() - paren - 3), what);
    counts.insert(counts.end(), repeat, count);
  }
  if (counts.empty() || value.back() == ',') throw LayoutError(what + ": empty item");
  return counts;
}

int ranks_per_node_from_env(int world, const EnvLookup& env) {
  const EnvLookup lookup = env ? env : [](const char* name) -> const char* {
    return std::getenv(name);
  };
  const auto clamp = [world](int n) { return std::max(1, std::min(n, world)); };
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"}) {
    if (const char* v = lookup(name); v != nullptr && *v != '\0') {
      return clamp(parse_positive(v, name));
    }
  }
  if (const char* v = lookup("SLURM_TASKS_PER_NODE"); v != nullptr && *v != '\0') {
    const std::vector<int> counts = parse_slurm_tasks_per_node(v);
    bool regular = counts.back() <= counts.front();
    for (size_t i = 0; i + 1 < counts.size(); ++i) regular = regular && counts[i] == counts.front();
    if (regular) return clamp(counts.front());
    int g = 0;
    for (int c : counts) g = std::gcd(g, c);
    return clamp(g);
  }
  return std::max(1, world);
}

int local_rank_from_env(int rank, int world, const EnvLookup& env) {
  const EnvLookup lookup = env ? env : [](const char* name) -> const char* {
    return std::getenv(name);
  };
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"}) {
    if (const char* v = lookup(name); v != nullptr && *v != '\0') {
      return parse_non_negative(v, name);
    }
  }
  return rank % ranks_per_node_from_env(world, lookup);
}

}  // namespace tessera::parallel

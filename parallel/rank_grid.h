// The process grid: which pipeline stage, data replica and expert slice each rank holds, and the
// groups of ranks that talk to each other. A pure function of the layout: no MPI, no globals, so
// layouts of any size are testable on one core (as Megatron's RankGenerator).
//
// Layout convention (DESIGN.md "Communicators"): world = pp × dp; expert parallelism is carved out
// of data parallelism, so ep divides dp and each routed-expert slice has dp / ep replicas.
// A rank's coordinates are (pp_rank, dp_rank) with dp_rank = expert_dp_rank * ep + ep_rank, so an
// EP group is ep consecutive data replicas of one stage. The rank number is
//   RankOrder::kStageMajor (default): rank = pp_rank * dp + dp_rank. Stages vary slowest, a node
//     holds consecutive replicas of one stage, and EP (all-to-all, the heaviest traffic) and DP
//     groups stay inside a node as far as the node size allows; only the light point-to-point
//     pipeline traffic crosses nodes.
//   RankOrder::kReplicaMajor: rank = dp_rank * pp + pp_rank. The stages of one pipeline are
//     consecutive ranks; EP group members are pp ranks apart.
// Groups (each listed in ascending rank order, which is also coordinate order; a rank's index in a
// group is its coordinate along that group):
//   pipeline:    the pp ranks with the same dp_rank (one pipeline), indexed by pp_rank;
//   data:        the dp ranks of one stage, indexed by dp_rank;
//   expert:      the ep ranks of one stage with the same expert_dp_rank, indexed by ep_rank;
//   expert-data: the dp / ep ranks of one stage with the same ep_rank (holders of the same expert
//                slice, whose expert gradients are reduced together), indexed by expert_dp_rank;
//   world:       every rank.
// Mirrored stages (LayoutSpec::mirrored, DualPipe): stage k and stage pp-1-k hold the same
// parameters, so their gradients are summed and their optimizer state sharded over both: the data
// group is the 2 dp ranks of the stage pair {k, pp-1-k} and the expert-data group the 2 dp / ep
// ranks of the pair with the same ep_rank. Indexed by position in ascending rank order (pp = 2:
// stage-major {0, 1, 2, 3} for dp = 2; replica-major the same ranks, interleaved by stage).
//
// Nodes: ranks are assumed placed on nodes in blocks of ranks_per_node consecutive ranks (mpirun's
// and Slurm's default block mapping), node = rank / ranks_per_node. The node size never changes
// the groups; it only answers node queries (ep_groups_cross_nodes()). With kStageMajor, EP groups
// lie inside nodes when ranks_per_node is a multiple of ep. A layout whose EP groups straddle a node
// boundary is allowed (it is correct, only slower) and reported by ep_groups_cross_nodes().
//
// Thread-safety: RankGrid is immutable after construction; every method is const and safe to call
// from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace tessera::parallel {

// A layout that cannot run: the message names every violated recipe key and its value.
class LayoutError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

enum class RankOrder : uint8_t {
  kStageMajor,    // rank = pp_rank * dp + dp_rank
  kReplicaMajor,  // rank = dp_rank * pp + pp_rank
};

struct LayoutSpec {
  int world = 1;           // ranks launched
  int pp = 1;              // parallel.pp: pipeline stages
  int dp = 1;              // parallel.dp: data replicas (of attention/dense/shared weights)
  int ep = 1;              // parallel.ep: expert-parallel ranks; divides dp
  int ranks_per_node = 0;  // ranks on each node (ranks_per_node_from_env()); 0 = all on one node
  RankOrder order = RankOrder::kStageMajor;
  // Stages k and pp-1-k hold the same parameters (parallel.schedule=dualpipe); REQUIRES pp even.
  bool mirrored = false;
};

struct RankCoords {
  int pp_rank = 0;         // pipeline stage, 0..pp-1
  int dp_rank = 0;         // data replica, 0..dp-1
  int ep_rank = 0;         // index in the EP group = dp_rank % ep
  int expert_dp_rank = 0;  // index in the expert-DP group = dp_rank / ep
  bool operator==(const RankCoords&) const = default;
};

enum class GroupKind : uint8_t { kPipeline, kData, kExpert, kExpertData, kWorld };
const char* group_kind_name(GroupKind kind);  // "pp", "dp", "ep", "expert-dp", "world"

class RankGrid {
 public:
  // Throws LayoutError if pp × dp != world, ep does not divide dp, a degree is < 1, or the stages
  // are mirrored and pp is odd: the grid's own guard. A recipe's layout is checked, naming its
  // keys, before any grid is built (trainer::validate_layout, trainer/recipe.h).
  explicit RankGrid(const LayoutSpec& spec);

  const LayoutSpec& spec() const { return spec_; }
  int world() const { return spec_.world; }
  int pp() const { return spec_.pp; }
  int dp() const { return spec_.dp; }
  int ep() const { return spec_.ep; }
  int expert_dp() const { return spec_.dp / spec_.ep; }  // replicas of an expert slice per stage
  bool mirrored() const { return spec_.mirrored; }
  // The stage holding the same parameters as `pp_rank`: pp-1-pp_rank when mirrored, else itself.
  int mirror_stage(int pp_rank) const { return spec_.mirrored ? spec_.pp - 1 - pp_rank : pp_rank; }
  int ranks_per_node() const { return ranks_per_node_; }  // spec's, or world when it was 0

  // REQUIRES: 0 <= rank < world (else std::out_of_range).
  RankCoords coords(int rank) const;
  // Inverse of coords(). REQUIRES: 0 <= pp_rank < pp, 0 <= dp_rank < dp.
  int rank_of(int pp_rank, int dp_rank) const;

  // The group of `kind` that holds `rank`, ascending.
  std::vector<int> group(GroupKind kind, int rank) const;
  // Which group of `kind` holds `rank`: 0..n_groups(kind)-1 (the colour for MPI_Comm_split).
  int group_id(GroupKind kind, int rank) const;
  // `rank`'s index inside its group of `kind` (its position in group(kind, rank)).
  int rank_in_group(GroupKind kind, int rank) const;
  int n_groups(GroupKind kind) const;
  int group_size(GroupKind kind) const;
  // Every group of `kind`, ordered by group_id; together they partition the world.
  std::vector<std::vector<int>> all_groups(GroupKind kind) const;

  std::vector<int> pp_group(int rank) const { return group(GroupKind::kPipeline, rank); }
  std::vector<int> dp_group(int rank) const { return group(GroupKind::kData, rank); }
  std::vector<int> ep_group(int rank) const { return group(GroupKind::kExpert, rank); }
  std::vector<int> expert_dp_group(int rank) const { return group(GroupKind::kExpertData, rank); }
  std::vector<int> world_group() const { return group(GroupKind::kWorld, 0); }
  std::vector<std::vector<int>> all_pp_groups() const { return all_groups(GroupKind::kPipeline); }
  std::vector<std::vector<int>> all_dp_groups() const { return all_groups(GroupKind::kData); }
  std::vector<std::vector<int>> all_ep_groups() const { return all_groups(GroupKind::kExpert); }
  std::vector<std::vector<int>> all_expert_dp_groups() const {
    return all_groups(GroupKind::kExpertData);
  }

  int node_of(int rank) const;
  // True when some EP group has members on two nodes (its all-to-all crosses the network).
  bool ep_groups_cross_nodes() const;

  // One line per group kind, for logs: "pp=2 dp=4 ep=2 expert-dp=2 ranks/node=4 order=stage-major".
  std::string describe() const;

 private:
  void check_rank(int rank) const;
  // The stages whose ranks form `pp_rank`'s data groups: {pp_rank}, or the mirrored pair ascending.
  std::vector<int> mirror_pair(int pp_rank) const;

  LayoutSpec spec_;
  int ranks_per_node_;
};

// Layers per pipeline part (a stage, or with virtual stages a model chunk: part c*pp + s is chunk
// c of stage s, Megatron's convention). Balanced when `explicit_split` is empty: every part gets
// n_layers / n_parts layers and the first n_layers % n_parts parts one more (the last stage also
// runs the final norm, head and loss, so it gets the lighter share). An explicit split must have
// n_parts entries, each >= 1, summing to n_layers; violations throw LayoutError naming `split_key`.
std::vector<int> split_layers(int n_layers, int n_parts, const std::vector<int>& explicit_split = {},
                              const std::string& split_key = "parallel.stage_layers");
// [first layer, one past the last) of `part` in a split from split_layers().
std::pair<int, int> layer_range(const std::vector<int>& split, int part);

// Parses Slurm's compressed per-node task counts, e.g. "4(x2),3" -> {4, 4, 3}.
// Throws LayoutError naming the value if it is malformed.
std::vector<int> parse_slurm_tasks_per_node(const std::string& value);

// Looks an environment variable up; returns nullptr when it is unset.
using EnvLookup = std::function<const char*(const char*)>;

// Ranks per node from the launcher's environment, first found of:
//   OMPI_COMM_WORLD_LOCAL_SIZE (mpirun: ranks on this node),
//   SLURM_NTASKS_PER_NODE (srun --ntasks-per-node),
//   SLURM_TASKS_PER_NODE ("4(x2),3": every node but the last holds the same count c and the last
//     at most c -> c, which maps ranks to nodes exactly under block distribution; otherwise the
//     gcd of the counts, a block size that never puts ranks of two nodes in one block, so
//     node queries may over-report crossing but never miss it);
// else `world` (one node). The result is clamped to [1, world]. A set but malformed variable is
// a LayoutError naming it. `env` defaults to std::getenv.
// Note: on uneven allocations OMPI_COMM_WORLD_LOCAL_SIZE differs between nodes; only node
// queries depend on it, never the groups, so ranks still agree on every communicator.
int ranks_per_node_from_env(int world, const EnvLookup& env = {});

// This process's rank among the ranks of its node (it picks the node's GPU), first found of:
// OMPI_COMM_WORLD_LOCAL_RANK (mpirun), SLURM_LOCALID (srun); else rank modulo
// ranks_per_node_from_env(world) (block placement). A set but malformed variable is a
// LayoutError naming it.
int local_rank_from_env(int rank, int world, const EnvLookup& env = {});

}  // namespace tessera::parallel

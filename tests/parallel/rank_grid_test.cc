// RankGrid against hand-computed golden groups, property checks over layouts up to 1024 ranks,
// layout validation errors, layer splits and the launcher environment parsing. No MPI.
#include "parallel/rank_grid.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>

namespace tessera::parallel {
namespace {

using Groups = std::vector<std::vector<int>>;

TEST(RankGridTest, GoldenWorld8Pp2Dp4Ep2) {
  const RankGrid g(LayoutSpec{.world = 8, .pp = 2, .dp = 4, .ep = 2, .ranks_per_node = 4});
  EXPECT_EQ(g.all_pp_groups(), (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(g.all_dp_groups(), (Groups{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  EXPECT_EQ(g.all_ep_groups(), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(g.all_expert_dp_groups(), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(g.coords(5), (RankCoords{.pp_rank = 1, .dp_rank = 1, .ep_rank = 1, .expert_dp_rank = 0}));
  EXPECT_EQ(g.coords(6), (RankCoords{.pp_rank = 1, .dp_rank = 2, .ep_rank = 0, .expert_dp_rank = 1}));
  EXPECT_EQ(g.pp_group(6), (std::vector<int>{2, 6}));
  EXPECT_EQ(g.dp_group(6), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(g.ep_group(6), (std::vector<int>{6, 7}));
  EXPECT_EQ(g.expert_dp_group(6), (std::vector<int>{4, 6}));
  EXPECT_EQ(g.world_group(), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(g.group_id(GroupKind::kExpert, 6), 3);
  EXPECT_EQ(g.rank_in_group(GroupKind::kExpertData, 6), 1);
  EXPECT_EQ(g.node_of(3), 0);
  EXPECT_EQ(g.node_of(4), 1);
  EXPECT_FALSE(g.ep_groups_cross_nodes());
}

TEST(RankGridTest, GoldenWorld16Pp4Dp4Ep4FourPerNode) {
  const RankGrid g(LayoutSpec{.world = 16, .pp = 4, .dp = 4, .ep = 4, .ranks_per_node = 4});
  EXPECT_EQ(g.all_pp_groups(),
            (Groups{{0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}}));
  const Groups stages = {{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}, {12, 13, 14, 15}};
  EXPECT_EQ(g.all_dp_groups(), stages);
  EXPECT_EQ(g.all_ep_groups(), stages);  // ep = dp: every replica of a stage holds other experts
  Groups singletons;
  for (int r = 0; r < 16; ++r) singletons.push_back({r});
  EXPECT_EQ(g.all_expert_dp_groups(), singletons);  // one copy of each expert slice
  EXPECT_EQ(g.expert_dp(), 1);
  EXPECT_FALSE(g.ep_groups_cross_nodes());
  EXPECT_EQ(g.coords(13), (RankCoords{.pp_rank = 3, .dp_rank = 1, .ep_rank = 1, .expert_dp_rank = 0}));
}

TEST(RankGridTest, GoldenWorld16Pp2Dp8Ep4) {
  const RankGrid g(LayoutSpec{.world = 16, .pp = 2, .dp = 8, .ep = 4, .ranks_per_node = 8});
  EXPECT_EQ(g.all_pp_groups(), (Groups{{0, 8}, {1, 9}, {2, 10}, {3, 11}, {4, 12}, {5, 13},
                                       {6, 14}, {7, 15}}));
  EXPECT_EQ(g.all_ep_groups(), (Groups{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11},
                                       {12, 13, 14, 15}}));
  EXPECT_EQ(g.all_expert_dp_groups(), (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}, {8, 12}, {9, 13},
                                              {10, 14}, {11, 15}}));
}

TEST(RankGridTest, GoldenReplicaMajorOrder) {
  // rank = dp_rank * pp + pp_rank: the two stages of each pipeline are neighbours.
  const RankGrid g(LayoutSpec{.world = 8, .pp = 2, .dp = 4, .ep = 2, .ranks_per_node = 4,
                              .order = RankOrder::kReplicaMajor});
  EXPECT_EQ(g.all_pp_groups(), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(g.all_dp_groups(), (Groups{{0, 2, 4, 6}, {1, 3, 5, 7}}));
  EXPECT_EQ(g.all_ep_groups(), (Groups{{0, 2}, {4, 6}, {1, 3}, {5, 7}}));
  EXPECT_EQ(g.all_expert_dp_groups(), (Groups{{0, 4}, {2, 6}, {1, 5}, {3, 7}}));
  EXPECT_EQ(g.coords(5), (RankCoords{.pp_rank = 1, .dp_rank = 2, .ep_rank = 0, .expert_dp_rank = 1}));
  EXPECT_FALSE(g.ep_groups_cross_nodes());
  // Nodes of 2 ranks hold one pipeline each; every EP group then spans two nodes.
  const RankGrid small_nodes(LayoutSpec{.world = 8, .pp = 2, .dp = 4, .ep = 2, .ranks_per_node = 2,
                                        .order = RankOrder::kReplicaMajor});
  EXPECT_TRUE(small_nodes.ep_groups_cross_nodes());
}

TEST(RankGridTest, GoldenMirroredStagePairs) {
  // DualPipe, pp = 4: stages 0 and 3, 1 and 2 hold the same layers; their data and expert-data
  // groups span the pair, the pipeline and EP groups stay as they are.
  const RankGrid g(LayoutSpec{.world = 16, .pp = 4, .dp = 4, .ep = 2, .mirrored = true});
  EXPECT_EQ(g.all_pp_groups(),
            (Groups{{0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}}));
  EXPECT_EQ(g.all_dp_groups(),
            (Groups{{0, 1, 2, 3, 12, 13, 14, 15}, {4, 5, 6, 7, 8, 9, 10, 11}}));
  EXPECT_EQ(g.all_ep_groups(), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11},
                                       {12, 13}, {14, 15}}));
  EXPECT_EQ(g.all_expert_dp_groups(),
            (Groups{{0, 2, 12, 14}, {1, 3, 13, 15}, {4, 6, 8, 10}, {5, 7, 9, 11}}));
  EXPECT_EQ(g.dp_group(13), (std::vector<int>{0, 1, 2, 3, 12, 13, 14, 15}));
  EXPECT_EQ(g.group_id(GroupKind::kData, 13), 0);
  EXPECT_EQ(g.rank_in_group(GroupKind::kData, 13), 5);
  EXPECT_EQ(g.group_id(GroupKind::kExpertData, 9), 3);
  EXPECT_EQ(g.rank_in_group(GroupKind::kExpertData, 9), 2);
  EXPECT_EQ(g.group_size(GroupKind::kData), 8);
  EXPECT_EQ(g.group_size(GroupKind::kExpertData), 4);
  EXPECT_EQ(g.expert_dp(), 2);  // replicas of an expert slice per stage: unchanged
  EXPECT_EQ(g.mirror_stage(1), 2);
  EXPECT_EQ(g.coords(13), (RankCoords{.pp_rank = 3, .dp_rank = 1, .ep_rank = 1, .expert_dp_rank = 0}));
  EXPECT_NE(g.describe().find("mirrored"), std::string::npos);
  // Replica-major: the pair's ranks interleave; groups stay sorted.
  const RankGrid r(LayoutSpec{.world = 4, .pp = 2, .dp = 2, .ep = 2,
                              .order = RankOrder::kReplicaMajor, .mirrored = true});
  EXPECT_EQ(r.all_dp_groups(), (Groups{{0, 1, 2, 3}}));
  EXPECT_EQ(r.all_expert_dp_groups(), (Groups{{0, 1}, {2, 3}}));
  EXPECT_EQ(r.all_ep_groups(), (Groups{{0, 2}, {1, 3}}));
  // pp = 2, dp = 1 (the smallest DualPipe): the two ranks form one data group.
  const RankGrid two(LayoutSpec{.world = 2, .pp = 2, .dp = 1, .ep = 1, .mirrored = true});
  EXPECT_EQ(two.all_dp_groups(), (Groups{{0, 1}}));
  EXPECT_EQ(two.all_expert_dp_groups(), (Groups{{0, 1}}));
  EXPECT_EQ(two.all_pp_groups(), (Groups{{0, 1}}));
}

TEST(RankGridTest, EpGroupsCrossingANodeBoundaryAreAllowedAndReported) {
  // 6 ranks per node, EP groups of 4: {4,5,6,7} straddles nodes 0 and 1.
  const RankGrid crossing(LayoutSpec{.world = 12, .pp = 1, .dp = 12, .ep = 4, .ranks_per_node = 6});
  EXPECT_TRUE(crossing.ep_groups_cross_nodes());
  EXPECT_NE(crossing.describe().find("EP groups cross nodes"), std::string::npos);
  // 8 ranks per node (a multiple of ep) keeps every group inside a node, even with a short last node.
  const RankGrid packed(LayoutSpec{.world = 12, .pp = 1, .dp = 12, .ep = 4, .ranks_per_node = 8});
  EXPECT_FALSE(packed.ep_groups_cross_nodes());
  // Unknown node size (0) means one node.
  const RankGrid one_node(LayoutSpec{.world = 12, .pp = 1, .dp = 12, .ep = 4});
  EXPECT_EQ(one_node.ranks_per_node(), 12);
  EXPECT_FALSE(one_node.ep_groups_cross_nodes());
}

// Checks a grid's groups against their definitions (coordinates), not against its own lists.
void check_properties(const RankGrid& g) {
  const int world = g.world();
  SCOPED_TRACE(g.describe());
  std::vector<RankCoords> coords(world);
  for (int r = 0; r < world; ++r) {
    coords[r] = g.coords(r);
    ASSERT_EQ(g.rank_of(coords[r].pp_rank, coords[r].dp_rank), r);
    ASSERT_EQ(coords[r].dp_rank, coords[r].expert_dp_rank * g.ep() + coords[r].ep_rank);
  }
  // Same group <=> same values of the coordinates that define it; index = the free coordinate.
  // Mirrored: the data groups are defined by the stage pair {k, pp-1-k} and indexed by position
  // (index -1: not checked against a coordinate).
  struct Def {
    GroupKind kind;
    std::function<std::pair<int, int>(const RankCoords&)> fixed;  // defining coordinates
    std::function<int(const RankCoords&)> index;
    int size;
  };
  const bool mirrored = g.spec().mirrored;
  const int pp = g.pp();
  const auto pair_of = [mirrored, pp](const RankCoords& c) {
    return mirrored ? std::min(c.pp_rank, pp - 1 - c.pp_rank) : c.pp_rank;
  };
  const int stages_per_group = mirrored ? 2 : 1;
  const std::vector<Def> defs = {
      {GroupKind::kPipeline, [](const RankCoords& c) { return std::pair{c.dp_rank, 0}; },
       [](const RankCoords& c) { return c.pp_rank; }, g.pp()},
      {GroupKind::kData, [&](const RankCoords& c) { return std::pair{pair_of(c), 0}; },
       [&](const RankCoords& c) { return mirrored ? -1 : c.dp_rank; }, stages_per_group * g.dp()},
      {GroupKind::kExpert,
       [](const RankCoords& c) { return std::pair{c.pp_rank, c.expert_dp_rank}; },
       [](const RankCoords& c) { return c.ep_rank; }, g.ep()},
      {GroupKind::kExpertData, [&](const RankCoords& c) { return std::pair{pair_of(c), c.ep_rank}; },
       [&](const RankCoords& c) { return mirrored ? -1 : c.expert_dp_rank; },
       stages_per_group * g.dp() / g.ep()},
      {GroupKind::kWorld, [](const RankCoords&) { return std::pair{0, 0}; },
       [](const RankCoords&) { return 0; }, world},
  };
  for (const Def& d : defs) {
    SCOPED_TRACE(group_kind_name(d.kind));
    const auto groups = g.all_groups(d.kind);
    ASSERT_EQ(static_cast<int>(groups.size()) * d.size, world);
    ASSERT_EQ(g.group_size(d.kind), d.size);
    std::vector<int> seen(world, 0);
    std::map<std::pair<int, int>, int> group_of_key;
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      const auto& members = groups[gi];
      ASSERT_EQ(static_cast<int>(members.size()), d.size);
      ASSERT_TRUE(std::is_sorted(members.begin(), members.end()));
      const auto key = d.fixed(coords[members[0]]);
      ASSERT_TRUE(group_of_key.emplace(key, static_cast<int>(gi)).second)
          << "two groups share one definition";
      for (size_t k = 0; k < members.size(); ++k) {
        const int r = members[k];
        ++seen[r];
        ASSERT_EQ(d.fixed(coords[r]), key);
        if (d.kind != GroupKind::kWorld && d.index(coords[r]) >= 0) {
          ASSERT_EQ(d.index(coords[r]), static_cast<int>(k));
        }
        ASSERT_EQ(g.group_id(d.kind, r), static_cast<int>(gi));
        ASSERT_EQ(g.rank_in_group(d.kind, r), static_cast<int>(k));
      }
    }
    for (int r = 0; r < world; ++r) ASSERT_EQ(seen[r], 1) << "rank " << r;
    for (int r : {0, world / 3, world - 1}) {
      ASSERT_EQ(g.group(d.kind, r), groups[g.group_id(d.kind, r)]);
    }
  }
  // Node queries against a brute-force reading of the definition.
  bool crossing = false;
  for (const auto& ep_group : g.all_ep_groups()) {
    for (int r : ep_group) crossing |= r / g.ranks_per_node() != ep_group[0] / g.ranks_per_node();
  }
  ASSERT_EQ(g.ep_groups_cross_nodes(), crossing);
  if (g.spec().order == RankOrder::kStageMajor && g.ranks_per_node() % g.ep() == 0) {
    ASSERT_FALSE(crossing) << "EP groups must be packed inside nodes";
  }
}

TEST(RankGridTest, PropertiesHoldForLayoutsUpTo1024Ranks) {
  int layouts = 0;
  for (int world : {1, 2, 6, 8, 12, 16, 48, 64, 96, 256, 1024}) {
    for (int pp = 1; pp <= world; ++pp) {
      if (world % pp != 0) continue;
      const int dp = world / pp;
      for (int ep = 1; ep <= dp; ++ep) {
        if (dp % ep != 0) continue;
        for (int rpn : {0, 1, 4, 6, 8}) {
          for (RankOrder order : {RankOrder::kStageMajor, RankOrder::kReplicaMajor}) {
            if (world >= 256 && (rpn == 1 || order == RankOrder::kReplicaMajor)) continue;
            check_properties(RankGrid(LayoutSpec{world, pp, dp, ep, rpn, order}));
            if (HasFatalFailure()) return;
            ++layouts;
            if (pp % 2 == 0) {  // DualPipe's mirrored stage pairs
              check_properties(RankGrid(LayoutSpec{world, pp, dp, ep, rpn, order, true}));
              if (HasFatalFailure()) return;
              ++layouts;
            }
          }
        }
      }
    }
  }
  EXPECT_GT(layouts, 500);
}

TEST(RankGridTest, OutOfRangeRanksThrow) {
  const RankGrid g(LayoutSpec{.world = 4, .pp = 2, .dp = 2});
  EXPECT_THROW(g.coords(4), std::out_of_range);
  EXPECT_THROW(g.coords(-1), std::out_of_range);
  EXPECT_THROW(g.rank_of(2, 0), std::out_of_range);
}

// The grid's own guard: a spec that cannot be a grid is refused naming the keys. The recipe's
// layout rules (n_experts, n_layers, schedules, nodes) are trainer::validate_layout's
// (tests/trainer/recipe_test.cc).
std::string grid_error(const LayoutSpec& spec) {
  try {
    RankGrid grid(spec);
  } catch (const LayoutError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(RankGridTest, ConstructorRefusesImpossibleGridsNamingTheKeys) {
  EXPECT_EQ(grid_error({.world = 8, .pp = 2, .dp = 4, .ep = 2}), "");

  std::string e = grid_error({.world = 8, .pp = 2, .dp = 3, .ep = 1});
  EXPECT_TRUE(contains(e, "parallel.pp=2")) << e;
  EXPECT_TRUE(contains(e, "parallel.dp=3")) << e;
  EXPECT_TRUE(contains(e, "world size is 8")) << e;

  e = grid_error({.world = 8, .pp = 2, .dp = 4, .ep = 3});
  EXPECT_TRUE(contains(e, "parallel.ep=3 does not divide parallel.dp=4")) << e;

  e = grid_error({.world = 8, .pp = 0, .dp = 4, .ep = 1});
  EXPECT_TRUE(contains(e, "parallel.pp=0 must be >= 1")) << e;

  // Every violation is reported at once.
  e = grid_error({.world = 8, .pp = 3, .dp = 4, .ep = 3});
  EXPECT_TRUE(contains(e, "parallel.pp=3 x parallel.dp=4")) << e;
  EXPECT_TRUE(contains(e, "parallel.ep=3 does not divide")) << e;

  // Mirrored stages pair k with pp-1-k: pp must be even.
  e = grid_error({.world = 3, .pp = 3, .dp = 1, .ep = 1, .mirrored = true});
  EXPECT_TRUE(contains(e, "parallel.pp=3 must be even for parallel.schedule=dualpipe")) << e;
  EXPECT_EQ(grid_error({.world = 4, .pp = 4, .dp = 1, .ep = 1, .mirrored = true}), "");

  // LayoutError is an invalid_argument.
  EXPECT_THROW(RankGrid(LayoutSpec{.world = 8, .pp = 2, .dp = 4, .ep = 3}), std::invalid_argument);
}

TEST(RankGridTest, SplitLayersBalancedAndExplicit) {
  EXPECT_EQ(split_layers(10, 4), (std::vector<int>{3, 3, 2, 2}));
  EXPECT_EQ(split_layers(8, 4), (std::vector<int>{2, 2, 2, 2}));
  EXPECT_EQ(split_layers(3, 3), (std::vector<int>{1, 1, 1}));
  EXPECT_EQ(split_layers(61, 8), (std::vector<int>{8, 8, 8, 8, 8, 7, 7, 7}));
  EXPECT_EQ(split_layers(8, 2, {5, 3}), (std::vector<int>{5, 3}));
  EXPECT_EQ(layer_range({3, 3, 2, 2}, 0), (std::pair{0, 3}));
  EXPECT_EQ(layer_range({3, 3, 2, 2}, 2), (std::pair{6, 8}));
  EXPECT_EQ(layer_range({3, 3, 2, 2}, 3), (std::pair{8, 10}));
  EXPECT_THROW(layer_range({3, 3}, 2), std::out_of_range);

  auto message = [](auto fn) {
    try {
      fn();
    } catch (const LayoutError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string e = message([] { split_layers(8, 2, {5, 2}); });
  EXPECT_TRUE(contains(e, "parallel.stage_layers=[5, 2] sums to 7 but model.n_layers=8")) << e;
  e = message([] { split_layers(8, 3, {5, 3}); });
  EXPECT_TRUE(contains(e, "has 2 entries but the pipeline has 3 parts")) << e;
  e = message([] { split_layers(8, 2, {8, 0}); });
  EXPECT_TRUE(contains(e, "every part needs >= 1 layer")) << e;
  e = message([] { split_layers(3, 4); });
  EXPECT_TRUE(contains(e, "model.n_layers=3")) << e;
  e = message([] { split_layers(8, 2, {5, 2}, "model.stage_split"); });
  EXPECT_TRUE(contains(e, "model.stage_split=")) << e;
}

TEST(RankGridTest, ParsesSlurmTasksPerNode) {
  EXPECT_EQ(parse_slurm_tasks_per_node("4(x2),3"), (std::vector<int>{4, 4, 3}));
  EXPECT_EQ(parse_slurm_tasks_per_node("8"), (std::vector<int>{8}));
  EXPECT_EQ(parse_slurm_tasks_per_node("2(x3)"), (std::vector<int>{2, 2, 2}));
  EXPECT_EQ(parse_slurm_tasks_per_node("1,16(x2),12"), (std::vector<int>{1, 16, 16, 12}));
  for (const char* bad : {"", "4,", ",4", "4(x)", "(x2)", "4(2)", "4(x2", "a", "4(x0)", "0",
                          "4,,3", "-1"}) {
    EXPECT_THROW(parse_slurm_tasks_per_node(bad), LayoutError) << "'" << bad << "'";
  }
}

EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(RankGridTest, RanksPerNodeFromEnvironment) {
  EXPECT_EQ(ranks_per_node_from_env(16, fake_env({})), 16);
  EXPECT_EQ(ranks_per_node_from_env(16, fake_env({{"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}})), 4);
  // Open MPI's variable wins over Slurm's.
  EXPECT_EQ(ranks_per_node_from_env(16, fake_env({{"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                                                  {"SLURM_NTASKS_PER_NODE", "8"}})),
            4);
  EXPECT_EQ(ranks_per_node_from_env(16, fake_env({{"SLURM_NTASKS_PER_NODE", "8"},
                                                  {"SLURM_TASKS_PER_NODE", "2(x8)"}})),
            8);
  EXPECT_EQ(ranks_per_node_from_env(11, fake_env({{"SLURM_TASKS_PER_NODE", "4(x2),3"}})), 4);
  // Irregular counts: the gcd never puts two nodes' ranks in one block.
  EXPECT_EQ(ranks_per_node_from_env(7, fake_env({{"SLURM_TASKS_PER_NODE", "3,4"}})), 1);
  EXPECT_EQ(ranks_per_node_from_env(12, fake_env({{"SLURM_TASKS_PER_NODE", "6,4,2"}})), 2);
  // Clamped to the world.
  EXPECT_EQ(ranks_per_node_from_env(2, fake_env({{"SLURM_NTASKS_PER_NODE", "8"}})), 2);
  // Empty counts as unset.
  EXPECT_EQ(ranks_per_node_from_env(6, fake_env({{"OMPI_COMM_WORLD_LOCAL_SIZE", ""}})), 6);
  try {
    ranks_per_node_from_env(8, fake_env({{"OMPI_COMM_WORLD_LOCAL_SIZE", "four"}}));
    FAIL() << "expected LayoutError";
  } catch (const LayoutError& e) {
    EXPECT_TRUE(contains(e.what(), "OMPI_COMM_WORLD_LOCAL_SIZE")) << e.what();
    EXPECT_TRUE(contains(e.what(), "four")) << e.what();
  }
  EXPECT_THROW(ranks_per_node_from_env(8, fake_env({{"SLURM_TASKS_PER_NODE", "4(x"}})),
               LayoutError);
}

TEST(RankGridTest, LocalRankFromEnvironment) {
  // mpirun's variable first, then Slurm's, else the block placement of ranks on nodes.
  EXPECT_EQ(local_rank_from_env(5, 8, fake_env({{"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                                {"SLURM_LOCALID", "3"}})),
            1);
  EXPECT_EQ(local_rank_from_env(5, 8, fake_env({{"SLURM_LOCALID", "3"}})), 3);
  EXPECT_EQ(local_rank_from_env(5, 8, fake_env({{"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}})), 1);
  EXPECT_EQ(local_rank_from_env(5, 8, fake_env({})), 5);  // one node
  try {
    local_rank_from_env(0, 2, fake_env({{"SLURM_LOCALID", "-1"}}));
    FAIL() << "expected LayoutError";
  } catch (const LayoutError& e) {
    EXPECT_TRUE(contains(e.what(), "SLURM_LOCALID")) << e.what();
  }
}

}  // namespace
}  // namespace tessera::parallel

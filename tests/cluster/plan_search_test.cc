// The planner's search (cluster/plan_search.h): which layouts it enumerates and plans.
#include "cluster/plan_search.h"

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "tests/recipes_dir.h"

namespace tessera::cluster {
namespace {

namespace fs = std::filesystem;


trainer::Recipe tiny(const std::vector<std::string>& overrides) {
  return trainer::load_recipe((test_support::recipes_dir() / "tiny-moe.yaml").string(), overrides);
}

// 2 nodes of 2 devices; links across nodes far slower than inside one.
ClusterSpec two_nodes(double memory_gib = 16) {
  const fs::path p = fs::temp_directory_path() /
                     ("tessera_plan_search_test_" + std::to_string(getpid()) + ".yaml");
  std::ofstream(p)
      << "name: test\nnodes: 2\ngpus_per_node: 2\n"
         "device: {name: dev, kind: gpu, peak_tflops: {fp32: 1, bf16: 2, fp8: 4},\n"
         "         memory_gib: "
      << memory_gib << ", memory_gbs: 100}\n"
         "network: {intra_node_gbs: 100, inter_node_gbs: 0.001, intra_node_latency_us: 1,\n"
         "          inter_node_latency_us: 1}\n";
  ClusterSpec c = load_cluster_spec(p.string());
  fs::remove(p);
  return c;
}

std::vector<SearchCandidate> all(const SearchResult& r) {
  std::vector<SearchCandidate> out = r.fitting;
  out.insert(out.end(), r.not_fitting.begin(), r.not_fitting.end());
  return out;
}

bool has(const std::vector<std::string>& overrides, const std::string& o) {
  return std::find(overrides.begin(), overrides.end(), o) != overrides.end();
}

// Micro-batch counts are the divisors of a replica's sequences, not multiples of pp: 12
// sequences over dp 2 give 6 per replica, so 1, 2, 3 and 6 micro-batches (3 is no multiple of
// anything a fixed list would try).
TEST(PlanSearch, MicroBatchCountsDivideAReplicasSequences) {
  SearchOptions options;
  options.world = 2;
  const SearchResult r = search_layouts(tiny({"train.global_batch=12"}), two_nodes(), options);
  std::set<int> dp2_1f1b;
  for (const SearchCandidate& c : all(r)) {
    EXPECT_EQ(12 % (c.plan.dp * c.plan.micro_batches), 0) << c.plan.dp << " x "
                                                           << c.plan.micro_batches;
    if (c.plan.pp == 1 && c.plan.dp == 2 && c.plan.ep == 1 && c.plan.schedule == "1f1b") {
      dp2_1f1b.insert(c.plan.micro_batches);
    }
  }
  EXPECT_EQ(dp2_1f1b, (std::set<int>{1, 2, 3, 6}));
  EXPECT_EQ(r.considered, r.invalid + r.fitting.size() + r.not_fitting.size());
}

// Under `auto`, an EP group across nodes is planned with node-aware dispatch and with the flat
// exchange; inside one node, once. An explicit setting is the user's: planned as given.
TEST(PlanSearch, PlansTheFlatExchangeBesideNodeAwareUnderAuto) {
  const std::vector<std::string> base = {"model.n_group=2", "model.topk_group=1",
                                         "train.global_batch=4"};
  auto find = [](const SearchResult& r, int ep) {
    std::vector<SearchCandidate> out;
    for (const SearchCandidate& c : all(r)) {
      if (c.plan.pp == 1 && c.plan.ep == ep && c.plan.schedule == "gpipe" &&
          c.plan.micro_batches == 1) {
        out.push_back(c);
      }
    }
    return out;
  };
  const SearchResult r = search_layouts(tiny(base), two_nodes());
  const std::vector<SearchCandidate> across = find(r, 4);
  ASSERT_EQ(across.size(), 2u);
  const SearchCandidate& node = across[0].plan.node_aware_dispatch ? across[0] : across[1];
  const SearchCandidate& flat = across[0].plan.node_aware_dispatch ? across[1] : across[0];
  EXPECT_TRUE(node.plan.node_aware_dispatch);
  EXPECT_FALSE(flat.plan.node_aware_dispatch);
  EXPECT_EQ(node.plan.ep_nodes, 2);
  EXPECT_FALSE(has(node.overrides, "parallel.node_aware_dispatch=off"));
  EXPECT_TRUE(has(flat.overrides, "parallel.node_aware_dispatch=off"));
  // top_k 2 on one node: node-aware sends a token across once, the flat exchange twice.
  EXPECT_GT(node.plan.tokens_per_s, flat.plan.tokens_per_s);
  const std::vector<SearchCandidate> inside = find(r, 2);
  ASSERT_EQ(inside.size(), 1u);
  EXPECT_EQ(inside[0].plan.ep_nodes, 1);
  EXPECT_FALSE(inside[0].plan.node_aware_dispatch);
  EXPECT_EQ(r.considered, r.invalid + r.fitting.size() + r.not_fitting.size());
  const std::string table = format_search(r, 100);
  EXPECT_NE(table.find(" node "), std::string::npos) << table;
  EXPECT_NE(table.find(" flat "), std::string::npos) << table;

  std::vector<std::string> on = base;
  on.push_back("parallel.node_aware_dispatch=on");
  const std::vector<SearchCandidate> given = find(search_layouts(tiny(on), two_nodes()), 4);
  ASSERT_EQ(given.size(), 1u);
  EXPECT_TRUE(given[0].plan.node_aware_dispatch);
}

// When nothing fits, the report shows the fastest layouts and those closest to fitting.
TEST(PlanSearch, WhenNothingFitsShowsTheLeastMemory) {
  const SearchResult r = search_layouts(tiny({}), two_nodes(1e-6));
  ASSERT_TRUE(r.fitting.empty());
  ASSERT_GE(r.not_fitting.size(), 4u);
  const std::string table = format_search(r, 3);
  EXPECT_NE(table.find("NO LAYOUT FITS"), std::string::npos) << table;
  EXPECT_NE(table.find("the least memory:"), std::string::npos) << table;
  EXPECT_NE(table.find("fastest (does not fit): tessera plan"), std::string::npos) << table;
  const nlohmann::json j = nlohmann::json::parse(search_json(r, 3));
  ASSERT_EQ(j["least_memory"].size(), 3u);
  double least = 1e300;
  for (const SearchCandidate& c : r.not_fitting) least = std::min(least, c.plan.peak_memory_gib);
  EXPECT_DOUBLE_EQ(j["least_memory"][0]["peak_memory_gib"].get<double>(), least);
  EXPECT_LE(j["least_memory"][0]["peak_memory_gib"].get<double>(),
            j["least_memory"][1]["peak_memory_gib"].get<double>());
  EXPECT_LE(j["least_memory"][1]["peak_memory_gib"].get<double>(),
            j["least_memory"][2]["peak_memory_gib"].get<double>());
}

}  // namespace
}  // namespace tessera::cluster

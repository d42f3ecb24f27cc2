// The planner's search: every layout of a recipe on a cluster's devices (pipeline stages, data
// replicas, expert parallelism, schedule, micro-batches), each planned (plan.h); those that do
// not fit in device memory are dropped, the rest ranked by predicted tokens/s.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cluster/cluster_spec.h"
#include "cluster/plan.h"
#include "trainer/recipe.h"

namespace tessera::cluster {

struct SearchOptions {
  int world = 0;  // ranks to lay out; 0 = every device of the cluster
  double expert_imbalance = 1.0;  // PlanOptions::expert_imbalance for every layout
  std::function<void(size_t done, size_t total)> progress;  // after each candidate
};

struct SearchCandidate {
  std::vector<std::string> overrides;  // "parallel.pp=4", ... as --set takes them
  Plan plan;
};

struct SearchResult {
  size_t considered = 0;  // layouts enumerated
  size_t invalid = 0;     // refused by the recipe's or the schedule's rules
  std::vector<SearchCandidate> fitting;      // fastest first
  std::vector<SearchCandidate> not_fitting;  // fastest first
};

// Enumerates pp (dividing the world), dp = world / pp, ep (dividing dp), every registered
// schedule (interleaved with 2 virtual stages), and every micro-batch count dividing a
// replica's sequences (train.global_batch / dp); where the recipe's node_aware_dispatch is
// `auto` and an EP group spans nodes, the flat exchange as well (`auto` would pick node-aware;
// it is a rule, not a price). Those the layout's rules refuse (trainer::validate_layout: pp <=
// model.n_layers, ep dividing model.n_experts, the schedule's rules, ...) are counted in
// `invalid`.
SearchResult search_layouts(const trainer::Recipe& recipe, const ClusterSpec& cluster,
                            const SearchOptions& options = {});

// The top `top` fitting layouts with why (bubble, exposed communication, memory headroom); when
// none fits, says so and shows the fastest ones regardless and the `top` needing the least
// memory, each with its memory.
std::string format_search(const SearchResult& result, size_t top);
// The same as one JSON object: counts and the shown layouts (overrides and plan_json fields;
// when none fits, `least_memory` as well).
std::string search_json(const SearchResult& result, size_t top);

}  // namespace tessera::cluster

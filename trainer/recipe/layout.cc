// The one parallel-layout validator (layout.h). Lower-level rules stay with their owners and are
// asked from here: the schedule's in parallel/schedule_registry.h, the explicit layer split's in
// parallel::split_layers, the EP groups' node span in parallel/node_dispatch.h.
#include "trainer/recipe/layout.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "parallel/node_dispatch.h"
#include "parallel/rank_grid.h"
#include "parallel/schedule_registry.h"

namespace tessera::trainer {
namespace recipe_detail {
namespace {

std::string s(int64_t v) { return std::to_string(v); }

// The rules that need no launch: degrees, model, batch, schedule, layer split.
std::optional<LayoutProblem> static_problem(const Recipe& r) {
  const ModelConfig& m = r.model;
  const ParallelConfig& p = r.parallel;
  // Guards for recipes built in code (loaded ones passed the schema's ranges): the rules below
  // divide by these.
  for (const auto& [key, v] :
       {std::pair{"parallel.pp", p.pp}, std::pair{"parallel.dp", p.dp},
        std::pair{"parallel.ep", p.ep}, std::pair{"parallel.micro_batches", p.micro_batches},
        std::pair{"parallel.virtual_stages", p.virtual_stages}}) {
    if (v < 1) return LayoutProblem{{key}, "must be >= 1, got " + s(v)};
  }
  if (p.dp % p.ep != 0) {
    return LayoutProblem{{"parallel.ep", "parallel.dp"},
                         s(p.ep) + " does not divide parallel.dp " + s(p.dp)};
  }
  if (m.n_experts % p.ep != 0) {
    return LayoutProblem{{"parallel.ep", "model.n_experts"},
                         s(p.ep) + " does not divide model.n_experts " + s(m.n_experts)};
  }
  if (p.pp > m.n_layers) {
    return LayoutProblem{{"parallel.pp", "model.n_layers"},
                         "must be <= model.n_layers (" + s(m.n_layers) + "), got " + s(p.pp)};
  }
  if (r.train.global_batch % (p.dp * p.micro_batches) != 0) {
    return LayoutProblem{
        {"train.global_batch", "parallel.dp", "parallel.micro_batches"},
        s(r.train.global_batch) + " is not divisible by parallel.dp * parallel.micro_batches (" +
            s(p.dp) + " * " + s(p.micro_batches) + " = " + s(p.dp * p.micro_batches) + ")"};
  }
  const std::vector<std::string> schedule_keys = {
      "parallel.schedule", "parallel.pp", "parallel.micro_batches", "parallel.virtual_stages"};
  parallel::Placement placement;
  try {  // the schedule registry's constraints (dualpipe: even pp, micro-batches >= 2 pp, ...)
    placement = parallel::schedule_placement(p.schedule, static_cast<int>(p.pp),
                                             static_cast<int>(p.micro_batches),
                                             static_cast<int>(p.virtual_stages));
  } catch (const parallel::ScheduleError& e) {
    return LayoutProblem{schedule_keys, std::string("does not fit: ") + e.what()};
  }
  // Every model chunk needs a layer. Distinct chunks per stage: virtual_stages, 2 for the V of
  // dualpipev, 1 for dualpipe (its two chunks mirror each other's stage).
  const int64_t chunks_per_stage = placement.blocks() / p.pp;
  if (p.pp * chunks_per_stage > m.n_layers) {
    return LayoutProblem{
        {"parallel.pp", "parallel.virtual_stages", "parallel.schedule", "model.n_layers"},
        s(p.pp) + " stages x " + s(chunks_per_stage) +
            " model chunks per stage (parallel.virtual_stages, or the V of "
            "parallel.schedule=dualpipev) = " +
            s(p.pp * chunks_per_stage) + " chunks exceed model.n_layers " + s(m.n_layers) +
            " (every chunk needs at least one layer)"};
  }
  try {
    parallel::split_layers(static_cast<int>(m.n_layers), placement.blocks(),
                           parse_stage_layers(p.stage_layers));
  } catch (const parallel::LayoutError& e) {
    return LayoutProblem{{"parallel.stage_layers", "model.n_layers", "parallel.pp"}, e.what()};
  }
  return std::nullopt;
}

// pp x dp = world, then node-limited routing (DESIGN.md "Model"): an EP group spanning N > 1
// nodes holds expert group g on node g, so model.n_group must be N and every node an equal,
// contiguous share of the group. Every rank checks every group: all fail alike.
std::optional<LayoutProblem> launch_problem(const Recipe& r, int world, int ranks_per_node) {
  const ParallelConfig& p = r.parallel;
  if (p.pp * p.dp != world) {
    return LayoutProblem{{"parallel.pp", "parallel.dp"},
                         "parallel.pp=" + s(p.pp) + " x parallel.dp=" + s(p.dp) + " = " +
                             s(p.pp * p.dp) + " but the world size is " + s(world) +
                             " ranks (launch parallel.pp x parallel.dp processes)"};
  }
  parallel::LayoutSpec spec;
  spec.world = world;
  spec.pp = static_cast<int>(p.pp);
  spec.dp = static_cast<int>(p.dp);
  spec.ep = static_cast<int>(p.ep);
  spec.ranks_per_node = std::max(0, ranks_per_node);
  spec.mirrored =
      parallel::schedule_placement(p.schedule, spec.pp, static_cast<int>(p.micro_batches),
                                   static_cast<int>(p.virtual_stages))
          .mirrored();
  const parallel::RankGrid grid(spec);
  const std::string per_node =
      p.ranks_per_node > 0 ? "parallel.ranks_per_node=" + s(grid.ranks_per_node())
                           : s(grid.ranks_per_node()) + " ranks per node (from the launcher)";
  for (const std::vector<int>& group : grid.all_ep_groups()) {
    const parallel::EpNodeSpan span = parallel::ep_node_span(grid, group);
    if (span.nodes <= 1) continue;
    if (!span.regular) {
      return LayoutProblem{
          {"parallel.ep", "model.n_group", "parallel.ranks_per_node"},
          "the EP group of ranks " + s(group.front()) + ".." + s(group.back()) + " (parallel.ep=" +
              s(grid.ep()) + ") spans " + s(span.nodes) + " nodes unevenly with " + per_node +
              ": node-limited routing needs an equal, contiguous share of every EP group on each "
              "node and model.n_group = its nodes (model.n_group=" +
              s(r.model.n_group) +
              "); make parallel.ep a multiple or a divisor of the ranks per node"};
    }
    if (r.model.n_group != span.nodes) {
      return LayoutProblem{
          {"model.n_group", "parallel.ep", "parallel.ranks_per_node"},
          "must be " + s(span.nodes) + ", got " + s(r.model.n_group) +
              ": each EP group (parallel.ep=" + s(grid.ep()) + ") spans " + s(span.nodes) +
              " nodes with " + per_node +
              " and node-limited routing places expert group g on node g of the group"};
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<LayoutProblem> find_layout_problem(const Recipe& recipe, int world_size,
                                                 int ranks_per_node) {
  if (std::optional<LayoutProblem> problem = static_problem(recipe)) return problem;
  if (world_size > 0) return launch_problem(recipe, world_size, ranks_per_node);
  return std::nullopt;
}

std::vector<int> parse_stage_layers(const std::string& text) {
  std::vector<int> out;
  size_t at = 0;
  while (at < text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    size_t used = 0;
    int value = 0;
    try {
      value = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || item.find_first_not_of(" ", used) != std::string::npos) {
      throw parallel::LayoutError("parallel.stage_layers='" + text +
                                  "' is not a comma-separated list of layer counts");
    }
    out.push_back(value);
    at = comma + 1;
  }
  return out;
}

}  // namespace recipe_detail

void validate_layout(const Recipe& recipe, int world_size, int ranks_per_node) {
  if (const std::optional<recipe_detail::LayoutProblem> problem =
          recipe_detail::find_layout_problem(recipe, world_size, ranks_per_node)) {
    throw RecipeError((recipe.source.empty() ? std::string("recipe") : recipe.source) + ": " +
                      problem->keys.front() + ": " + problem->what);
  }
}

}  // namespace tessera::trainer

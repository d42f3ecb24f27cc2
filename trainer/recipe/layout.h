// The parallel layout's rules (internal to trainer/recipe/; the public entry is validate_layout in
// trainer/recipe.h). Recipe loading, training (trainer/parallel_layout.h), the memory plan and the
// planner (cluster/plan*.cc) all ask this one validator; nothing else checks a layout.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "trainer/recipe.h"

namespace tessera::trainer::recipe_detail {

struct LayoutProblem {
  std::vector<std::string> keys;  // keys[0] is the one the message is about; all take part
  std::string what;               // the message after "<key>: "
};

// The first layout rule `recipe` breaks, in this order: parallel.ep divides parallel.dp and
// model.n_experts; parallel.pp <= model.n_layers; train.global_batch divisible by parallel.dp x
// parallel.micro_batches; the schedule's own rules (parallel/schedule_registry.h: dualpipe's even
// pp, micro-batches >= 2 pp, virtual stages only for interleaved, ...); every model chunk gets a
// layer (pp x chunks per stage <= model.n_layers); parallel.stage_layers fits the pipeline. Then,
// when world_size > 0: parallel.pp x parallel.dp = world_size, and node-limited routing on
// ranks_per_node ranks per node (0 = one node; parallel.ranks_per_node > 0 names the key, else
// the launcher): an EP group spanning N > 1 nodes needs an equal, contiguous share on each node
// and model.n_group = N. nullopt when the layout can run.
std::optional<LayoutProblem> find_layout_problem(const Recipe& recipe, int world_size,
                                                 int ranks_per_node);

// parallel.stage_layers: "5,3" -> {5, 3}; "" -> {} (balanced). Throws parallel::LayoutError
// naming the key when the text is not a comma-separated list of integers.
std::vector<int> parse_stage_layers(const std::string& text);

}  // namespace tessera::trainer::recipe_detail

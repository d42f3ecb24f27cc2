#include "trainer/parallel_layout.h"

#include <algorithm>
#include <string>

#include "parallel/schedule_generators.h"

namespace tessera::trainer {

namespace {

parallel::LayoutSpec layout_spec(const Recipe& recipe, int world) {
  parallel::LayoutSpec spec;
  spec.world = world;
  spec.pp = static_cast<int>(recipe.parallel.pp);
  spec.dp = static_cast<int>(recipe.parallel.dp);
  spec.ep = static_cast<int>(recipe.parallel.ep);
  spec.ranks_per_node = parallel::ranks_per_node_from_env(world);
  return spec;
}

// "5,3" -> {5, 3}; "" -> {} (balanced).
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

}  // namespace

std::vector<ModelChunkSpec> stage_chunks(const Recipe& recipe, int stage) {
  const int pp = static_cast<int>(recipe.parallel.pp);
  const int v = static_cast<int>(recipe.parallel.virtual_stages);
  const int parts = pp * v;
  const std::vector<int> split = parallel::split_layers(
      static_cast<int>(recipe.model.n_layers), parts,
      parse_stage_layers(recipe.parallel.stage_layers));
  std::vector<ModelChunkSpec> chunks;
  for (int c = 0; c < v; ++c) {
    const int vs = parallel::virtual_stage(pp, stage, c);
    const auto [first, end] = parallel::layer_range(split, vs);
    chunks.push_back({first, end, vs == 0, vs == parts - 1});
  }
  return chunks;
}

ParallelLayout make_parallel_layout(const Recipe& recipe, parallel::Comm& world) {
  const parallel::LayoutSpec spec = layout_spec(recipe, world.size());
  try {
    parallel::validate_layout(spec, static_cast<int>(recipe.model.n_experts),
                              static_cast<int>(recipe.model.n_layers),
                              static_cast<int>(recipe.parallel.virtual_stages));
    parallel::Schedule schedule = parallel::make_schedule(
        recipe.parallel.schedule, spec.pp, static_cast<int>(recipe.parallel.micro_batches),
        static_cast<int>(recipe.parallel.virtual_stages));
    parallel::RankGrid grid(spec);
    const parallel::RankCoords coords = grid.coords(world.rank());
    ModelPart part;
    part.chunks = stage_chunks(recipe, coords.pp_rank);
    part.ep = spec.ep;
    part.ep_rank = coords.ep_rank;
    ParallelLayout layout{grid, coords, nullptr, nullptr, nullptr, nullptr, part, std::move(schedule)};
    // Every rank splits every kind, in the same order (split is a collective over world).
    const int r = world.rank();
    layout.pp = world.split(grid.pp_group(r), "pp");
    layout.dp = world.split(grid.dp_group(r), "dp");
    layout.ep = world.split(grid.ep_group(r), "ep");
    layout.expert_dp = world.split(grid.expert_dp_group(r), "expert-dp");
    return layout;
  } catch (const parallel::LayoutError& e) {
    throw RecipeError(recipe.source + ": " + e.what());
  } catch (const parallel::ScheduleError& e) {
    throw RecipeError(recipe.source + ": " + e.what());
  }
}

}  // namespace tessera::trainer

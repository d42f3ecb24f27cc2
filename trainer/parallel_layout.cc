#include "trainer/parallel_layout.h"

#include <algorithm>
#include <string>

#include "parallel/node_dispatch.h"
#include "parallel/schedule_registry.h"
#include "trainer/recipe/layout.h"

namespace tessera::trainer {

namespace {

parallel::LayoutSpec layout_spec(const Recipe& recipe, int world,
                                 const parallel::Placement& placement) {
  parallel::LayoutSpec spec;
  // DualPipe's mirrored stages share their data groups (rank_grid.h).
  spec.mirrored = placement.mirrored();
  spec.world = world;
  spec.pp = static_cast<int>(recipe.parallel.pp);
  spec.dp = static_cast<int>(recipe.parallel.dp);
  spec.ep = static_cast<int>(recipe.parallel.ep);
  spec.ranks_per_node = recipe_ranks_per_node(recipe, world);
  return spec;
}

}  // namespace

int recipe_ranks_per_node(const Recipe& recipe, int world) {
  // parallel.ranks_per_node > 0 overrides the launcher (one machine playing several nodes).
  const int64_t forced = std::min<int64_t>(recipe.parallel.ranks_per_node, world);
  return forced > 0 ? static_cast<int>(forced) : parallel::ranks_per_node_from_env(world);
}

parallel::Placement recipe_placement(const Recipe& recipe) {
  return parallel::schedule_placement(recipe.parallel.schedule, static_cast<int>(recipe.parallel.pp),
                                      static_cast<int>(recipe.parallel.micro_batches),
                                      static_cast<int>(recipe.parallel.virtual_stages));
}

std::vector<ModelChunkSpec> stage_chunks(const Recipe& recipe, int stage) {
  const parallel::Placement placement = recipe_placement(recipe);
  const int blocks = placement.blocks();
  const std::vector<int> split = parallel::split_layers(
      static_cast<int>(recipe.model.n_layers), blocks,
      recipe_detail::parse_stage_layers(recipe.parallel.stage_layers));
  std::vector<ModelChunkSpec> chunks;
  for (int c = 0; c < placement.chunks(); ++c) {
    const int block = placement.block(placement.virtual_stage(stage, c));
    const auto [first, end] = parallel::layer_range(split, block);
    chunks.push_back({first, end, block == 0, block == blocks - 1});
  }
  return chunks;
}

parallel::LayoutSpec recipe_layout_spec(const Recipe& recipe, int world) {
  return layout_spec(recipe, world, recipe_placement(recipe));
}

NodeDispatch recipe_node_dispatch(const Recipe& recipe, const parallel::RankGrid& grid, int rank) {
  NodeDispatch d;
  // Node-limited routing's rule held (validate_layout): a group spanning several nodes has an
  // equal share on each.
  const parallel::EpNodeSpan mine = parallel::ep_node_span(grid, grid.ep_group(rank));
  d.ep_ranks_per_node = mine.nodes > 1 ? mine.ranks_per_node : grid.ep();
  const std::string& mode = recipe.parallel.node_aware_dispatch;
  d.node_aware = grid.ep() > 1 && (mode == "on" || (mode == "auto" && d.ep_ranks_per_node < grid.ep()));
  return d;
}

EmbeddingTie recipe_embedding_tie(const Recipe& recipe) {
  EmbeddingTie tie;
  if (recipe.model.mtp_depth == 0) return tie;
  for (int s = 0; s < recipe.parallel.pp; ++s) {
    for (const ModelChunkSpec& c : stage_chunks(recipe, s)) {
      if (c.embedding) tie.embedding_stage = s;
      if (c.head) tie.head_stage = s;
    }
  }
  // DualPipe holds each end on two stages, mirrored; its rank 0 holds both.
  tie.tied = tie.embedding_stage != tie.head_stage && !recipe_placement(recipe).mirrored();
  return tie;
}

ModelPart recipe_model_part(const Recipe& recipe, int stage, int ep, int ep_rank) {
  ModelPart part;
  part.chunks = stage_chunks(recipe, stage);
  part.ep = ep;
  part.ep_rank = ep_rank;
  const EmbeddingTie tie = recipe_embedding_tie(recipe);
  part.embedding_tied = tie.tied && (stage == tie.embedding_stage || stage == tie.head_stage);
  return part;
}

ParallelLayout make_parallel_layout(const Recipe& recipe, parallel::Comm& world) {
  try {
    validate_layout(recipe, world.size(), recipe_ranks_per_node(recipe, world.size()));
    const parallel::Placement placement = recipe_placement(recipe);
    const parallel::LayoutSpec spec = layout_spec(recipe, world.size(), placement);
    parallel::Schedule schedule = parallel::make_schedule(
        recipe.parallel.schedule, spec.pp, static_cast<int>(recipe.parallel.micro_batches),
        static_cast<int>(recipe.parallel.virtual_stages));
    parallel::RankGrid grid(spec);
    const parallel::RankCoords coords = grid.coords(world.rank());
    const ModelPart part = recipe_model_part(recipe, coords.pp_rank, spec.ep, coords.ep_rank);
    const NodeDispatch nodes = recipe_node_dispatch(recipe, grid, world.rank());
    ParallelLayout layout{grid, coords, nullptr, nullptr, nullptr, nullptr, part, std::move(schedule)};
    layout.ep_ranks_per_node = nodes.ep_ranks_per_node;
    layout.node_aware_dispatch = nodes.node_aware;
    // Every rank splits every kind, in the same order (split is a collective over world).
    const int r = world.rank();
    layout.pp = world.split(grid.pp_group(r), "pp");
    layout.dp = world.split(grid.dp_group(r), "dp");
    layout.ep = world.split(grid.ep_group(r), "ep");
    layout.expert_dp = world.split(grid.expert_dp_group(r), "expert-dp");
    const EmbeddingTie tie = recipe_embedding_tie(recipe);
    if (tie.tied) {  // every rank takes part in the split; the pair of this replica, or itself
      std::vector<int> pair{grid.rank_of(tie.embedding_stage, coords.dp_rank),
                            grid.rank_of(tie.head_stage, coords.dp_rank)};
      std::sort(pair.begin(), pair.end());
      const bool holder = r == pair[0] || r == pair[1];
      std::unique_ptr<parallel::Comm> group =
          world.split(holder ? pair : std::vector<int>{r}, "embedding-tie");
      if (holder) layout.embedding_tie = std::move(group);
    }
    return layout;
  } catch (const parallel::LayoutError& e) {  // a launcher variable that does not parse
    throw RecipeError(recipe.source + ": " + e.what());
  } catch (const parallel::ScheduleError& e) {
    throw RecipeError(recipe.source + ": " + e.what());
  }
}

}  // namespace tessera::trainer

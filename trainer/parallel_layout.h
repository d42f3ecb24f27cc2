// This rank's place in a parallel run: the process grid of the recipe's layout, the
// sub-communicators (pp, dp, ep, expert-dp), the part of the model this rank holds and the
// pipeline schedule it runs. Built once, before any model memory is allocated; every rank
// validates the same layout, so a bad layout fails identically (RecipeError) on every rank.
#pragma once

#include <memory>
#include <vector>

#include "parallel/comm.h"
#include "parallel/rank_grid.h"
#include "parallel/schedule.h"
#include "trainer/model.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

struct ParallelLayout {
  parallel::RankGrid grid;
  parallel::RankCoords coords;
  std::unique_ptr<parallel::Comm> pp, dp, ep, expert_dp;  // this rank's groups
  ModelPart part;                                         // what this rank holds
  parallel::Schedule schedule;                            // this pipeline's instruction lists
  bool holds_head() const { return part.chunks.back().head; }
};

// Throws RecipeError (naming recipe keys) when the layout cannot run on world.size() ranks.
// Collective over `world` (the groups are split from it).
ParallelLayout make_parallel_layout(const Recipe& recipe, parallel::Comm& world);

// The model chunks of pipeline stage `stage`: chunk c is virtual stage c * pp + stage, holding
// its share of the layers (split_layers over pp * virtual_stages parts, explicit when
// parallel.stage_layers is set); the first virtual stage adds the embedding, the last the head.
std::vector<ModelChunkSpec> stage_chunks(const Recipe& recipe, int stage);

}  // namespace tessera::trainer

// This rank's place in a parallel run: the process grid of the recipe's layout, the
// sub-communicators (pp, dp, ep, expert-dp), the part of the model this rank holds and the
// pipeline schedule it runs. Built once, before any model memory is allocated; every rank
// validates the same layout, so a bad layout fails identically (RecipeError) on every rank.
#pragma once

#include <memory>
#include <vector>

#include "parallel/comm.h"
#include "parallel/placement.h"
#include "parallel/rank_grid.h"
#include "parallel/schedule.h"
#include "trainer/model.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

struct ParallelLayout {
  parallel::RankGrid grid;
  parallel::RankCoords coords;
  // This rank's groups. With parallel.schedule=dualpipe, dp and expert_dp span the mirrored stage
  // pair {k, pp-1-k} (twice grid.dp() and grid.expert_dp() ranks): both hold the same layers, so
  // gradients are summed and ZeRO-1 shards cut over the pair. The data replica is coords.dp_rank
  // of grid.dp(), never the dp communicator's rank.
  std::unique_ptr<parallel::Comm> pp, dp, ep, expert_dp;
  ModelPart part;                                         // what this rank holds
  parallel::Schedule schedule;                            // this pipeline's instruction lists
  // Node-aware expert dispatch (parallel.node_aware_dispatch, parallel.ranks_per_node): this
  // rank's EP group has ep_ranks_per_node consecutive members per node (ep when on one node).
  int ep_ranks_per_node = 1;
  bool node_aware_dispatch = false;
  // MTP's embedding tie (recipe_embedding_tie): this replica's embedding stage and head stage;
  // null on other ranks and when nothing is tied.
  std::unique_ptr<parallel::Comm> embedding_tie = nullptr;
  bool holds_head() const {  // DualPipe's last stage holds the head on its first chunk
    for (const ModelChunkSpec& c : part.chunks) {
      if (c.head) return true;
    }
    return false;
  }
};

// MTP's embedding tie: with model.mtp_depth > 0, the stage holding the head (and the MTP modules)
// also needs the embedding; when that is not the first stage (1f1b, interleaved, ...; not
// dualpipe/dualpipev, whose rank 0 holds both ends) it keeps a tied copy, and the two stages of a
// replica sum embed.weight's gradient before the optimizer.
struct EmbeddingTie {
  bool tied = false;
  int embedding_stage = 0, head_stage = 0;
};
EmbeddingTie recipe_embedding_tie(const Recipe& recipe);
// The part of the model `stage` holds, with this rank's expert slice.
ModelPart recipe_model_part(const Recipe& recipe, int stage, int ep, int ep_rank);

// Ranks per node for `world` ranks: parallel.ranks_per_node (at most world) when > 0, else the
// launcher's (parallel::ranks_per_node_from_env; a malformed variable is a LayoutError).
int recipe_ranks_per_node(const Recipe& recipe, int world);

// The recipe's layout on `world` ranks (nodes from recipe_ranks_per_node).
parallel::LayoutSpec recipe_layout_spec(const Recipe& recipe, int world);

// Where `rank`'s EP group sits on the nodes and whether its experts use node-aware dispatch
// (parallel.node_aware_dispatch). REQUIRES: validate_layout(recipe, grid.world(),
// grid.ranks_per_node()) passed (node-limited routing's rule is checked there).
struct NodeDispatch {
  int ep_ranks_per_node = 1;
  bool node_aware = false;
};
NodeDispatch recipe_node_dispatch(const Recipe& recipe, const parallel::RankGrid& grid, int rank);

// Throws RecipeError (naming recipe keys) when the layout cannot run on world.size() ranks:
// validate_layout (trainer/recipe.h) with the world and its ranks per node, node-limited routing's
// rule included. Collective over `world` (the groups are split from it).
ParallelLayout make_parallel_layout(const Recipe& recipe, parallel::Comm& world);

// The placement of the recipe's schedule (parallel.schedule, pp, micro_batches, virtual_stages);
// ScheduleError naming the keys when they do not fit the schedule.
parallel::Placement recipe_placement(const Recipe& recipe);

// The model chunks of pipeline stage `stage`: chunk c holds the model block of the virtual stage
// the placement gives it (looped: c * pp + stage; DualPipeV: stage and 2pp-1-stage; DualPipe:
// stage and pp-1-stage, the mirror stage holding the same two on swapped chunks), its share
// of the layers (split_layers over the placement's blocks, explicit when parallel.stage_layers is
// set); block 0 adds the embedding, the last block the head.
std::vector<ModelChunkSpec> stage_chunks(const Recipe& recipe, int stage);

}  // namespace tessera::trainer

#include "trainer/model_gather.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace tessera::trainer {

namespace {

constexpr int kTag = 0;

// The pipeline stage holding a parameter, from its name: "layers.<i>." -> the stage of layer i;
// the embedding lives with the first virtual stage, the final norm and head with the last.
int stage_of(const std::string& name, const std::vector<int>& stage_of_layer, int last_stage) {
  static const std::string kLayers = "layers.";
  if (name.compare(0, kLayers.size(), kLayers) == 0) {
    return stage_of_layer.at(std::stoi(name.substr(kLayers.size())));
  }
  if (name.compare(0, 6, "embed.") == 0) return 0;
  if (name == "norm.weight" || name == "head.weight") return last_stage;
  throw std::logic_error("gather_model: no stage holds parameter " + name);
}

bool is_holder(const ParamDesc& d, const parallel::RankCoords& c) {
  return d.region == ParamRegion::kExpert ? c.expert_dp_rank == 0 : c.dp_rank == 0;
}

}  // namespace

void gather_model(parallel::Comm& world, const ParallelLayout& layout, const Recipe& recipe,
                  ParamTable& local, ParamTable* whole) {
  const bool root = world.rank() == 0;
  if (root != (whole != nullptr)) throw std::logic_error("gather_model: `whole` is for rank 0");
  std::vector<parallel::Work> work;

  // Holders send their tensors in their table's order (rank 0 copies its own).
  for (const ParamDesc& d : local.descs()) {
    if (!is_holder(d, layout.coords) || root) continue;
    work.push_back(world.send<float>({local.value_ptr(local.index(d.name)),
                                      static_cast<size_t>(d.numel())}, 0, kTag));
  }

  if (root) {
    const int pp = layout.grid.pp();
    std::vector<int> stage_of_layer(recipe.model.n_layers, -1);
    for (int s = 0; s < pp; ++s) {
      for (const ModelChunkSpec& c : stage_chunks(recipe, s)) {
        for (int l = c.first_layer; l < c.end_layer; ++l) stage_of_layer[l] = s;
      }
    }
    // Receives are posted in the whole table's order, which is every holder's send order too.
    for (const ParamDesc& d : whole->descs()) {
      const int stage = stage_of(d.name, stage_of_layer, pp - 1);
      const bool expert = d.region == ParamRegion::kExpert;
      const int pieces = expert ? layout.grid.ep() : 1;
      const int64_t piece_rows = d.shape[0] / pieces;
      const int64_t piece = d.numel() / pieces;
      for (int j = 0; j < pieces; ++j) {
        const int holder = layout.grid.rank_of(stage, j);  // dp_rank j: expert-dp 0, ep rank j
        float* dst = whole->values().data<float>() + d.offset + j * piece;
        if (holder != 0) {
          work.push_back(world.recv<float>({dst, static_cast<size_t>(piece)}, holder, kTag));
          continue;
        }
        const int mine = local.index(d.name);
        const ParamDesc& m = local.descs()[mine];
        if (m.numel() != piece || (expert && m.dim0_offset != j * piece_rows)) {
          throw std::logic_error("gather_model: rank 0's " + d.name + " is not the expected slice");
        }
        if (dst != local.value_ptr(mine)) std::memcpy(dst, local.value_ptr(mine), sizeof(float) * piece);
      }
    }
  }
  parallel::wait_all(work);
}

}  // namespace tessera::trainer

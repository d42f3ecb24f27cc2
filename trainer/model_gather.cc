#include "trainer/model_gather.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace tessera::trainer {

namespace {

constexpr int kTagValues = 0, kTagExpAvg = 1, kTagExpAvgSq = 2;

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
                  ParamTable& local, const std::vector<float>* exp_avg,
                  const std::vector<float>* exp_avg_sq, ParamTable* whole) {
  const bool moments = exp_avg != nullptr;
  const bool root = world.rank() == 0;
  if (root != (whole != nullptr)) throw std::logic_error("gather_model: `whole` is for rank 0");
  if (root && moments && !whole->has_moments()) {
    throw std::logic_error("gather_model: the whole table has no moment buffers");
  }
  struct Source {
    const float* data;
    int tag;
  };
  auto sources = [&](int64_t offset) {
    std::vector<Source> s{{local.values().data<float>() + offset, kTagValues}};
    if (moments) {
      s.push_back({exp_avg->data() + offset, kTagExpAvg});
      s.push_back({exp_avg_sq->data() + offset, kTagExpAvgSq});
    }
    return s;
  };
  std::vector<parallel::Work> work;

  // Holders send their tensors in their table's order (rank 0 copies its own).
  for (const ParamDesc& d : local.descs()) {
    if (!is_holder(d, layout.coords) || root) continue;
    for (const Source& s : sources(d.offset)) {
      work.push_back(world.send<float>({s.data, static_cast<size_t>(d.numel())}, 0, s.tag));
    }
  }

  if (root) {
    const int pp = layout.grid.pp();
    std::vector<int> stage_of_layer(recipe.model.n_layers, -1);
    for (int s = 0; s < pp; ++s) {
      for (const ModelChunkSpec& c : stage_chunks(recipe, s)) {
        for (int l = c.first_layer; l < c.end_layer; ++l) stage_of_layer[l] = s;
      }
    }
    auto targets = [&](int64_t offset) {
      std::vector<float*> t{whole->values().data<float>() + offset};
      if (moments) {
        t.push_back(whole->exp_avg().data<float>() + offset);
        t.push_back(whole->exp_avg_sq().data<float>() + offset);
      }
      return t;
    };
    // Receives are posted in the whole table's order, which is every holder's send order too.
    for (const ParamDesc& d : whole->descs()) {
      const int stage = stage_of(d.name, stage_of_layer, pp - 1);
      const bool expert = d.region == ParamRegion::kExpert;
      const int pieces = expert ? layout.grid.ep() : 1;
      const int64_t piece_rows = d.shape[0] / pieces;
      const int64_t piece = d.numel() / pieces;
      for (int j = 0; j < pieces; ++j) {
        const int holder = layout.grid.rank_of(stage, j);  // dp_rank j: expert-dp 0, ep rank j
        const int64_t at = d.offset + j * piece;
        const std::vector<float*> dst = targets(at);
        if (holder == 0) {
          const ParamDesc& mine = local.descs()[local.index(d.name)];
          if (mine.numel() != piece || (expert && mine.dim0_offset != j * piece_rows)) {
            throw std::logic_error("gather_model: rank 0's " + d.name + " is not the expected slice");
          }
          const std::vector<Source> src = sources(mine.offset);
          for (size_t k = 0; k < dst.size(); ++k) {
            if (dst[k] != src[k].data) std::memcpy(dst[k], src[k].data, sizeof(float) * piece);
          }
          continue;
        }
        const int tags[] = {kTagValues, kTagExpAvg, kTagExpAvgSq};
        for (size_t k = 0; k < dst.size(); ++k) {
          work.push_back(world.recv<float>({dst[k], static_cast<size_t>(piece)}, holder, tags[k]));
        }
      }
    }
  }
  parallel::wait_all(work);
}

}  // namespace tessera::trainer

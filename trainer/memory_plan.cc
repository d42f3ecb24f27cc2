#include "trainer/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <memory>

#include "parallel/pipeline_executor.h"
#include "parallel/rank_grid.h"
#include "parallel/schedule_registry.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/parallel_layout.h"

namespace tessera::trainer {

namespace {

std::vector<RankMemory> plan_ranks(const Recipe& recipe, kernels::Device device,
                                   bool first_of_each_stage) {
  const int world = static_cast<int>(recipe.parallel.pp * recipe.parallel.dp);
  const int micro_batches = static_cast<int>(recipe.parallel.micro_batches);
  std::vector<RankMemory> ranks;
  try {
    // The launcher's layout (parallel.ranks_per_node, else one node when run without mpirun).
    validate_layout(recipe, world, recipe_ranks_per_node(recipe, world));
    const parallel::LayoutSpec spec = recipe_layout_spec(recipe, world);
    const parallel::Schedule schedule =
        parallel::make_schedule(recipe.parallel.schedule, spec.pp, micro_batches,
                                static_cast<int>(recipe.parallel.virtual_stages));
    const parallel::RankGrid grid(spec);
    // ZeRO-1 shards are cut over the groups training uses (a mirrored stage pair's under dualpipe).
    const int dense_dp = grid.group_size(parallel::GroupKind::kData);
    const int expert_dp = grid.group_size(parallel::GroupKind::kExpertData);
    const int64_t mb_rows = recipe.train.global_batch / (spec.dp * micro_batches);
    const int64_t seq_len = recipe.train.seq_len;
    const int64_t boundary_bytes = mb_rows * seq_len * recipe.model.dim * 4;
    const StateDtype state_dtype = parse_state_dtype(recipe.optimizer.state_dtype);
    const int64_t moment_bytes = state_dtype_bytes(state_dtype);
    for (int r = 0; r < world; ++r) {
      const parallel::RankCoords coords = grid.coords(r);
      if (first_of_each_stage && coords.dp_rank != 0) continue;
      const ModelPart part = recipe_model_part(recipe, coords.pp_rank, spec.ep, coords.ep_rank);
      const std::unique_ptr<Model> model = Model::Describe(recipe.model, part);
      // Node-aware dispatch carves more (its stage buffers): plan what training will carve.
      const NodeDispatch nodes = recipe_node_dispatch(recipe, grid, r);
      for (MoeBlock* moe : model->moe_blocks()) moe->set_nodes(nodes.ep_ranks_per_node, nodes.node_aware);
      const ParamTable& params = model->params();
      const int64_t dense = params.padded_region_numel(ParamRegion::kDense, dense_dp);
      const int64_t expert = params.padded_region_numel(ParamRegion::kExpert, expert_dp);
      RankMemory m;
      m.rank = r;
      m.stage = coords.pp_rank;
      m.replica = coords.dp_rank;
      m.expert_slice = coords.ep_rank;
      m.parameters = (dense + expert) * 4;
      m.gradients = m.parameters;
      m.optimizer = 2 * (dense / dense_dp + expert / expert_dp) * moment_bytes;
      m.contexts = parallel::peak_in_flight(schedule, coords.pp_rank);
      for (int c = 0; c < model->n_chunks(); ++c) {
        const Model::ChunkBytes bytes = model->MeasureChunk(c, mb_rows, seq_len, device);
        m.context_bytes.push_back(bytes.arena);
        m.activations += m.contexts[c] * bytes.arena;
        m.workspace_bytes = std::max(m.workspace_bytes, bytes.workspace);
        // Each context keeps its MoE blocks' packed exchanges (host memory: counted on the CPU).
        if (device != kernels::Device::kCPU) continue;
        for (const Block* block : model->chunk_blocks(c)) {
          const auto* moe = dynamic_cast<const MoeBlock*>(block);
          if (moe) m.exchange += m.contexts[c] * moe->exchange_buffer_bytes(mb_rows * seq_len);
        }
      }
      m.activations += m.workspace_bytes;
      m.communication = static_cast<int64_t>(parallel::PipelineExecutor::PlannedPoolBuffers(
                            schedule, coords.pp_rank)) *
                        boundary_bytes;
      ranks.push_back(std::move(m));
    }
  } catch (const parallel::LayoutError& e) {
    throw RecipeError(recipe.source + ": " + e.what());
  } catch (const parallel::ScheduleError& e) {
    throw RecipeError(recipe.source + ": " + e.what());
  }
  return ranks;
}

}  // namespace

std::vector<RankMemory> plan_memory(const Recipe& recipe, kernels::Device device) {
  return plan_ranks(recipe, device, false);
}

std::vector<RankMemory> plan_memory_per_stage(const Recipe& recipe, kernels::Device device) {
  return plan_ranks(recipe, device, true);
}

MemoryTerm largest_memory_term(const RankMemory& m) {
  const std::string parameter_keys =
      "model.dim, model.n_layers, model.vocab_size, model.inter_dim, model.moe_inter_dim, "
      "model.n_experts (parallel.pp and parallel.ep split them)";
  const MemoryTerm terms[] = {
      {"parameters", m.parameters, parameter_keys},
      {"gradients", m.gradients, parameter_keys},
      {"optimizer state", m.optimizer, parameter_keys + "; parallel.dp shards it"},
      {"activations", m.activations,
       "train.global_batch, train.seq_len, parallel.micro_batches, parallel.dp, model.dim, "
       "model.vocab_size, model.top_k, parallel.schedule (micro-batches in flight)"},
      {"communication buffers", m.communication,
       "train.global_batch, train.seq_len, model.dim, parallel.schedule"},
      {"MoE exchange buffers", m.exchange,
       "train.global_batch, train.seq_len, model.dim, model.top_k, parallel.ep, "
       "precision.compute"}};
  return *std::max_element(
      std::begin(terms), std::end(terms),
      [](const MemoryTerm& a, const MemoryTerm& b) { return a.bytes < b.bytes; });
}

std::string format_memory_plan(const std::vector<RankMemory>& ranks) {
  auto mib = [](int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); };
  // Large worlds: one line per distinct plan (ranks of a stage plan alike), with its rank count.
  constexpr size_t kEveryRankUpTo = 64;
  std::vector<const RankMemory*> shown;
  std::vector<int> alike;
  for (const RankMemory& m : ranks) {
    auto same = [&](const RankMemory* o) {
      return o->stage == m.stage && o->parameters == m.parameters && o->optimizer == m.optimizer &&
             o->activations == m.activations && o->communication == m.communication &&
             o->exchange == m.exchange &&
             o->contexts == m.contexts && o->context_bytes == m.context_bytes &&
             o->workspace_bytes == m.workspace_bytes;
    };
    size_t i = 0;
    if (ranks.size() > kEveryRankUpTo) {
      while (i < shown.size() && !same(shown[i])) ++i;
    } else {
      i = shown.size();
    }
    if (i == shown.size()) {
      shown.push_back(&m);
      alike.push_back(0);
    }
    ++alike[i];
  }
  std::string out;
  if (ranks.size() > kEveryRankUpTo) {
    out += "(" + std::to_string(ranks.size()) + " ranks: one line per distinct plan, its first " +
           "rank shown, 'ranks' = how many ranks plan it)\n";
  }
  out +=
      "rank stage replica experts | parameters gradients optimizer activations (contexts x MiB) "
      "communication exchange |    total (MiB)" +
      std::string(ranks.size() > kEveryRankUpTo ? " | ranks" : "") + "\n";
  char line[256];
  for (size_t i = 0; i < shown.size(); ++i) {
    const RankMemory& m = *shown[i];
    std::string contexts;
    for (size_t c = 0; c < m.contexts.size(); ++c) {
      std::snprintf(line, sizeof(line), "%s%dx%.1f", c ? "+" : "", m.contexts[c],
                    mib(m.context_bytes[c]));
      contexts += line;
    }
    if (m.workspace_bytes > 0) {
      std::snprintf(line, sizeof(line), "+ws%.1f", mib(m.workspace_bytes));
      contexts += line;
    }
    std::snprintf(line, sizeof(line),
                  "%4d %5d %7d %7d | %10.1f %9.1f %9.1f %11.1f %-16s %13.1f %8.1f | %14.1f\n",
                  m.rank, m.stage, m.replica, m.expert_slice, mib(m.parameters),
                  mib(m.gradients), mib(m.optimizer), mib(m.activations),
                  ("(" + contexts + ")").c_str(), mib(m.communication), mib(m.exchange),
                  mib(m.total()));
    out += line;
    if (ranks.size() > kEveryRankUpTo) {
      out.pop_back();  // the newline
      out += " | " + std::to_string(alike[i]) + "\n";
    }
  }
  return out;
}

}  // namespace tessera::trainer

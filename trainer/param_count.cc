#include "trainer/param_count.h"

#include <cstdio>
#include <memory>

#include "trainer/model.h"
#include "trainer/parallel_layout.h"

namespace tessera::trainer {

ParameterCounts count_parameters(const Recipe& recipe) {
  const ModelConfig& m = recipe.model;
  ParameterCounts counts;
  for (const ParamDesc& d : Model::WholeModelParams(m)) {
    const bool mtp = d.name.rfind("mtp.", 0) == 0;
    // Routed experts are stacked [n_experts, out, in]: a token uses top_k of them. The embedding
    // is a lookup, not activated compute (DeepSeek's counts leave it out: V3 37B, V2-Lite 2.4B).
    int64_t used = d.region == ParamRegion::kExpert ? d.numel() / m.n_experts * m.top_k : d.numel();
    if (d.name == "embed.weight") used = 0;
    (mtp ? counts.mtp : counts.total) += d.numel();
    (mtp ? counts.mtp_activated : counts.activated) += used;
  }
  counts.mirrored = recipe_placement(recipe).mirrored();
  for (int s = 0; s < recipe.parallel.pp; ++s) {
    counts.per_stage.push_back(
        Model::Describe(m, recipe_model_part(recipe, s, 1, 0))->params().numel());
  }
  return counts;
}

namespace {
std::string billions(int64_t n) {
  char buf[32];
  if (n >= 1'000'000'000) {
    std::snprintf(buf, sizeof(buf), "%.2fB", n / 1e9);
  } else if (n >= 1'000'000) {
    std::snprintf(buf, sizeof(buf), "%.2fM", n / 1e6);
  } else {
    std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(n));
  }
  return buf;
}
}  // namespace

std::string format_parameter_counts(const ParameterCounts& c) {
  std::string out = "parameters: " + billions(c.total) + " main model (" + billions(c.activated) +
                    " activated per token)";
  if (c.mtp > 0) {
    out += ", MTP modules " + billions(c.mtp) + " (" + billions(c.mtp_activated) +
           " activated; embedding and head shared with the main model)";
  }
  out += "\nparameters per pipeline stage (before expert parallelism";
  out += c.mirrored ? "; dualpipe: every block on two mirrored stages):" : "):";
  for (size_t s = 0; s < c.per_stage.size(); ++s) {
    out += (s ? ", " : " ") + std::to_string(s) + ": " + billions(c.per_stage[s]);
  }
  return out + "\n";
}

}  // namespace tessera::trainer

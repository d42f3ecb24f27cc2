// Parameter counts of a recipe's model, from its descriptors alone (nothing is allocated), for
// `tessera train --dry-run` and the planner: the main model as DeepSeek reports it (embedding,
// layers, final norm and head; 671.03B for V3), the parameters one token activates (every
// parameter but the routed experts it is not sent to, top_k / n_experts of them, and the
// embedding table, which is looked up; 37B for V3 as DeepSeek counts), the MTP
// modules' own parameters (their embedding and head are the main model's), and what each
// pipeline stage holds before expert parallelism splits the routed experts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/recipe.h"

namespace tessera::trainer {

struct ParameterCounts {
  int64_t total = 0;          // main model
  int64_t activated = 0;      // main model, per token
  int64_t mtp = 0;            // MTP modules' own parameters
  int64_t mtp_activated = 0;  // ... per token
  std::vector<int64_t> per_stage;  // parameters stage s holds (all its experts; MTP included)
  bool mirrored = false;           // dualpipe: every block on two stages (k and pp - 1 - k)
};

// Throws RecipeError for an impossible layout (as training would).
ParameterCounts count_parameters(const Recipe& recipe);

// "671.03B main model (37.55B activated per token), MTP 11.66B (0.96B activated); per stage: ..."
std::string format_parameter_counts(const ParameterCounts& counts);

}  // namespace tessera::trainer

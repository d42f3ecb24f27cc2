#include "trainer/layers/output_head.h"

namespace tessera::trainer {

OutputHead::OutputHead(ParamTable& table, const ModelConfig& config)
    : norm_(table.add({"norm.weight", {config.dim}, ParamInit::kOnes, false})),
      head_(table.add({"head.weight", {config.vocab_size, config.dim}})),
      loss_(table, norm_, head_, config.dim, config.vocab_size, config.norm_eps) {}

}  // namespace tessera::trainer

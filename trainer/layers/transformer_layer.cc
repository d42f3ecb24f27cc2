#include "trainer/layers/transformer_layer.h"

#include "trainer/layers/attention_block.h"
#include "trainer/layers/dense_ffn_block.h"
#include "trainer/layers/mla_attention_block.h"
#include "trainer/layers/moe_block.h"

namespace tessera::trainer {

std::string layer_prefix(int layer) { return "layers." + std::to_string(layer) + "."; }

std::unique_ptr<Block> make_attention_block(ParamTable& table, const ModelConfig& config,
                                            const std::string& prefix) {
  if (config.attention == "mla") return std::make_unique<MlaAttentionBlock>(table, config, prefix);
  return std::make_unique<AttentionBlock>(table, config, prefix);
}

std::unique_ptr<Block> make_ffn_block(ParamTable& table, const ModelConfig& config,
                                      const std::string& prefix, int layer, int ep, int ep_rank,
                                      parallel::Comm* ep_comm, parallel::Comm* ep_host_comm) {
  if (layer < config.first_dense_layers) {
    return std::make_unique<DenseFfnBlock>(table, config, prefix);
  }
  return std::make_unique<MoeBlock>(table, config, prefix, ep, ep_rank, ep_comm, ep_host_comm);
}

}  // namespace tessera::trainer

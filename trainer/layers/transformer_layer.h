// The blocks of one transformer layer (DESIGN.md "Model"): attention (MHA or MLA, as
// model.attention says), then a dense FFN for layers below first_dense_layers or an MoE. MTP
// modules use the same blocks as layer n_layers + d under the prefix "mtp.{d}.block.".
#pragma once

#include <memory>
#include <string>

#include "parallel/comm.h"
#include "trainer/layers/block.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

// "layers.{layer}."
std::string layer_prefix(int layer);

std::unique_ptr<Block> make_attention_block(ParamTable& table, const ModelConfig& config,
                                            const std::string& prefix);

// Dense for layer < first_dense_layers, else an MoeBlock holding this rank's expert slice
// (ep, ep_rank; the communicators as MoeBlock's constructor takes them).
std::unique_ptr<Block> make_ffn_block(ParamTable& table, const ModelConfig& config,
                                      const std::string& prefix, int layer, int ep = 1,
                                      int ep_rank = 0, parallel::Comm* ep_comm = nullptr,
                                      parallel::Comm* ep_host_comm = nullptr);

}  // namespace tessera::trainer

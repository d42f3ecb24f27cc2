// FLOPs of a recipe's model, from its shapes alone: the trainer's MFU metric and the planner
// (cluster/plan.h) use these same formulas.
//
// The model as compute units: one per transformer layer, the head (final norm, output projection,
// cross-entropy) and one per MTP module. Each unit lists its linear maps (a GEMM each: forward
// y = x W^T with `rows` = tokens x rows_per_token, input gradient, weight gradient) and its causal
// attention core. Routed experts: each of the n_experts maps runs on top_k / n_experts of the
// tokens (balanced routing, which is also the mean of any routing: every token reaches top_k).
//
// Forward FLOPs per token: 2 x in x out x rows_per_token x count over the linear maps, plus the
// causal attention core: (q . k and p . v) 2 x heads x (qk_dim + v_dim) x (seq_len + 1) / 2, a
// token at position i attending to i + 1 keys. Training FLOPs = 3 x forward (backward: the input
// and the weight gradients of every GEMM, 2 x its forward; attention's backward 2 x its forward;
// no recomputation counted). Element-wise work (norms, RoPE, SwiGLU, softmax, router top-k) is
// not counted in FLOPs; the planner prices it as memory traffic.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/recipe.h"

namespace tessera::trainer {

struct LinearShape {
  std::string name;             // "layers.3.attn.wq_a", "layers.5.moe.experts.w1", "head.output"
  int64_t in = 0, out = 0;      // W is (out, in)
  double rows_per_token = 1.0;  // routed experts: top_k / n_experts
  int64_t count = 1;            // identical maps (routed experts: n_experts; fused pairs: 1)
  bool block_precision = true;  // runs at precision.compute (false: fp32, e.g. the head, router)
  bool routed_expert = false;   // its rows cross the EP group (dispatch / combine)
  double forward_flops_per_token() const { return 2.0 * in * out * rows_per_token * count; }
};

struct AttentionCore {
  int64_t heads = 0;   // 0: no attention in this unit
  int64_t qk_dim = 0;  // per head, query . key width (MLA: qk_nope + qk_rope)
  int64_t v_dim = 0;   // per head, value width
  double forward_flops_per_token(int64_t seq_len) const {
    return 2.0 * heads * (qk_dim + v_dim) * (seq_len + 1) / 2.0;
  }
};

struct ComputeUnit {
  std::string name;  // "layers.3", "head", "mtp.0"
  std::vector<LinearShape> linears;
  AttentionCore attention;
  bool moe = false;         // routes tokens to experts (an all-to-all each way under EP)
  int64_t top_k = 0;        // moe: experts per token
  int64_t dim = 0;          // residual width
  int64_t hidden = 0;       // FFN hidden width per token (dense inter_dim, or shared + top_k experts)
  double forward_flops_per_token(int64_t seq_len) const;
};

struct ModelCompute {
  std::vector<ComputeUnit> layers;  // layers[i] is transformer layer i
  ComputeUnit head;                 // final norm + output projection + cross-entropy
  std::vector<ComputeUnit> mtp;     // one per MTP depth (its block, eh_proj, and the shared head)
};

ModelCompute describe_compute(const ModelConfig& model);

struct FlopsPerToken {
  double forward = 0.0;       // main model + MTP, forward only
  double training = 0.0;      // 3 x forward
  double mtp_forward = 0.0;   // of which the MTP modules
};

// Per token of a sequence of seq_len tokens (the attention core depends on it).
FlopsPerToken flops_per_token(const ModelConfig& model, int64_t seq_len);

// The GEMMs of a micro-batch of `tokens` tokens as (m, n, k) with the operand layout the backends
// use: forward "nt" (m = rows, n = out, k = in), input gradient "nn" (m = rows, n = in, k = out),
// weight gradient "tn" (m = out, n = in, k = rows). Distinct shapes only, for calibration.
struct GemmShape {
  std::string layout;  // nt | nn | tn
  int64_t m = 0, n = 0, k = 0;
  bool block_precision = true;
  friend bool operator==(const GemmShape&, const GemmShape&) = default;
};
std::vector<GemmShape> gemm_shapes(const ModelConfig& model, int64_t tokens);

}  // namespace tessera::trainer

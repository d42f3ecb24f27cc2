// Multi-head latent attention sub-layer (DeepSeek-V3; DESIGN.md "Model", attention: mla):
//   n = RMSNorm(x)
//   q = wq_b(q_norm(wq_a n))  (or wq n when q_lora_rank = 0), per head [q_nope; q_pe], RoPE on q_pe
//   [c_kv; k_pe] = wkv_a n, RoPE on k_pe (one k_pe shared by every head)
//   per head [k_nope; v] = wkv_b(kv_norm(c_kv)), k = [k_nope; k_pe]
//   y = x + wo(causal softmax(q k^T / sqrt(qk_nope + qk_rope)) v)
// The backend's attention takes one head width for q, k and v, so v is zero-padded to the
// query/key width (qk_nope + qk_rope) and the padding columns of the output dropped: exact, at
// the cost of (qk_nope + qk_rope - v_head_dim) / v_head_dim more work in the P.V products
// (a third at V3's shapes). The heads are packed and unpacked with the backend's copy_2d.
// One local piece per phase ("attention"), as the MHA block.
#pragma once

#include <memory>
#include <string>

#include "kernels/backend.h"
#include "kernels/tensor.h"
#include "trainer/layers/block.h"
#include "trainer/layers/saved_activation.h"
#include "trainer/param_table.h"
#include "trainer/recipe.h"

namespace tessera::trainer {

class MlaAttentionBlock : public Block {
 public:
  // Adds, under `prefix` ("layers.{i}." or "mtp.{d}.block."): attn_norm.weight and attn.{wq |
  // wq_a, q_norm, wq_b}, attn.{wkv_a, kv_norm, wkv_b, wo}.weight.
  MlaAttentionBlock(ParamTable& table, const ModelConfig& config, const std::string& prefix);
  MlaAttentionBlock(ParamTable&, const ModelConfig&, int) = delete;  // a layer number is no prefix

  const std::string& name() const override { return name_; }
  std::unique_ptr<BlockContext> NewContext() const override;
  void Carve(BlockContext& ctx, ActivationArena& arena) const override;
  const BlockPieces& pieces() const override { return pieces_; }

 private:
  struct Context : BlockContext {
    // forward (saved for the backward)
    float* rstd = nullptr;      // (N)
    SavedActivation xn;         // (N, D)
    float* q_a = nullptr;       // (N, Rq) wq_a xn (q_lora_rank > 0)
    float* q_rstd = nullptr;    // (N)
    SavedActivation q_an;       // (N, Rq) q_norm(q_a)
    float* q = nullptr;         // (N, H*dk) per head [q_nope; q_pe] after RoPE
    float* c_kv = nullptr;      // (N, Rkv)
    float* kv_rstd = nullptr;   // (N)
    SavedActivation c_kvn;      // (N, Rkv) kv_norm(c_kv)
    float* k_pe = nullptr;      // (N, dr) after RoPE
    float* kv = nullptr;        // (N, H*(dn+dv)) per head [k_nope; v]
    float* k = nullptr;         // (N, H*dk)
    float* v = nullptr;         // (N, H*dk) v zero-padded to dk per head
    float* saved = nullptr;     // the backend attention's saved state
    float* out = nullptr;       // (N, H*dk) attention output, padded
    float* o = nullptr;         // (N, H*dv) its v columns: wo's input
    // backward
    float* d_o = nullptr;       // (N, H*dv)
    float* d_out = nullptr;     // (N, H*dk)
    float* dq = nullptr;        // (N, H*dk)
    float* dk = nullptr;        // (N, H*dk)
    float* dv = nullptr;        // (N, H*dk)
    float* dkv = nullptr;       // (N, H*(dn+dv))
    float* dc_kvn = nullptr;    // (N, Rkv)
    float* dc_kv = nullptr;     // (N, Rkv)
    float* dk_pe = nullptr;     // (N, dr)
    float* dq_an = nullptr;     // (N, Rq)
    float* dq_a = nullptr;      // (N, Rq)
    float* dxn = nullptr;       // (N, D)
    float* scratch = nullptr;   // the backend attention backward's workspace
  };
  int64_t qk_head_dim() const { return nope_ + rope_; }
  kernels::AttentionShape shape(const MicroBatchInfo& mb) const;
  void ensure_rope(int64_t seq_len);
  void ForwardPiece(Context& c);
  void BackwardInputPiece(Context& c);
  void BackwardWeightPiece(Context& c);

  ParamTable& table_;
  std::string name_;
  int64_t dim_, n_heads_, q_rank_, kv_rank_, nope_, rope_, v_dim_;
  double eps_, theta_;
  kernels::Precision precision_;  // of the projections; the attention core stays fp32
  int norm_ = -1, wq_ = -1, wq_a_ = -1, q_norm_ = -1, wq_b_ = -1;
  int wkv_a_ = -1, kv_norm_ = -1, wkv_b_ = -1, wo_ = -1;
  kernels::Tensor rope_cos_, rope_sin_;  // (T, dr/2): constants, grown to the longest sequence
  int64_t rope_len_ = 0;
  BlockPieces pieces_;
};

}  // namespace tessera::trainer

// SwiGLU MLP: y = W2 (silu(W1 n) * W3 n), without norm or residual. Serves the dense FFN and
// the MoE shared experts. W1 and W3 are added back to back so [W1; W3] is one [2F, D] GEMM.
#pragma once

#include <string>
#include <vector>

#include "kernels/tensor.h"
#include "trainer/param_table.h"

namespace tessera::trainer {

class SwigluMlp {
 public:
  // Adds {prefix}w1{suffix} [F, D], {prefix}w3{suffix} [F, D], {prefix}w2{suffix} [D, F].
  SwigluMlp(ParamTable& table, const std::string& prefix, const std::string& suffix, int64_t dim,
            int64_t hidden);

  // y (N, D) = MLP(n) when accumulate is false, y += MLP(n) otherwise. n must stay valid until
  // BackwardWeight(slot).
  void Forward(int slot, const float* n, float* y, int64_t N, bool accumulate);
  // dn (N, D) = or += d/dn given dy (N, D); dy must stay valid until BackwardWeight(slot).
  void BackwardInput(int slot, const float* dy, float* dn, bool accumulate);
  void BackwardWeight(int slot);

 private:
  struct Context {
    int64_t N = 0;
    const float* n = nullptr;
    const float* dy = nullptr;
    kernels::Tensor ab;   // (N, 2F) = W1 n | W3 n
    kernels::Tensor h;    // (N, F)
    kernels::Tensor dh;   // (N, F)
    kernels::Tensor dab;  // (N, 2F)
  };
  ParamTable& table_;
  int64_t dim_, hidden_;
  int w1_, w2_;  // w3 follows w1
  std::vector<Context> contexts_;
};

}  // namespace tessera::trainer

#include "trainer/layers/swiglu_mlp.h"

#include "kernels/gemm.h"
#include "kernels/swiglu.h"
#include "trainer/layers/buffer.h"

namespace tessera::trainer {

using kernels::Trans;

SwigluMlp::SwigluMlp(ParamTable& table, const std::string& prefix, const std::string& suffix,
                     int64_t dim, int64_t hidden)
    : table_(table), dim_(dim), hidden_(hidden) {
  w1_ = table.add({prefix + "w1" + suffix, {hidden, dim}});
  table.add({prefix + "w3" + suffix, {hidden, dim}});
  w2_ = table.add({prefix + "w2" + suffix, {dim, hidden}});
}

void SwigluMlp::Forward(int slot, const float* n, float* y, int64_t N, bool accumulate) {
  if (slot >= static_cast<int>(contexts_.size())) contexts_.resize(slot + 1);
  Context& c = contexts_[slot];
  c.N = N;
  c.n = n;
  const int64_t D = dim_, F = hidden_;
  float* ab = ensure_floats(c.ab, N * 2 * F);
  float* h = ensure_floats(c.h, N * F);
  kernels::gemm<float>(Trans::kNo, Trans::kYes, N, 2 * F, D, 1.0f, n, D, table_.value_ptr(w1_), D,
                       0.0f, ab, 2 * F);
  kernels::swiglu_forward(h, ab, ab + F, 2 * F, N, F);
  kernels::gemm<float>(Trans::kNo, Trans::kYes, N, D, F, 1.0f, h, F, table_.value_ptr(w2_), F,
                       accumulate ? 1.0f : 0.0f, y, D);
}

void SwigluMlp::BackwardInput(int slot, const float* dy, float* dn, bool accumulate) {
  Context& c = contexts_.at(slot);
  c.dy = dy;
  const int64_t N = c.N, D = dim_, F = hidden_;
  float* dh = ensure_floats(c.dh, N * F);
  float* dab = ensure_floats(c.dab, N * 2 * F);
  const float* ab = c.ab.data<float>();
  kernels::gemm<float>(Trans::kNo, Trans::kNo, N, F, D, 1.0f, dy, D, table_.value_ptr(w2_), F, 0.0f,
                       dh, F);
  kernels::swiglu_backward(dab, dab + F, dh, ab, ab + F, 2 * F, N, F);
  kernels::gemm<float>(Trans::kNo, Trans::kNo, N, D, 2 * F, 1.0f, dab, 2 * F,
                       table_.value_ptr(w1_), D, accumulate ? 1.0f : 0.0f, dn, D);
}

void SwigluMlp::BackwardWeight(int slot) {
  Context& c = contexts_.at(slot);
  const int64_t N = c.N, D = dim_, F = hidden_;
  // dW2 (D, F) += dy^T · h
  kernels::gemm<float>(Trans::kYes, Trans::kNo, D, F, N, 1.0f, c.dy, D, c.h.data<float>(), F, 1.0f,
                       table_.grad_ptr(w2_), F);
  // d[W1; W3] (2F, D) += dab^T · n
  kernels::gemm<float>(Trans::kYes, Trans::kNo, 2 * F, D, N, 1.0f, c.dab.data<float>(), 2 * F, c.n,
                       D, 1.0f, table_.grad_ptr(w1_), D);
}

}  // namespace tessera::trainer

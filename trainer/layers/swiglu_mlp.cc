#include "trainer/layers/swiglu_mlp.h"

#include "trainer/layers/buffer.h"

namespace tessera::trainer {

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
  kernels::Backend& be = table_.backend();
  kernels::BackendOps<float>& ops = table_.ops();
  float* ab = ensure_floats(be, c.ab, N * 2 * F);
  float* h = ensure_floats(be, c.h, N * F);
  // ab (N, 2F) = n · [W1; W3]^T
  ops.linear_forward(ab, 2 * F, n, D, table_.value_ptr(w1_), N, D, 2 * F);
  ops.swiglu_forward(h, ab, ab + F, 2 * F, N, F);
  ops.linear_forward(y, D, h, F, table_.value_ptr(w2_), N, F, D, {.accumulate = accumulate});
}

void SwigluMlp::BackwardInput(int slot, const float* dy, float* dn, bool accumulate) {
  Context& c = contexts_.at(slot);
  c.dy = dy;
  const int64_t N = c.N, D = dim_, F = hidden_;
  kernels::Backend& be = table_.backend();
  kernels::BackendOps<float>& ops = table_.ops();
  float* dh = ensure_floats(be, c.dh, N * F);
  float* dab = ensure_floats(be, c.dab, N * 2 * F);
  const float* ab = c.ab.data<float>();
  ops.linear_backward_input(dh, F, dy, D, table_.value_ptr(w2_), N, F, D);
  ops.swiglu_backward(dab, dab + F, dh, ab, ab + F, 2 * F, N, F);
  ops.linear_backward_input(dn, D, dab, 2 * F, table_.value_ptr(w1_), N, D, 2 * F,
                            {.accumulate = accumulate});
}

void SwigluMlp::BackwardWeight(int slot) {
  Context& c = contexts_.at(slot);
  const int64_t N = c.N, D = dim_, F = hidden_;
  kernels::BackendOps<float>& ops = table_.ops();
  // dW2 (D, F) += dy^T · h
  ops.linear_backward_weight(table_.grad_ptr(w2_), c.dy, D, c.h.data<float>(), F, N, F, D);
  // d[W1; W3] (2F, D) += dab^T · n
  ops.linear_backward_weight(table_.grad_ptr(w1_), c.dab.data<float>(), 2 * F, c.n, D, N, D,
                             2 * F);
}

}  // namespace tessera::trainer

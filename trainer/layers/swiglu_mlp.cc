#include "trainer/layers/swiglu_mlp.h"

namespace tessera::trainer {

SwigluMlp::SwigluMlp(ParamTable& table, const std::string& prefix, const std::string& suffix,
                     int64_t dim, int64_t hidden, kernels::Precision precision)
    : table_(table), dim_(dim), hidden_(hidden), precision_(precision) {
  w1_ = table.add({prefix + "w1" + suffix, {hidden, dim}});
  table.add({prefix + "w3" + suffix, {hidden, dim}});
  w2_ = table.add({prefix + "w2" + suffix, {dim, hidden}});
}

SwigluMlp::Buffers SwigluMlp::Carve(ActivationArena& arena, int64_t N) const {
  const int64_t F = hidden_;
  Buffers b;
  b.ab = SavedActivation::Carve(arena, N, 2 * F, fp8());
  b.h = fp8() ? arena.take_transient<float>(N * F) : arena.take<float>(N * F);
  b.dh = arena.take<float>(N * F);
  b.dab = arena.take<float>(N * 2 * F);
  return b;
}

void SwigluMlp::Forward(const Buffers& b, const float* n, float* y, int64_t N,
                        bool accumulate) const {
  const int64_t D = dim_, F = hidden_;
  kernels::BackendOps<float>& ops = table_.ops();
  // ab (N, 2F) = n · [W1; W3]^T
  float* ab = b.ab.values;
  ops.linear_forward(ab, 2 * F, n, D, table_.value_ptr(w1_), N, D, 2 * F,
                     {.precision = precision_});
  ops.swiglu_forward(b.h, ab, ab + F, 2 * F, N, F);
  ops.linear_forward(y, D, b.h, F, table_.value_ptr(w2_), N, F, D, {.accumulate = accumulate, .precision = precision_});
  b.ab.Save(ops, N);
}

void SwigluMlp::BackwardInput(const Buffers& b, const float* dy, float* dn, int64_t N,
                              bool accumulate) const {
  const int64_t D = dim_, F = hidden_;
  kernels::BackendOps<float>& ops = table_.ops();
  ops.linear_backward_input(b.dh, F, dy, D, table_.value_ptr(w2_), N, F, D, {.precision = precision_});
  const float* ab = b.ab.Load(ops, N);
  ops.swiglu_backward(b.dab, b.dab + F, b.dh, ab, ab + F, 2 * F, N, F);
  ops.linear_backward_input(dn, D, b.dab, 2 * F, table_.value_ptr(w1_), N, D, 2 * F,
                            {.accumulate = accumulate, .precision = precision_});
}

void SwigluMlp::BackwardWeight(const Buffers& b, const float* n, const float* dy,
                               int64_t N) const {
  const int64_t D = dim_, F = hidden_;
  kernels::BackendOps<float>& ops = table_.ops();
  if (fp8()) {  // h from the kept SwiGLU input
    const float* ab = b.ab.Load(ops, N);
    ops.swiglu_forward(b.h, ab, ab + F, 2 * F, N, F);
  }
  // dW2 (D, F) += dy^T · h
  ops.linear_backward_weight(table_.grad_ptr(w2_), dy, D, b.h, F, N, F, D, precision_);
  // d[W1; W3] (2F, D) += dab^T · n
  ops.linear_backward_weight(table_.grad_ptr(w1_), b.dab, 2 * F, n, D, N, D, 2 * F, precision_);
}

}  // namespace tessera::trainer

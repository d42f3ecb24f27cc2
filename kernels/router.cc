#include "kernels/router.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu_loop.h"
#include "kernels/math/router.h"

namespace tessera::kernels {

namespace {

void check_idx(const int32_t* expert_idx, int64_t count, int64_t E, const char* op) {
  for (int64_t i = 0; i < count; ++i) {
    if (expert_idx[i] < 0 || expert_idx[i] >= E) {
      throw std::out_of_range(std::string(op) + ": expert index " + std::to_string(expert_idx[i]) +
                              " at " + std::to_string(i) + " is outside [0, " + std::to_string(E) +
                              ")");
    }
  }
}

// f_e = E/(k T) * (tokens of sequence b routed to e).
template <typename A>
void sequence_f(A* f, const int32_t* expert_idx, int64_t b, int64_t T_len, int64_t E,
                int64_t k) {
  for (int64_t e = 0; e < E; ++e) f[e] = 0;
  const int32_t* idx = expert_idx + b * T_len * k;
  for (int64_t i = 0; i < T_len * k; ++i) f[idx[i]] += A(1);
  const A norm = A(E) / A(k * T_len);
  for (int64_t e = 0; e < E; ++e) f[e] *= norm;
}

}  // namespace

void check_router_shape(const RouterShape& s, const char* prefix) {
  auto fail = [prefix](const std::string& what) {
    throw std::invalid_argument(std::string(prefix) + "RouterShape: " + what);
  };
  if (s.n_experts < 1 || s.n_experts > math::kRouterMaxExperts) {
    fail("n_experts=" + std::to_string(s.n_experts) + " must be in [1, " +
         std::to_string(math::kRouterMaxExperts) + "]");
  }
  if (s.n_group < 1 || s.n_experts % s.n_group != 0) {
    fail("n_group=" + std::to_string(s.n_group) + " must divide n_experts=" +
         std::to_string(s.n_experts));
  }
  if (s.n_group > 1 && s.n_experts / s.n_group < 2) {
    fail("n_group=" + std::to_string(s.n_group) + " leaves fewer than 2 experts per group");
  }
  if (s.topk_group < 1 || s.topk_group > s.n_group) {
    fail("topk_group=" + std::to_string(s.topk_group) + " must be in [1, n_group=" +
         std::to_string(s.n_group) + "]");
  }
  const int64_t reachable = s.topk_group * (s.n_experts / s.n_group);
  if (s.top_k < 1 || s.top_k > reachable) {
    fail("top_k=" + std::to_string(s.top_k) + " must be in [1, topk_group * n_experts / n_group=" +
         std::to_string(reachable) + "]");
  }
}

template <typename T>
void router_forward(T* scores, int32_t* expert_idx, T* gates, const T* logits, const T* bias,
                    int64_t N, const RouterShape& shape) {
  check_router_shape(shape);
  const int64_t E = shape.n_experts, k = shape.top_k;
#pragma omp parallel for if (N * E * k >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    math::router_forward_row(scores + n * E, expert_idx + n * k, gates + n * k, logits + n * E,
                             bias, E, k, shape.n_group, shape.topk_group,
                             static_cast<T>(shape.route_scale));
  }
}

template <typename T>
void router_backward(T* dlogits, const T* dgates, const T* dscores_extra, const T* scores,
                     const int32_t* expert_idx, int64_t N, const RouterShape& shape) {
  check_router_shape(shape);
  const int64_t E = shape.n_experts, k = shape.top_k;
  check_idx(expert_idx, N * k, E, "router_backward");
#pragma omp parallel for if (N * E >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    math::router_backward_row(dlogits + n * E, dgates + n * k,
                              dscores_extra ? dscores_extra + n * E : nullptr, scores + n * E,
                              expert_idx + n * k, E, k, static_cast<T>(shape.route_scale));
  }
}

// Sequences are summed in order, tokens in order inside each: deterministic.
template <typename T>
double seq_balance_loss_forward(const T* scores, const int32_t* expert_idx, int64_t B,
                                int64_t T_len, int64_t E, int64_t k, double alpha) {
  check_idx(expert_idx, B * T_len * k, E, "seq_balance_loss_forward");
  std::vector<double> f(E);
  double total = 0;
  for (int64_t b = 0; b < B; ++b) {
    sequence_f(f.data(), expert_idx, b, T_len, E, k);
    double seq = 0;
    for (int64_t t = 0; t < T_len; ++t) {
      seq += math::balance_token_term(scores + (b * T_len + t) * E, f.data(), E);
    }
    total += alpha * seq / static_cast<double>(T_len);
  }
  return total;
}

template <typename T>
void seq_balance_loss_backward(T* dscores, const T* scores, const int32_t* expert_idx, int64_t B,
                               int64_t T_len, int64_t E, int64_t k, double alpha, T scale) {
  check_idx(expert_idx, B * T_len * k, E, "seq_balance_loss_backward");
  const T coef = static_cast<T>(alpha / static_cast<double>(T_len)) * scale;
  std::vector<T> f(B * E);
  for (int64_t b = 0; b < B; ++b) sequence_f(f.data() + b * E, expert_idx, b, T_len, E, k);
  const int64_t N = B * T_len;
#pragma omp parallel for if (N * E >= cpu::kMinParallelWork)
  for (int64_t n = 0; n < N; ++n) {
    math::balance_token_backward(dscores + n * E, scores + n * E, f.data() + (n / T_len) * E, E,
                                 coef);
  }
}

void router_count_load(int64_t* counts, const int32_t* expert_idx, int64_t N, int64_t k,
                       int64_t E) {
  check_idx(expert_idx, N * k, E, "router_count_load");
  for (int64_t i = 0; i < N * k; ++i) ++counts[expert_idx[i]];
}

#define TESSERA_INSTANTIATE(T)                                                                 \
  template void router_forward<T>(T*, int32_t*, T*, const T*, const T*, int64_t,              \
                                  const RouterShape&);                                        \
  template void router_backward<T>(T*, const T*, const T*, const T*, const int32_t*, int64_t, \
                                   const RouterShape&);                                       \
  template double seq_balance_loss_forward<T>(const T*, const int32_t*, int64_t, int64_t,     \
                                              int64_t, int64_t, double);                      \
  template void seq_balance_loss_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t,  \
                                             int64_t, int64_t, double, T);
TESSERA_INSTANTIATE(float)
TESSERA_INSTANTIATE(double)
#undef TESSERA_INSTANTIATE

}  // namespace tessera::kernels

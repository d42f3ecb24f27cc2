// DeepSeek-V3 router row math (the `Gate` module): sigmoid scores, group-limited top-k on the
// biased scores, gates from the unbiased scores; plus the per-token balance-loss terms.
// Selection scans with strict '>' so ties go to the lower index, on every device alike.
#pragma once

#include <cstdint>

#include "kernels/math/scalar.h"

namespace tessera::kernels::math {

// Fixed-size locals bound the expert count (checked on the host).
constexpr int64_t kRouterMaxExperts = 256;

// One token. scores = sigmoid(logits); idx lists k experts in descending biased score;
// gates = route_scale * s[idx] / sum(s[idx]).
template <typename T>
TESSERA_HD void router_forward_row(T* scores, int32_t* idx, T* gates, const T* logits,
                                   const T* bias, int64_t E, int64_t k, int64_t n_group,
                                   int64_t topk_group, T route_scale) {
  T biased[kRouterMaxExperts];
  bool allowed[kRouterMaxExperts];
  for (int64_t e = 0; e < E; ++e) {
    const T s = sigmoid(logits[e]);
    scores[e] = s;
    biased[e] = s + bias[e];
    allowed[e] = true;
  }
  if (n_group > 1) {
    // Group score: sum of the group's two largest biased scores.
    const int64_t gsize = E / n_group;
    T gscore[kRouterMaxExperts];
    bool kept[kRouterMaxExperts];
    for (int64_t g = 0; g < n_group; ++g) {
      const T* b = biased + g * gsize;
      T m1 = b[0] > b[1] ? b[0] : b[1];
      T m2 = b[0] > b[1] ? b[1] : b[0];
      for (int64_t i = 2; i < gsize; ++i) {
        if (b[i] > m1) {
          m2 = m1;
          m1 = b[i];
        } else if (b[i] > m2) {
          m2 = b[i];
        }
      }
      gscore[g] = m1 + m2;
      kept[g] = false;
    }
    for (int64_t r = 0; r < topk_group; ++r) {
      int64_t best = -1;
      for (int64_t g = 0; g < n_group; ++g) {
        if (!kept[g] && (best < 0 || gscore[g] > gscore[best])) best = g;
      }
      kept[best] = true;
    }
    for (int64_t e = 0; e < E; ++e) allowed[e] = kept[e / gsize];
  }
  T sum = 0;
  for (int64_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t e = 0; e < E; ++e) {
      if (allowed[e] && (best < 0 || biased[e] > biased[best])) best = e;
    }
    idx[j] = static_cast<int32_t>(best);
    allowed[best] = false;
    sum += scores[best];
  }
  for (int64_t j = 0; j < k; ++j) gates[j] = scores[idx[j]] / sum * route_scale;
}

// One token, selection held fixed. With S = sum_j s[idx_j] and g_j = rs * s[idx_j] / S:
// ds[idx_i] += rs / S * (dg_i - sum_j dg_j s[idx_j] / S); then dlogits = ds * s * (1 - s).
template <typename T>
TESSERA_HD void router_backward_row(T* dlogits, const T* dgates, const T* dscores_extra,
                                    const T* scores, const int32_t* idx, int64_t E, int64_t k,
                                    T route_scale) {
  for (int64_t e = 0; e < E; ++e) dlogits[e] = dscores_extra ? dscores_extra[e] : T(0);
  T S = 0;
  for (int64_t j = 0; j < k; ++j) S += scores[idx[j]];
  T dot = 0;
  for (int64_t j = 0; j < k; ++j) dot += dgates[j] * scores[idx[j]];
  dot /= S;
  const T coef = route_scale / S;
  for (int64_t j = 0; j < k; ++j) dlogits[idx[j]] += coef * (dgates[j] - dot);
  for (int64_t e = 0; e < E; ++e) dlogits[e] *= scores[e] * (T(1) - scores[e]);
}

// One token's balance-loss term: sum_e f_e * s_e / sum_j s_j (caller applies alpha / T).
template <typename T, typename A>
TESSERA_HD A balance_token_term(const T* s, const A* f, int64_t E) {
  A S = 0;
  A fs = 0;
  for (int64_t e = 0; e < E; ++e) {
    S += A(s[e]);
    fs += f[e] * A(s[e]);
  }
  return fs / S;
}

// Its gradient times coef, added: ds_e += coef * (f_e / S - sum_j f_j s_j / S^2).
template <typename T>
TESSERA_HD void balance_token_backward(T* ds, const T* s, const T* f, int64_t E, T coef) {
  T S = 0;
  T fs = 0;
  for (int64_t e = 0; e < E; ++e) {
    S += s[e];
    fs += f[e] * s[e];
  }
  const T mean_f = fs / S;
  for (int64_t e = 0; e < E; ++e) ds[e] += coef * (f[e] - mean_f) / S;
}

}  // namespace tessera::kernels::math

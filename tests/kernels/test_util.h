// Helpers for the kernels tests: seeded random data, central finite differences, and error
// measures. Gradient checks run in double: L(x) = <dy, f(x)> for a random dy, so dL/dx is what
// the backward must return, and the finite-difference value is computed independently of it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "kernels/gemm.h"

namespace tessera::kernels::testing {

inline std::vector<double> random_vector(int64_t n, uint64_t seed, double lo = -1.0,
                                         double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Values exactly representable in float, so fp32 and fp64 runs start from the same inputs.
inline std::vector<double> float_exact(std::vector<double> v) {
  for (auto& x : v) x = static_cast<double>(static_cast<float>(x));
  return v;
}

inline std::vector<float> to_float(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// d loss / d x[i] by central differences for every i in `indices` (all of x when empty);
// x is perturbed in place and restored. Entries not in `indices` are 0.
inline std::vector<double> numeric_grad(std::vector<double>& x,
                                        const std::function<double()>& loss,
                                        const std::vector<int64_t>& indices = {},
                                        double h = 1e-5) {
  std::vector<double> g(x.size(), 0.0);
  auto one = [&](int64_t i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double lp = loss();
    x[i] = x0 - h;
    const double lm = loss();
    x[i] = x0;
    g[i] = (lp - lm) / (2 * h);
  };
  if (indices.empty()) {
    for (int64_t i = 0; i < static_cast<int64_t>(x.size()); ++i) one(i);
  } else {
    for (int64_t i : indices) one(i);
  }
  return g;
}

// max |a - b| / max |b| over the given indices (all when empty): an error relative to the
// gradient's scale, so near-zero entries do not blow it up.
template <typename A, typename B>
double rel_error(const std::vector<A>& a, const std::vector<B>& b,
                 const std::vector<int64_t>& indices = {}) {
  double num = 0, den = 0;
  auto one = [&](int64_t i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  };
  if (indices.empty()) {
    for (int64_t i = 0; i < static_cast<int64_t>(b.size()); ++i) one(i);
  } else {
    for (int64_t i : indices) one(i);
  }
  return num / std::max(den, 1e-300);
}

// Indices of the first `width` columns of `rows` rows with row stride `ld` (skipping padding).
inline std::vector<int64_t> strided_indices(int64_t rows, int64_t width, int64_t ld,
                                            int64_t offset = 0) {
  std::vector<int64_t> idx;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < width; ++c) idx.push_back(offset + r * ld + c);
  }
  return idx;
}

// The complement of `indices` in [0, n).
inline std::vector<int64_t> other_indices(int64_t n, const std::vector<int64_t>& indices) {
  std::vector<bool> in(n, false);
  for (int64_t i : indices) in[i] = true;
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n; ++i) {
    if (!in[i]) out.push_back(i);
  }
  return out;
}

constexpr double kFdTolerance = 1e-6;     // finite differences vs analytic, double
constexpr double kF32Tolerance = 1e-5;    // fp32 op vs fp64 op on the same inputs

// Restores the CPU thread count when a test changes it.
class ThreadGuard {
 public:
  ThreadGuard() : saved_(cpu_threads()) {}
  ~ThreadGuard() { set_cpu_threads(saved_); }
  ThreadGuard(const ThreadGuard&) = delete;
  ThreadGuard& operator=(const ThreadGuard&) = delete;

 private:
  int saved_;
};

}  // namespace tessera::kernels::testing

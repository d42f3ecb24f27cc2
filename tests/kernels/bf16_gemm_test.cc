// The CPU backend's two bf16 GEMMs (kernels/bf16_gemm_choice.h): oneDNN's native bf16 matmul and
// the emulation (bf16-rounded copies, fp32 sgemm). Both multiply the same bf16-rounded inputs,
// whose products are exact in fp32, and add them in fp32, so each is within fp32 summation error
// of the exact (fp64) GEMM of the rounded inputs: |got - exact| <= (K + 2) eps (sum_k |a b| +
// |c0|), eps = 2^-23 (twice the unit roundoff, covering the output's accumulate and both GEMMs
// when they are compared with each other). The linear op's three GEMMs (forward, dgrad, wgrad),
// overwrite and accumulate, ragged K and sizes off multiples of 16, strided operands and outputs.
// The native tests skip, saying so, where the CPU has no bf16.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/bf16_gemm_choice.h"
#include "kernels/cpu_backend.h"
#include "kernels/math/low_precision.h"
#include "kernels/onednn_bf16_gemm.h"
#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

#define SKIP_WITHOUT_NATIVE_BF16()                                                            \
  if (!cpu_has_native_bf16())                                                                 \
  GTEST_SKIP() << "this CPU has no native bf16 GEMM (oneDNN's ISA lacks avx512_core_bf16): " \
                  "only the emulation runs here"

std::vector<float> random_floats(int64_t n, uint64_t seed, double scale) {
  return testing::to_float(testing::random_vector(n, seed, -scale, scale));
}

// A linear map's shapes as the blocks issue them: N tokens, I in, O out; activations and outputs
// with `pad` extra columns (row strides I + pad, O + pad: fused or sliced buffers).
struct LinearShape {
  const char* what;
  int64_t N, I, O, pad;
};
const LinearShape kShapes[] = {
    {"multiples of 16", 64, 128, 96, 0},
    {"ragged K and sizes", 37, 33, 19, 3},
    {"odd K past 128", 50, 129, 17, 5},
    {"one token", 1, 300, 7, 1},
    {"larger", 200, 300, 130, 0},
};

// One GEMM as the test sees it: C (m, n) [ldc] = A·B^T + beta C, A(i, k) and B(j, k) read
// through the operands' strides, as stored.
struct GemmCase {
  int64_t m, n, k, ldc;
  std::function<float(int64_t, int64_t)> a, b;
  bool accumulate;
};

struct Check {
  double max_ratio = 0;  // max |got - want| / bound
  int64_t bad = 0;
};

// got (m, n) [ldc] against the fp64 GEMM of the bf16-rounded operands plus c0, within the bound.
Check against_exact(const GemmCase& g, const std::vector<float>& c0,
                    const std::vector<float>& got) {
  Check r;
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      const double c = g.accumulate ? c0[i * g.ldc + j] : 0.0;
      double exact = c, magnitude = std::fabs(c);
      for (int64_t kk = 0; kk < g.k; ++kk) {
        const double p = static_cast<double>(math::round_to_bf16(g.a(i, kk))) *
                         math::round_to_bf16(g.b(j, kk));
        exact += p;
        magnitude += std::fabs(p);
      }
      const double bound = (g.k + 2) * static_cast<double>(FLT_EPSILON) * magnitude;
      const double err = std::fabs(got[i * g.ldc + j] - exact);
      r.max_ratio = std::max(r.max_ratio, bound > 0 ? err / bound : err);
      if (!(err <= bound)) ++r.bad;
    }
  }
  return r;
}

// The same bound between two results of the same GEMM.
Check against_each_other(const GemmCase& g, const std::vector<float>& c0,
                         const std::vector<float>& x, const std::vector<float>& y) {
  Check r;
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      double magnitude = g.accumulate ? std::fabs(c0[i * g.ldc + j]) : 0.0;
      for (int64_t kk = 0; kk < g.k; ++kk) {
        magnitude += std::fabs(static_cast<double>(math::round_to_bf16(g.a(i, kk))) *
                               math::round_to_bf16(g.b(j, kk)));
      }
      const double bound = (g.k + 2) * static_cast<double>(FLT_EPSILON) * magnitude;
      const double err = std::fabs(static_cast<double>(x[i * g.ldc + j]) - y[i * g.ldc + j]);
      r.max_ratio = std::max(r.max_ratio, bound > 0 ? err / bound : err);
      if (!(err <= bound)) ++r.bad;
    }
  }
  return r;
}

// The three GEMMs of one linear map on a backend, with their outputs (padding columns set to a
// sentinel that must survive).
constexpr float kSentinel = 7.0f;
struct LinearRun {
  LinearShape s;
  bool accumulate;
  std::vector<float> x, W, dy;     // x (N, I + pad), W (O, I), dy (N, O + pad)
  std::vector<float> y0, dx0, dW0;  // outputs before (accumulate: random values)

  LinearRun(const LinearShape& shape, bool acc) : s(shape), accumulate(acc) {
    const int64_t ldx = s.I + s.pad, lddy = s.O + s.pad;
    x = random_floats(s.N * ldx, 1, 2.0);
    W = random_floats(s.O * s.I, 2, 0.1);
    dy = random_floats(s.N * lddy, 3, 0.01);
    y0 = random_floats(s.N * lddy, 4, 1.0);
    dx0 = random_floats(s.N * ldx, 5, 1.0);
    dW0 = random_floats(s.O * s.I, 6, 0.1);
    for (int64_t r = 0; r < s.N; ++r) {
      for (int64_t c = s.O; c < lddy; ++c) y0[r * lddy + c] = kSentinel;
      for (int64_t c = s.I; c < ldx; ++c) dx0[r * ldx + c] = kSentinel;
    }
  }
  GemmCase forward() const {
    const int64_t ldx = s.I + s.pad;
    return {s.N, s.O, s.I, s.O + s.pad,
            [this, ldx](int64_t i, int64_t k) { return x[i * ldx + k]; },
            [this](int64_t j, int64_t k) { return W[j * s.I + k]; }, accumulate};
  }
  GemmCase dgrad() const {
    const int64_t lddy = s.O + s.pad;
    return {s.N, s.I, s.O, s.I + s.pad,
            [this, lddy](int64_t i, int64_t k) { return dy[i * lddy + k]; },
            [this](int64_t j, int64_t k) { return W[k * s.I + j]; }, accumulate};
  }
  GemmCase wgrad() const {  // always accumulates (parameter gradients add up)
    const int64_t ldx = s.I + s.pad, lddy = s.O + s.pad;
    return {s.O, s.I, s.N, s.I, [this, lddy](int64_t i, int64_t k) { return dy[k * lddy + i]; },
            [this, ldx](int64_t j, int64_t k) { return x[k * ldx + j]; }, true};
  }

  struct Out {
    std::vector<float> y, dx, dW;
  };
  Out run(CpuBackend& backend) const {
    BackendOps<float>& ops = backend.ops<float>();
    const LinearOptions o{.accumulate = accumulate, .precision = Precision::kBF16};
    const int64_t ldx = s.I + s.pad, lddy = s.O + s.pad;
    Out out{y0, dx0, dW0};
    ops.linear_forward(out.y.data(), lddy, x.data(), ldx, W.data(), s.N, s.I, s.O, o);
    ops.linear_backward_input(out.dx.data(), ldx, dy.data(), lddy, W.data(), s.N, s.I, s.O, o);
    ops.linear_backward_weight(out.dW.data(), dy.data(), lddy, x.data(), ldx, s.N, s.I, s.O,
                               Precision::kBF16);
    return out;
  }
  void expect_padding_kept(const Out& out) const {
    const int64_t ldx = s.I + s.pad, lddy = s.O + s.pad;
    for (int64_t r = 0; r < s.N; ++r) {
      for (int64_t c = s.O; c < lddy; ++c) ASSERT_EQ(out.y[r * lddy + c], kSentinel);
      for (int64_t c = s.I; c < ldx; ++c) ASSERT_EQ(out.dx[r * ldx + c], kSentinel);
    }
  }
};

void expect_within_exact_bound(Bf16Gemm which) {
  CpuBackend backend(which);
  for (const LinearShape& s : kShapes) {
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE(std::string(s.what) + (accumulate ? ", accumulate" : ", overwrite"));
      const LinearRun run(s, accumulate);
      const LinearRun::Out out = run.run(backend);
      run.expect_padding_kept(out);
      const Check fwd = against_exact(run.forward(), run.y0, out.y);
      const Check dgrad = against_exact(run.dgrad(), run.dx0, out.dx);
      const Check wgrad = against_exact(run.wgrad(), run.dW0, out.dW);
      EXPECT_EQ(fwd.bad, 0) << "forward, max error/bound " << fwd.max_ratio;
      EXPECT_EQ(dgrad.bad, 0) << "dgrad, max error/bound " << dgrad.max_ratio;
      EXPECT_EQ(wgrad.bad, 0) << "wgrad, max error/bound " << wgrad.max_ratio;
    }
  }
}

TEST(Bf16LinearGemm, NativeIsTheExactGemmOfRoundedInputsToFp32Summation) {
  SKIP_WITHOUT_NATIVE_BF16();
  expect_within_exact_bound(Bf16Gemm::kNative);
}

TEST(Bf16LinearGemm, EmulationIsTheExactGemmOfRoundedInputsToFp32Summation) {
  expect_within_exact_bound(Bf16Gemm::kEmulated);
}

TEST(Bf16LinearGemm, NativeAndEmulationDifferOnlyBySummationOrder) {
  SKIP_WITHOUT_NATIVE_BF16();
  CpuBackend native(Bf16Gemm::kNative), emulated(Bf16Gemm::kEmulated);
  for (const LinearShape& s : kShapes) {
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE(std::string(s.what) + (accumulate ? ", accumulate" : ", overwrite"));
      const LinearRun run(s, accumulate);
      const LinearRun::Out a = run.run(native), b = run.run(emulated);
      EXPECT_EQ(against_each_other(run.forward(), run.y0, a.y, b.y).bad, 0) << "forward";
      EXPECT_EQ(against_each_other(run.dgrad(), run.dx0, a.dx, b.dx).bad, 0) << "dgrad";
      EXPECT_EQ(against_each_other(run.wgrad(), run.dW0, a.dW, b.dW).bad, 0) << "wgrad";
    }
  }
}

// bf16 rounding really happens on the native path: inputs that are not bf16 values (1 + 2^-8
// ties to 1, 1 + 3 * 2^-8 to 1 + 2^-6), and exact small sums come out exact.
TEST(Bf16LinearGemm, NativeRoundsItsInputsToNearestEven) {
  SKIP_WITHOUT_NATIVE_BF16();
  OneDnnBf16Gemm gemm;
  const float a[2] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f};
  const float b[2] = {1.0f, 1.0f};
  float c = -1.0f;
  gemm.run(1, 1, 2, a, 2, Trans::kNo, b, 2, Trans::kNo, 0.0f, &c, 1);
  EXPECT_EQ(c, 1.0f + (1.0f + 0x1p-6f));
}

// A real bf16 implementation, not oneDNN's reference loops, and one primitive per shape.
TEST(Bf16LinearGemm, NativeUsesAJitKernelAndCachesItsPrimitives) {
  SKIP_WITHOUT_NATIVE_BF16();
  OneDnnBf16Gemm gemm;
  const std::vector<float> a = random_floats(64 * 96, 7, 1.0), b = random_floats(48 * 96, 8, 1.0);
  std::vector<float> c(64 * 48);
  for (int rep = 0; rep < 3; ++rep) {
    gemm.run(64, 48, 96, a.data(), 96, Trans::kNo, b.data(), 96, Trans::kNo, 0.0f, c.data(), 48);
  }
  EXPECT_EQ(gemm.primitives_created(), 1);
  EXPECT_EQ(gemm.last_implementation().rfind("ref", 0), std::string::npos)
      << gemm.last_implementation();
  gemm.run(64, 48, 96, a.data(), 96, Trans::kNo, b.data(), 96, Trans::kNo, 1.0f, c.data(), 48);
  EXPECT_EQ(gemm.primitives_created(), 2);  // accumulate is another primitive
}

TEST(Bf16LinearGemm, TheBackendSaysWhichGemmItRuns) {
  EXPECT_NE(CpuBackend(Bf16Gemm::kEmulated).capabilities().name.find("emulated bf16 gemm"),
            std::string::npos);
  if (cpu_has_native_bf16()) {
    EXPECT_NE(CpuBackend(Bf16Gemm::kNative).capabilities().name.find("native bf16 gemm"),
              std::string::npos);
  } else {
    EXPECT_THROW(CpuBackend{Bf16Gemm::kNative}, std::invalid_argument);
  }
}

TEST(Bf16GemmChoice, TheCpuDecidesUnlessTheEnvironmentSays) {
  EXPECT_EQ(choose_bf16_gemm(nullptr, true), Bf16Gemm::kNative);
  EXPECT_EQ(choose_bf16_gemm("", true), Bf16Gemm::kNative);
  EXPECT_EQ(choose_bf16_gemm(nullptr, false), Bf16Gemm::kEmulated);
  EXPECT_EQ(choose_bf16_gemm("emulated", true), Bf16Gemm::kEmulated);
  EXPECT_EQ(choose_bf16_gemm("emulated", false), Bf16Gemm::kEmulated);
  EXPECT_EQ(choose_bf16_gemm("native", true), Bf16Gemm::kNative);
}

TEST(Bf16GemmChoice, NativeWithoutBf16AndUnknownValuesAreErrorsNamingTheVariable) {
  for (const char* value : {"native", "fast", "Native"}) {
    try {
      choose_bf16_gemm(value, std::string(value) == "native" ? false : true);
      ADD_FAILURE() << value << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("TESSERA_BF16_GEMM"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace tessera::kernels

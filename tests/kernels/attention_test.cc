#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "tests/kernels/test_util.h"

namespace tessera::kernels {
namespace {

using testing::random_vector;
using testing::rel_error;

// q, k, v read in place from a fused (B, T, 3*H*hd + pad) buffer; out and the gradients use
// other padded strides.
constexpr int64_t B = 2, T = 5, H = 2, hd = 4, D = H * hd;
constexpr int64_t ld_qkv = 3 * D + 3, ld_out = D + 2, ld_dqkv = 3 * D + 5;

struct Buffers {
  std::vector<double> out = std::vector<double>(B * T * ld_out, 0.0);
  std::vector<double> lse = std::vector<double>(B * H * T, 0.0);
};

Buffers run_forward(const std::vector<double>& qkv) {
  Buffers r;
  attention_forward(r.out.data(), ld_out, r.lse.data(), qkv.data(), qkv.data() + D,
                    qkv.data() + 2 * D, ld_qkv, B, T, H, hd);
  return r;
}

TEST(Attention, ForwardMatchesNaiveCausalSoftmax) {
  const auto qkv = random_vector(B * T * ld_qkv, 1, -2.0, 2.0);
  const Buffers r = run_forward(qkv);
  const double scale = 1.0 / std::sqrt(double(hd));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        const double* qt = qkv.data() + (b * T + t) * ld_qkv + h * hd;
        std::vector<double> w(t + 1);
        double z = 0;
        for (int64_t j = 0; j <= t; ++j) {
          const double* kj = qkv.data() + (b * T + j) * ld_qkv + D + h * hd;
          double s = 0;
          for (int64_t d = 0; d < hd; ++d) s += qt[d] * kj[d];
          w[j] = std::exp(s * scale);  // no max trick: inputs are small
          z += w[j];
        }
        EXPECT_NEAR(r.lse[(b * H + h) * T + t], std::log(z), 1e-14) << b << h << t;
        for (int64_t d = 0; d < hd; ++d) {
          double o = 0;
          for (int64_t j = 0; j <= t; ++j) {
            o += w[j] / z * qkv[(b * T + j) * ld_qkv + 2 * D + h * hd + d];
          }
          EXPECT_NEAR(r.out[(b * T + t) * ld_out + h * hd + d], o, 1e-14);
        }
      }
    }
  }
}

TEST(Attention, BackwardMatchesFiniteDifferences) {
  auto qkv = random_vector(B * T * ld_qkv, 2, -2.0, 2.0);
  const auto dout = random_vector(B * T * ld_out, 3);
  const auto out_valid = testing::strided_indices(B * T, D, ld_out);
  auto loss = [&] {
    const Buffers r = run_forward(qkv);
    double l = 0;
    for (int64_t i : out_valid) l += dout[i] * r.out[i];
    return l;
  };
  const auto in_valid = testing::strided_indices(B * T, 3 * D, ld_qkv);
  const auto g = testing::numeric_grad(qkv, loss, in_valid);

  const Buffers r = run_forward(qkv);
  constexpr double kSentinel = -777.0;
  std::vector<double> dqkv(B * T * ld_dqkv, kSentinel), scratch(B * H * T);
  attention_backward(dqkv.data(), dqkv.data() + D, dqkv.data() + 2 * D, ld_dqkv, scratch.data(),
                     dout.data(), ld_out, r.lse.data(), qkv.data(), qkv.data() + D,
                     qkv.data() + 2 * D, ld_qkv, B, T, H, hd);
  // scratch receives D = rowsum(dO * O), the CUDA kernels' definition of it.
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        double d = 0;
        for (int64_t c = 0; c < hd; ++c) {
          d += dout[(b * T + t) * ld_out + h * hd + c] * r.out[(b * T + t) * ld_out + h * hd + c];
        }
        EXPECT_NEAR(scratch[(b * H + h) * T + t], d, 1e-13) << b << h << t;
      }
    }
  }
  // Re-index the analytic gradient from the ld_dqkv layout into the ld_qkv layout.
  std::vector<double> analytic(qkv.size(), 0.0);
  for (int64_t row = 0; row < B * T; ++row) {
    for (int64_t c = 0; c < 3 * D; ++c) analytic[row * ld_qkv + c] = dqkv[row * ld_dqkv + c];
    for (int64_t c = 3 * D; c < ld_dqkv; ++c) EXPECT_EQ(dqkv[row * ld_dqkv + c], kSentinel);
  }
  for (int part = 0; part < 3; ++part) {
    SCOPED_TRACE(part == 0 ? "dq" : part == 1 ? "dk" : "dv");
    const auto idx = testing::strided_indices(B * T, D, ld_qkv, part * D);
    EXPECT_LE(rel_error(analytic, g, idx), testing::kFdTolerance);
  }
}

// Forward and backward in float and in double on the same (float-exact) inputs of the file's
// shape; the relative error of float's out, lse and gradients.
struct Fp32Errors {
  double out, lse, grad;
  bool finite;
};

Fp32Errors fp32_against_fp64(const std::vector<double>& qkv, const std::vector<double>& dout) {
  const auto qkvf = testing::to_float(qkv);
  const auto doutf = testing::to_float(dout);
  const Buffers r = run_forward(qkv);
  std::vector<float> outf(B * T * ld_out, 0.0f), lsef(B * H * T);
  attention_forward(outf.data(), ld_out, lsef.data(), qkvf.data(), qkvf.data() + D,
                    qkvf.data() + 2 * D, ld_qkv, B, T, H, hd);
  std::vector<double> dqkv(B * T * ld_dqkv, 0.0), scratch(B * H * T);
  std::vector<float> dqkvf(B * T * ld_dqkv, 0.0f), scratchf(B * H * T);
  attention_backward(dqkv.data(), dqkv.data() + D, dqkv.data() + 2 * D, ld_dqkv, scratch.data(),
                     dout.data(), ld_out, r.lse.data(), qkv.data(), qkv.data() + D,
                     qkv.data() + 2 * D, ld_qkv, B, T, H, hd);
  attention_backward(dqkvf.data(), dqkvf.data() + D, dqkvf.data() + 2 * D, ld_dqkv,
                     scratchf.data(), doutf.data(), ld_out, lsef.data(), qkvf.data(),
                     qkvf.data() + D, qkvf.data() + 2 * D, ld_qkv, B, T, H, hd);
  bool finite = true;
  for (const auto* v : {&outf, &lsef, &dqkvf}) {
    for (float x : *v) finite = finite && std::isfinite(x);
  }
  return {rel_error(outf, r.out), rel_error(lsef, r.lse), rel_error(dqkvf, dqkv), finite};
}

TEST(Attention, Fp32MatchesFp64) {
  const auto qkv = testing::float_exact(random_vector(B * T * ld_qkv, 4, -2.0, 2.0));
  const auto dout = testing::float_exact(random_vector(B * T * ld_out, 5));
  const Fp32Errors e = fp32_against_fp64(qkv, dout);
  EXPECT_LE(e.out, testing::kF32Tolerance);
  EXPECT_LE(e.lse, testing::kF32Tolerance);
  EXPECT_LE(e.grad, testing::kF32Tolerance);
}

// Float's fast paths (vector tiles of 32 and 16 lanes, 8 x 8 transposes) on a head of 56 (32 + 16
// lanes and 8 left over) and 70 positions (three query blocks, the last of 6 queries), against
// double on the same inputs; double itself is checked against finite differences above and below.
TEST(Attention, Fp32WideHeadsMatchFp64) {
  constexpr int64_t TW = 70, HW = 2, hdw = 56, DW = HW * hdw, ldw = 3 * DW + 8;
  const auto qkv = testing::float_exact(random_vector(TW * ldw, 9, -1.0, 1.0));
  const auto dout = testing::float_exact(random_vector(TW * DW, 10));
  const auto qkvf = testing::to_float(qkv);
  const auto doutf = testing::to_float(dout);
  std::vector<double> out(TW * DW), lse(HW * TW), dqkv(TW * ldw), scratch(HW * TW);
  std::vector<float> outf(TW * DW), lsef(HW * TW), dqkvf(TW * ldw), scratchf(HW * TW);
  attention_forward(out.data(), DW, lse.data(), qkv.data(), qkv.data() + DW, qkv.data() + 2 * DW,
                    ldw, 1, TW, HW, hdw);
  attention_forward(outf.data(), DW, lsef.data(), qkvf.data(), qkvf.data() + DW,
                    qkvf.data() + 2 * DW, ldw, 1, TW, HW, hdw);
  EXPECT_LE(rel_error(outf, out), testing::kF32Tolerance);
  EXPECT_LE(rel_error(lsef, lse), testing::kF32Tolerance);
  attention_backward(dqkv.data(), dqkv.data() + DW, dqkv.data() + 2 * DW, ldw, scratch.data(),
                     dout.data(), DW, lse.data(), qkv.data(), qkv.data() + DW,
                     qkv.data() + 2 * DW, ldw, 1, TW, HW, hdw);
  attention_backward(dqkvf.data(), dqkvf.data() + DW, dqkvf.data() + 2 * DW, ldw,
                     scratchf.data(), doutf.data(), DW, lsef.data(), qkvf.data(),
                     qkvf.data() + DW, qkvf.data() + 2 * DW, ldw, 1, TW, HW, hdw);
  EXPECT_LE(rel_error(dqkvf, dqkv), testing::kF32Tolerance);
  EXPECT_LE(rel_error(scratchf, scratch), testing::kF32Tolerance);
}

// Sequences longer than the kernel's query block (32) run several blocks: five, the last one
// partial. Forward against the naive softmax, backward by finite differences on a sample of
// inputs spread over all blocks.
TEST(Attention, BlockedLongSequenceForwardAndBackward) {
  constexpr int64_t TL = 150, HL = 2, hdl = 4, DL = HL * hdl, ld = 3 * DL;
  auto qkv = random_vector(TL * ld, 7, -1.0, 1.0);
  const auto dout = random_vector(TL * DL, 8);
  std::vector<double> out(TL * DL), lse(HL * TL);
  auto forward = [&] {
    attention_forward(out.data(), DL, lse.data(), qkv.data(), qkv.data() + DL,
                      qkv.data() + 2 * DL, ld, 1, TL, HL, hdl);
  };
  forward();
  const double scale = 1.0 / std::sqrt(double(hdl));
  for (int64_t h = 0; h < HL; ++h) {
    for (int64_t t : {0L, 31L, 32L, 63L, 64L, 100L, 127L, 128L, 149L}) {
      std::vector<double> w(t + 1);
      double z = 0;
      for (int64_t j = 0; j <= t; ++j) {
        double s = 0;
        for (int64_t d = 0; d < hdl; ++d) {
          s += qkv[t * ld + h * hdl + d] * qkv[j * ld + DL + h * hdl + d];
        }
        w[j] = std::exp(s * scale);
        z += w[j];
      }
      ASSERT_NEAR(lse[h * TL + t], std::log(z), 1e-13) << h << " " << t;
      for (int64_t d = 0; d < hdl; ++d) {
        double o = 0;
        for (int64_t j = 0; j <= t; ++j) o += w[j] / z * qkv[j * ld + 2 * DL + h * hdl + d];
        ASSERT_NEAR(out[t * DL + h * hdl + d], o, 1e-13) << h << " " << t << " " << d;
      }
    }
  }
  auto loss = [&] {
    forward();
    double l = 0;
    for (int64_t i = 0; i < TL * DL; ++i) l += dout[i] * out[i];
    return l;
  };
  std::vector<int64_t> sample;
  for (int64_t i = 0; i < TL * ld; i += 37) sample.push_back(i);
  const auto g = testing::numeric_grad(qkv, loss, sample);
  forward();
  std::vector<double> dqkv(TL * ld, 0.0), scratch(HL * TL);
  attention_backward(dqkv.data(), dqkv.data() + DL, dqkv.data() + 2 * DL, ld, scratch.data(),
                     dout.data(), DL, lse.data(), qkv.data(), qkv.data() + DL,
                     qkv.data() + 2 * DL, ld, 1, TL, HL, hdl);
  EXPECT_LE(rel_error(dqkv, g, sample), testing::kFdTolerance);
}

// Large logits must not overflow the softmax (max-subtracted): scores of up to ~100, whose
// exponentials alone overflow float, give a finite float forward and backward that agree with
// double.
TEST(Attention, StableForLargeScores) {
  auto qkv = random_vector(B * T * ld_qkv, 6, -1.0, 1.0);
  for (int64_t row = 0; row < B * T; ++row)
    for (int64_t c = 0; c < 2 * D; ++c) qkv[row * ld_qkv + c] *= 60.0;
  qkv = testing::float_exact(qkv);
  const Buffers r = run_forward(qkv);
  EXPECT_GT(*std::max_element(r.lse.begin(), r.lse.end()), 89.0);  // expf overflows from 88.7
  const Fp32Errors e =
      fp32_against_fp64(qkv, testing::float_exact(random_vector(B * T * ld_out, 13)));
  EXPECT_TRUE(e.finite);
  EXPECT_LE(e.out, 1e-4);
  EXPECT_LE(e.grad, 1e-4);
}

}  // namespace
}  // namespace tessera::kernels

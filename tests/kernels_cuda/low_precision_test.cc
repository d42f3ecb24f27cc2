// kernels/cuda/low_precision.h: the device conversions equal the host's bit for bit (one piece
// of math, two devices). Inputs: every float whose low 12 bits are one of a few patterns, with
// all 2^20 high parts: that covers every binade, and the exact ties and their neighbours of all
// three formats (their rounding positions lie at bits 16, 20 and 21). Decoding: every code.
#include "kernels/cuda/low_precision.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <vector>

#include "kernels/math/low_precision.h"
#include "tests/kernels_cuda/cuda_test_util.h"

namespace tessera::kernels::cuda {
namespace {

using testing::fetch;

std::vector<float> sweep_inputs() {
  std::vector<float> x;
  for (uint32_t high = 0; high < (1u << 20); ++high) {
    for (uint32_t low : {0x000u, 0x001u, 0x7FFu, 0x800u, 0x801u, 0xFFFu}) {
      x.push_back(std::bit_cast<float>(high << 12 | low));
    }
  }
  return x;
}

template <typename Code>
void expect_same_codes(const std::vector<Code>& device, const std::vector<float>& x,
                       Code (*host)(float), const char* name) {
  int64_t mismatches = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (device[i] != host(x[i]) && mismatches++ < 10) {
      ADD_FAILURE() << name << " of float bits " << std::hex << std::bit_cast<uint32_t>(x[i])
                    << ": device " << +device[i] << ", host " << +host(x[i]);
    }
  }
  EXPECT_EQ(mismatches, 0) << name;
}

TEST(LowPrecisionCuda, EncodeEqualsHost) {
  TESSERA_SKIP_WITHOUT_CUDA();
  const std::vector<float> x = sweep_inputs();
  const int64_t n = static_cast<int64_t>(x.size());
  DeviceBuffer<float> dx(x);
  DeviceBuffer<uint16_t> bf16(n);
  DeviceBuffer<uint8_t> e4m3(n), e5m2(n), e5m2_sat(n);
  encode_bf16(bf16.data(), dx.data(), n);
  encode_e4m3(e4m3.data(), dx.data(), n);
  encode_e5m2(e5m2.data(), dx.data(), n);
  encode_e5m2_sat(e5m2_sat.data(), dx.data(), n);
  expect_same_codes(fetch(bf16), x, math::float_to_bf16, "bf16");
  expect_same_codes(fetch(e4m3), x, math::float_to_e4m3, "e4m3");
  expect_same_codes(fetch(e5m2), x, math::float_to_e5m2, "e5m2");
  expect_same_codes(fetch(e5m2_sat), x, math::float_to_e5m2_sat, "e5m2_sat");
}

TEST(LowPrecisionCuda, DecodeEqualsHost) {
  TESSERA_SKIP_WITHOUT_CUDA();
  std::vector<uint16_t> c16(65536);
  std::vector<uint8_t> c8(256);
  for (uint32_t c = 0; c < 65536; ++c) c16[c] = static_cast<uint16_t>(c);
  for (uint32_t c = 0; c < 256; ++c) c8[c] = static_cast<uint8_t>(c);
  DeviceBuffer<uint16_t> d16(c16);
  DeviceBuffer<uint8_t> d8(c8);
  DeviceBuffer<float> bf16(65536), e4m3(256), e5m2(256);
  decode_bf16(bf16.data(), d16.data(), 65536);
  decode_e4m3(e4m3.data(), d8.data(), 256);
  decode_e5m2(e5m2.data(), d8.data(), 256);
  const std::vector<float> hb = fetch(bf16), h4 = fetch(e4m3), h5 = fetch(e5m2);
  for (uint32_t c = 0; c < 65536; ++c) {
    ASSERT_EQ(std::bit_cast<uint32_t>(hb[c]),
              std::bit_cast<uint32_t>(math::bf16_to_float(static_cast<uint16_t>(c))))
        << c;
  }
  for (uint32_t c = 0; c < 256; ++c) {
    ASSERT_EQ(std::bit_cast<uint32_t>(h4[c]),
              std::bit_cast<uint32_t>(math::e4m3_to_float(static_cast<uint8_t>(c))))
        << c;
    ASSERT_EQ(std::bit_cast<uint32_t>(h5[c]),
              std::bit_cast<uint32_t>(math::e5m2_to_float(static_cast<uint8_t>(c))))
        << c;
  }
}

}  // namespace
}  // namespace tessera::kernels::cuda

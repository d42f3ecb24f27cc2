// Runs kernels/math/low_precision.h for low_precision_reference.py, which checks the answers
// against the formats' definitions in exact arithmetic.
//   low_precision_tool encode   stdin: one float bit pattern per line (hex); stdout per line:
//                               "bf16 e4m3 e5m2 e5m2_sat" codes (hex)
//   low_precision_tool decode   stdout: "format code float_bits" (hex) for every code of
//                               bf16, e4m3 and e5m2
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "kernels/math/low_precision.h"

namespace {

using namespace tessera::kernels::math;

uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

int encode() {
  unsigned int in;
  while (std::scanf("%x", &in) == 1) {
    float x;
    const uint32_t u = in;
    std::memcpy(&x, &u, sizeof x);
    std::printf("%04x %02x %02x %02x\n", float_to_bf16(x), float_to_e4m3(x), float_to_e5m2(x),
                float_to_e5m2_sat(x));
  }
  return 0;
}

int decode() {
  for (uint32_t c = 0; c < 65536; ++c) {
    std::printf("bf16 %04x %08x\n", c, bits_of(bf16_to_float(static_cast<uint16_t>(c))));
  }
  for (uint32_t c = 0; c < 256; ++c) {
    std::printf("e4m3 %02x %08x\n", c, bits_of(e4m3_to_float(static_cast<uint8_t>(c))));
    std::printf("e5m2 %02x %08x\n", c, bits_of(e5m2_to_float(static_cast<uint8_t>(c))));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "encode") == 0) return encode();
  if (argc == 2 && std::strcmp(argv[1], "decode") == 0) return decode();
  std::fprintf(stderr, "usage: low_precision_tool encode|decode\n");
  return 2;
}

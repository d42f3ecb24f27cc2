#include "kernels/bf16_gemm_choice.h"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include <cstdlib>
#include <stdexcept>

namespace tessera::kernels {

namespace {

constexpr const char* kEnvVar = "TESSERA_BF16_GEMM";

dnnl_cpu_isa_t effective_isa() { return dnnl_get_effective_cpu_isa(); }

}  // namespace

const char* bf16_gemm_name(Bf16Gemm gemm) {
  return gemm == Bf16Gemm::kNative ? "native" : "emulated";
}

bool cpu_has_native_bf16() {
  // oneDNN's ISA values are bit sets, each containing those below it (amx includes bf16).
  const unsigned bf16 = dnnl_cpu_isa_avx512_core_bf16;
  return (static_cast<unsigned>(effective_isa()) & bf16) == bf16;
}

Bf16Gemm choose_bf16_gemm(const char* env_value, bool cpu_has_bf16) {
  const std::string value = env_value ? env_value : "";
  if (value.empty()) return cpu_has_bf16 ? Bf16Gemm::kNative : Bf16Gemm::kEmulated;
  if (value == "emulated") return Bf16Gemm::kEmulated;
  if (value == "native") {
    if (!cpu_has_bf16) {
      throw std::invalid_argument(std::string(kEnvVar) +
                                  "=native: this CPU has no native bf16 GEMM (oneDNN ISA " +
                                  dnnl_cpu_isa2str(effective_isa()) +
                                  ", needs avx512_core_bf16 or amx); unset it or use emulated");
    }
    return Bf16Gemm::kNative;
  }
  throw std::invalid_argument(std::string(kEnvVar) + "='" + value +
                              "' is not a bf16 GEMM (expected native or emulated)");
}

Bf16Gemm bf16_gemm_from_environment() {
  return choose_bf16_gemm(std::getenv(kEnvVar), cpu_has_native_bf16());
}

std::string describe_bf16_gemm(Bf16Gemm gemm) {
  std::string s = gemm == Bf16Gemm::kNative
                      ? "native (oneDNN bf16 matmul, fp32 accumulation"
                      : "emulated (bf16-rounded inputs, fp32 sgemm";
  s += std::string("; CPU ISA ") + dnnl_cpu_isa2str(effective_isa());
  const char* env = std::getenv(kEnvVar);
  if (env && *env) s += std::string(", ") + kEnvVar + "=" + env;
  return s + ")";
}

}  // namespace tessera::kernels

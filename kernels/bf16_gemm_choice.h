// Which GEMM runs the CPU backend's bf16 linear maps: oneDNN's native bf16 matmul
// (kernels/onednn_bf16_gemm.h) where the CPU multiplies bf16 in hardware (AVX512_BF16, or
// AMX-BF16, which implies it), else the exact emulation (kernels/gemm_operand.h: inputs rounded
// to bf16, an fp32 sgemm). Both take the same rounded inputs, whose products are exact in fp32,
// and accumulate in fp32: they differ only by summation order (and the hardware's flushing of
// subnormals to zero).
//
// The environment variable TESSERA_BF16_GEMM overrides the choice: "emulated" forces the
// emulation, "native" requires the native GEMM (an error on a CPU without bf16), unset or empty
// lets the CPU decide.
#pragma once

#include <cstdint>
#include <string>

namespace tessera::kernels {

enum class Bf16Gemm : uint8_t {
  kNative,    // oneDNN matmul, bf16 x bf16 -> fp32
  kEmulated,  // bf16-rounded fp32 copies, fp32 sgemm
};

// "native" / "emulated".
const char* bf16_gemm_name(Bf16Gemm gemm);

// Whether oneDNN's effective ISA on this CPU has bf16 dot products (avx512_core_bf16 or
// avx512_core_amx; DNNL_MAX_CPU_ISA can lower it).
bool cpu_has_native_bf16();

// The choice for a TESSERA_BF16_GEMM value (null or empty: unset) on a CPU with or without
// native bf16. Throws std::invalid_argument naming the variable for an unknown value, or for
// "native" where the CPU lacks bf16 (no silent fallback).
Bf16Gemm choose_bf16_gemm(const char* env_value, bool cpu_has_bf16);

// choose_bf16_gemm(getenv("TESSERA_BF16_GEMM"), cpu_has_native_bf16()).
Bf16Gemm bf16_gemm_from_environment();

// One line for logs, e.g. "native (oneDNN bf16 matmul, fp32 accumulation; CPU ISA
// avx512_core_bf16)" or "emulated (bf16-rounded inputs, fp32 sgemm; TESSERA_BF16_GEMM=emulated)".
std::string describe_bf16_gemm(Bf16Gemm gemm);

}  // namespace tessera::kernels

// TESSERA_HD marks per-element math that both backends share: the CPU backend loops over
// it, the CUDA backend launches it. Write such math once, here-style, never twice.
#pragma once

#if defined(__CUDACC__)
#define TESSERA_HD __host__ __device__ __forceinline__
#else
#define TESSERA_HD inline
#endif

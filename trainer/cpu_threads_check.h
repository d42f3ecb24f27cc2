// run.cpu_threads against the machine the run starts on. The recipe bounds the value (1..1024);
// far more OpenMP threads than hardware threads only oversubscribe (4096 on 2 cores never finish a
// step), so training and evaluation refuse more than kCpuThreadsPerHardwareThread per hardware
// thread, naming the key, the value and the machine's count.
#pragma once

#include <cstdint>

#include "parallel/comm.h"

namespace tessera::trainer {

constexpr int64_t kCpuThreadsPerHardwareThread = 4;

// Throws RecipeError when threads > kCpuThreadsPerHardwareThread x hardware_threads;
// hardware_threads 0 (unknown) passes.
void check_cpu_threads(int64_t threads, unsigned hardware_threads);

// The same on every rank of world (collective): against the fewest hardware threads any rank's
// machine has, so ranks on unlike nodes still agree and every rank throws the same RecipeError.
void check_cpu_threads(int64_t threads, parallel::Comm& world);

}  // namespace tessera::trainer

#include "trainer/checkpoint/crashing_env.h"

#include <csignal>
#include <cstdio>
#include <stdexcept>

namespace tessera::trainer {

CrashingEnv::CrashingEnv(CheckpointEnv& base, const std::string& spec)
    : CheckpointEnvWrapper(base), spec_(spec) {
  const size_t at = spec.find('@');
  const std::string name = spec.substr(0, at);
  bool known = false;
  for (SavePoint p : {SavePoint::kCreated, SavePoint::kWritten, SavePoint::kClosed,
                      SavePoint::kRenamed}) {
    if (name == save_point_name(p)) {
      point_ = p;
      known = true;
    }
  }
  if (known && at != std::string::npos) {
    const std::string digits = spec.substr(at + 1);
    known = !digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos &&
            digits.size() <= 18;
    if (known) step_ = std::stoll(digits);
  }
  if (!known) {
    throw std::invalid_argument("TESSERA_CHECKPOINT_CRASH='" + spec +
                                "': expected created|written|closed|renamed, optionally @<step>");
  }
}

void CrashingEnv::Reached(SavePoint point, int64_t step) {
  if (point == point_ && (!step_ || *step_ == step)) {
    std::fprintf(stderr, "tessera: TESSERA_CHECKPOINT_CRASH=%s: killing myself now\n",
                 spec_.c_str());
    std::raise(SIGKILL);
  }
  CheckpointEnvWrapper::Reached(point, step);
}

}  // namespace tessera::trainer

// BlockingWatch: bounds blocking calls that no Work covers, such as a checkpoint's collective
// HDF5 I/O (HDF5 calls MPI_File_* and MPI_Barrier itself, on the calling thread).
//
// A watch thread checks every watched region. Once a region has lasted the liveness stall time
// it asks every rank whether it is alive (Liveness) every stall time after that; when a rank is
// silent, or the region's own timeout passes, it writes the error to the liveness log and
// aborts every rank (parallel::abort_all): the blocked thread is inside MPI and cannot be
// woken, so ending the job is the only way out that leaves no rank behind. Regions are listed
// on the ActivityBoard, so peers' liveness answers say "waiting 40.0 s in checkpoint save ...".
//
// Thread-safety: watch() and ~Region may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "parallel/liveness.h"

namespace tessera::parallel {

class BlockingWatch {
 public:
  class Region {
   public:
    Region() = default;
    Region(Region&& other) noexcept;
    Region& operator=(Region&& other) noexcept;
    ~Region();

   private:
    friend class BlockingWatch;
    Region(std::shared_ptr<BlockingWatch> watch, uint64_t id) : watch_(std::move(watch)), id_(id) {}
    std::shared_ptr<BlockingWatch> watch_;
    uint64_t id_ = 0;
  };

  explicit BlockingWatch(std::shared_ptr<Liveness> liveness);
  ~BlockingWatch();
  BlockingWatch(const BlockingWatch&) = delete;
  BlockingWatch& operator=(const BlockingWatch&) = delete;

  // Watches `what` (e.g. "checkpoint save of step 40 (collective HDF5 I/O)") until the Region
  // is destroyed; timeout_s <= 0: liveness checks only. Aborts every rank as described above.
  [[nodiscard]] static Region watch(const std::shared_ptr<BlockingWatch>& self, std::string what,
                                    double timeout_s);

 private:
  using Clock = std::chrono::steady_clock;
  struct Watched {
    std::string what;
    Clock::time_point since;
    double timeout_s;
    Clock::time_point next_check;
    ActivityBoard::Id board_id;
  };
  void end(uint64_t id);
  void loop();
  [[noreturn]] void fail(const std::string& message);

  std::shared_ptr<Liveness> liveness_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Watched> regions_;
  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace tessera::parallel

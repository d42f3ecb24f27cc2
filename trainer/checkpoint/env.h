// The file-system operations of the checkpoint directory protocol (directory.h: the temporary
// step directory, trainer.yaml, the rename into place, `latest`, retention), behind an interface
// so that tests can fail any one of them on demand (LevelDB's Env). HDF5 writes and reads
// model.h5 itself: those bytes never pass through here.
//
// The env is passed in (write_checkpoint, CheckpointWriter, TrainOptions::checkpoint_env), never
// installed globally. CheckpointEnv::Posix() is the real file system; decorators wrap another env
// (CrashingEnv, crashing_env.h; the tests' FaultyEnv).
//
// Thread-safety: an env is used by one save at a time (the writer's thread, or the training
// loop's); PosixCheckpointEnv has no state and is safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::trainer {

// The points of a save (every rank passes each) where a crash test may stop the process.
enum class SavePoint {
  kCreated,  // model.h5 created in the temporary directory, nothing written
  kWritten,  // this rank's slices written, model.h5 not closed
  kClosed,   // model.h5 closed on every rank, trainer.yaml not written
  kRenamed,  // the step directory renamed into place, `latest` not updated
};
// "created", "written", "closed", "renamed".
const char* save_point_name(SavePoint point);

struct DirEntry {
  std::string name;  // the file name, without the directory
  bool is_dir = false;
};

class CheckpointEnv {
 public:
  virtual ~CheckpointEnv() = default;

  // Creates `path` and any missing parents; an existing directory is fine.
  virtual void CreateDir(const std::string& path) = 0;
  // Replaces the file at `path` with `data` and makes it durable (write, fsync, close). On
  // failure the file may hold part of `data`.
  virtual void WriteFile(const std::string& path, const std::string& data) = 0;
  // The whole content of a (small) file.
  virtual std::string ReadFile(const std::string& path) = 0;
  // rename(2): atomic within a file system; replaces a file `to`, or an empty directory.
  virtual void Rename(const std::string& from, const std::string& to) = 0;
  // Removes a file or a directory tree; a missing path is fine.
  virtual void RemoveAll(const std::string& path) = 0;
  // The entries of a directory (without "." and ".."), in no particular order.
  virtual std::vector<DirEntry> ListDir(const std::string& path) = 0;
  // Whether `path` is a regular file / a directory (false on any error: a missing path).
  virtual bool FileExists(const std::string& path) = 0;
  virtual bool DirExists(const std::string& path) = 0;
  // fsync(2) of a file (model.h5, which HDF5 wrote) or of a directory (its entries: after a
  // create or rename inside it).
  virtual void SyncFile(const std::string& path) = 0;
  virtual void SyncDir(const std::string& path) = 0;

  // Called by every rank of a save when it reaches `point` of the save of `step`. Does nothing
  // unless a test decorator makes it crash there.
  virtual void Reached(SavePoint point, int64_t step) {
    (void)point;
    (void)step;
  }

  // The real file system (stateless; lives for the whole process).
  static CheckpointEnv& Posix();
};

// Every operation on the real file system. Errors throw std::runtime_error naming the path and
// the operation, with strerror's text: "<path>: write: No space left on device".
class PosixCheckpointEnv : public CheckpointEnv {
 public:
  void CreateDir(const std::string& path) override;
  void WriteFile(const std::string& path, const std::string& data) override;
  std::string ReadFile(const std::string& path) override;
  void Rename(const std::string& from, const std::string& to) override;
  void RemoveAll(const std::string& path) override;
  std::vector<DirEntry> ListDir(const std::string& path) override;
  bool FileExists(const std::string& path) override;
  bool DirExists(const std::string& path) override;
  void SyncFile(const std::string& path) override;
  void SyncDir(const std::string& path) override;
};

// Forwards every operation to `base` (REQUIRES: base outlives it); decorators override some.
class CheckpointEnvWrapper : public CheckpointEnv {
 public:
  explicit CheckpointEnvWrapper(CheckpointEnv& base) : base_(base) {}
  void CreateDir(const std::string& path) override { base_.CreateDir(path); }
  void WriteFile(const std::string& path, const std::string& data) override {
    base_.WriteFile(path, data);
  }
  std::string ReadFile(const std::string& path) override { return base_.ReadFile(path); }
  void Rename(const std::string& from, const std::string& to) override { base_.Rename(from, to); }
  void RemoveAll(const std::string& path) override { base_.RemoveAll(path); }
  std::vector<DirEntry> ListDir(const std::string& path) override { return base_.ListDir(path); }
  bool FileExists(const std::string& path) override { return base_.FileExists(path); }
  bool DirExists(const std::string& path) override { return base_.DirExists(path); }
  void SyncFile(const std::string& path) override { base_.SyncFile(path); }
  void SyncDir(const std::string& path) override { base_.SyncDir(path); }
  void Reached(SavePoint point, int64_t step) override { base_.Reached(point, step); }

 protected:
  CheckpointEnv& base() { return base_; }

 private:
  CheckpointEnv& base_;
};

// Writes `text` to `path` atomically: to "<path>.tmp" (durably), then renamed over `path`. On
// failure "<path>.tmp" is removed (best effort) and the error rethrown; `path` is as it was.
void write_file_atomically(CheckpointEnv& env, const std::string& path, const std::string& text);

}  // namespace tessera::trainer

#include "data/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "data/data_error.h"

namespace tessera::data {

namespace {

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw DataError(path + ": cannot open to flush: " + std::strerror(errno));
  const int status = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  // Some file systems refuse fsync on directories; the rename is still atomic there.
  if (status != 0 && !(directory && (saved == EINVAL || saved == EBADF))) {
    throw DataError(path + ": cannot flush to disk: " + std::strerror(saved));
  }
}

}  // namespace

std::string temporary_path(const std::string& path) { return path + ".tmp"; }

void commit_file(const std::string& tmp, const std::string& path) {
  fsync_path(tmp, false);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw DataError(path + ": cannot rename " + tmp + " to it: " + std::strerror(errno));
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  fsync_path(dir.empty() ? "." : dir, true);
}

void write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = temporary_path(path);
  std::FILE* file = std::fopen(tmp.c_str(), "wb");
  if (file == nullptr) throw DataError(tmp + ": cannot create: " + std::strerror(errno));
  const bool ok = std::fwrite(content.data(), 1, content.size(), file) == content.size();
  if (std::fclose(file) != 0 || !ok) throw DataError(tmp + ": cannot write: " + std::strerror(errno));
  commit_file(tmp, path);
}

}  // namespace tessera::data

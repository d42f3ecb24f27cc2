// Crash-safe file publication: a file is written under a temporary name, flushed to disk and then
// renamed, so a reader never sees a half-written file under its final name.
#pragma once

#include <string>

namespace tessera::data {

// The temporary name used for `path` while it is being written ("<path>.tmp").
std::string temporary_path(const std::string& path);

// fsyncs `tmp`, renames it to `path` and fsyncs the directory. Throws DataError naming the files.
void commit_file(const std::string& tmp, const std::string& path);

// Writes `content` to temporary_path(path), then commit_file()s it.
void write_file_atomic(const std::string& path, const std::string& content);

}  // namespace tessera::data

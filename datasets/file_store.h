// Positional reads from files that an index was built over. Each read checks that the file is still the
// one indexed (its size and modification time), so a file changed, shrunk or deleted after indexing
// surfaces as a BadExample naming it, never as silently wrong bytes. Reads go through pread rather than
// a memory map: mapped pages count towards the process's resident memory as they are touched, and a
// long run would touch the whole data set.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace perceiver::datasets {

// A file as an index saw it.
struct FileStamp {
  std::string path;
  int64_t size = 0;
  int64_t mtime_ns = 0;

  // Throws std::runtime_error naming the file when it cannot be inspected.
  static FileStamp of(const std::filesystem::path& path);
  bool operator==(const FileStamp& o) const { return path == o.path && size == o.size && mtime_ns == o.mtime_ns; }
  bool operator!=(const FileStamp& o) const { return !(*this == o); }
  // Why `now` is not this file as indexed ("" when it is).
  std::string difference(const FileStamp& now) const;
  nlohmann::json to_json() const { return {{"path", path}, {"size", size}, {"mtime_ns", mtime_ns}}; }
  static FileStamp from_json(const nlohmann::json& j);
};

// Reads bytes [offset, offset + count) of `file` into out; throws BadExample when the file has vanished,
// changed since `file` was taken, or ends early.
void read_stamped(const FileStamp& file, int64_t offset, int64_t count, char* out);

// Where derived data (text indexes, packed JSONL) is cached: $PERCEIVER_CACHE_DIR, else
// $XDG_CACHE_HOME/perceiver-cpp, else ~/.cache/perceiver-cpp.
std::filesystem::path default_cache_dir();

// An exclusive advisory lock on `path` (created if missing) for the object's lifetime: ranks of one
// machine that open the same index wait while the first one builds it.
class FileLock {
 public:
  explicit FileLock(const std::filesystem::path& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// Writes `bytes` to `path` through a temporary file and a rename, so readers never see half a file.
void write_file_atomically(const std::filesystem::path& path, const std::string& bytes);

}  // namespace perceiver::datasets

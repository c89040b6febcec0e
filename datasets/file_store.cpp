#include "datasets/file_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "datasets/loader.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

namespace {

FileStamp stamp_of(const std::string& path, const struct stat& st) {
  return {path, static_cast<int64_t>(st.st_size), static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

// Closes a descriptor on every path out of a read.
struct Descriptor {
  int fd;
  ~Descriptor() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

FileStamp FileStamp::of(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw std::runtime_error("cannot inspect '" + path.string() + "': " + std::strerror(errno));
  return stamp_of(path.string(), st);
}

std::string FileStamp::difference(const FileStamp& now) const {
  if (now.size != size) return "its size changed from " + std::to_string(size) + " to " + std::to_string(now.size) + " bytes";
  if (now.mtime_ns != mtime_ns) return "it was modified";
  return "";
}

FileStamp FileStamp::from_json(const nlohmann::json& j) {
  return {j.at("path").get<std::string>(), j.at("size").get<int64_t>(), j.at("mtime_ns").get<int64_t>()};
}

void read_stamped(const FileStamp& file, int64_t offset, int64_t count, char* out) {
  const Descriptor d{::open(file.path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (d.fd < 0)
    throw BadExample(file.path, errno == ENOENT ? "the file no longer exists" : std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(d.fd, &st) != 0) throw BadExample(file.path, std::string("cannot inspect: ") + std::strerror(errno));
  if (const auto why = file.difference(stamp_of(file.path, st)); !why.empty())
    throw BadExample(file.path, why + " since it was indexed");
  while (count > 0) {
    const auto got = ::pread(d.fd, out, static_cast<size_t>(count), static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw BadExample(file.path, std::string("read error: ") + std::strerror(errno));
    if (got == 0) throw BadExample(file.path, "ends before byte " + std::to_string(offset + count));
    out += got;
    offset += got;
    count -= got;
  }
}

fs::path default_cache_dir() {
  if (const char* dir = std::getenv("PERCEIVER_CACHE_DIR"); dir && *dir) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return fs::path(xdg) / "perceiver-cpp";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "perceiver-cpp";
  return fs::temp_directory_path() / "perceiver-cpp-cache";
}

FileLock::FileLock(const fs::path& path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot create lock file '" + path.string() + "': " + std::strerror(errno));
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    const int error = errno;
    ::close(fd_);
    throw std::runtime_error("cannot lock '" + path.string() + "': " + std::strerror(error));
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

void write_file_atomically(const fs::path& path, const std::string& bytes) {
  const auto tmp = fs::path(path.string() + ".tmp" + std::to_string(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write '" + tmp.string() + "' (disk full or not writable?)");
  }
  fs::rename(tmp, path);
}

}  // namespace perceiver::datasets

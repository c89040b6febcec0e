// POSIX tar archives read in place: the members' names, offsets and sizes from their headers alone
// (ustar, GNU long names, pax paths and sizes), so that any member can then be read with one
// positional read. And a plain ustar writer for making shards.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace perceiver::datasets {

struct TarMember {
  std::string name;
  int64_t offset = 0;  // of the data in the archive
  int64_t size = 0;
};

struct TarListing {
  std::vector<TarMember> members;  // regular files, in archive order
  std::string problem;             // why listing stopped early ("" when the archive ended cleanly)
};

// Lists the regular files of an archive by reading its headers only. A corrupt header or a member cut
// short ends the listing there: the members before it are returned and `problem` says what was found.
// Throws std::runtime_error naming the file only when it cannot be opened.
TarListing list_tar(const std::filesystem::path& path);

// Writes a ustar archive member by member (names up to 255 bytes, split into prefix and name).
class TarWriter {
 public:
  explicit TarWriter(const std::filesystem::path& path);
  void add(const std::string& name, const std::string& bytes);
  // Writes the two zero blocks that end an archive; throws when anything could not be written.
  void close();
  ~TarWriter();

 private:
  std::filesystem::path path_;
  std::ofstream out_;
  bool closed_ = false;
};

}  // namespace perceiver::datasets

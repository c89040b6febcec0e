// The tar reader against archives written by GNU tar in its three formats, and damaged ones.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "datasets/common.h"
#include "datasets/tar.h"
#include "tests/test_support.h"

namespace pd = perceiver::datasets;
namespace fs = std::filesystem;
using perceiver::testing::TempDir;
using perceiver::testing::write_file;

namespace {

std::string member_bytes(const fs::path& archive, const pd::TarMember& m) {
  std::ifstream in(archive, std::ios::binary);
  in.seekg(m.offset);
  std::string bytes(static_cast<size_t>(m.size), '\0');
  in.read(bytes.data(), m.size);
  return bytes;
}

}  // namespace

TEST(DatasetsTar, ListsWhatGnuTarWritesInEachFormat) {
  TempDir tmp;
  const std::string long_dir(120, 'd');  // beyond ustar's 100-byte name field
  const std::map<std::string, std::string> files = {
      {"a.txt", "alpha"}, {"sub/b.bin", std::string(1500, '\x07')}, {long_dir + "/c.txt", "a long path"}, {"empty", ""}};
  for (const auto& [name, bytes] : files) write_file(tmp.path() / "src" / name, bytes);
  for (const std::string format : {"gnu", "pax", "ustar"}) {
    const auto archive = tmp.path() / (format + ".tar");
    const std::string cmd = "cd '" + (tmp.path() / "src").string() + "' && tar --format=" + format + " -cf '" +
                            archive.string() + "' a.txt sub/b.bin empty " + (format == "ustar" ? "" : long_dir + "/c.txt") +
                            " 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const auto listing = pd::list_tar(archive);
    EXPECT_EQ(listing.problem, "") << format;
    std::map<std::string, std::string> found;
    for (const auto& m : listing.members) found[m.name] = member_bytes(archive, m);
    for (const auto& [name, bytes] : files) {
      if (format == "ustar" && name.size() > 100) continue;
      ASSERT_TRUE(found.count(name)) << format << ": " << name;
      EXPECT_EQ(found[name], bytes) << format << ": " << name;
    }
    EXPECT_EQ(found.size(), format == "ustar" ? 3u : 4u) << format;  // directories are not members
  }
  // Our own writer round-trips through GNU tar.
  const auto ours = tmp.path() / "ours.tar";
  {
    pd::TarWriter w(ours);
    w.add("x/one.txt", "1");
    w.add(long_dir + "/two.txt", "22");
    w.close();
  }
  const std::string extract = "mkdir -p '" + (tmp.path() / "out").string() + "' && tar -xf '" + ours.string() + "' -C '" +
                              (tmp.path() / "out").string() + "'";
  ASSERT_EQ(std::system(extract.c_str()), 0);
  EXPECT_EQ(pd::read_file_bytes(tmp.path() / "out" / "x" / "one.txt"), "1");
  EXPECT_EQ(pd::read_file_bytes(tmp.path() / "out" / long_dir / "two.txt"), "22");
}

TEST(DatasetsTar, ADamagedArchiveKeepsTheMembersBeforeTheDamage) {
  TempDir tmp;
  const auto archive = tmp.path() / "a.tar";
  {
    pd::TarWriter w(archive);
    for (int i = 0; i < 4; ++i) w.add("m" + std::to_string(i), std::string(700, static_cast<char>('a' + i)));
    w.close();
  }
  ASSERT_EQ(pd::list_tar(archive).members.size(), 4u);
  // Member 2's header (each member: 512 header + 1024 data) gets a bad checksum.
  auto bytes = pd::read_file_bytes(archive);
  bytes[2 * 1536 + 10] ^= 0x55;
  write_file(tmp.path() / "corrupt.tar", bytes);
  auto listing = pd::list_tar(tmp.path() / "corrupt.tar");
  EXPECT_EQ(listing.members.size(), 2u);
  EXPECT_NE(listing.problem.find("corrupt header"), std::string::npos) << listing.problem;
  // Cut inside member 3's data.
  write_file(tmp.path() / "cut.tar", pd::read_file_bytes(archive).substr(0, 3 * 1536 + 600));
  listing = pd::list_tar(tmp.path() / "cut.tar");
  EXPECT_EQ(listing.members.size(), 3u);
  EXPECT_NE(listing.problem.find("cut short"), std::string::npos) << listing.problem;
  EXPECT_THROW(pd::list_tar(tmp.path() / "missing.tar"), std::runtime_error);
}

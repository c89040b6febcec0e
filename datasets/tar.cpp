#include "datasets/tar.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace perceiver::datasets {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kBlock = 512;
constexpr int64_t kMaxExtendedHeader = int64_t{1} << 20;  // a long name or pax record set beyond this is corrupt
using Header = std::array<char, kBlock>;

int64_t padded(int64_t size) { return (size + kBlock - 1) / kBlock * kBlock; }

std::string field(const Header& h, size_t offset, size_t length) {
  const char* begin = h.data() + offset;
  return std::string(begin, std::find(begin, begin + length, '\0'));
}

// An octal number field (spaces and NULs around it allowed), or GNU's base-256 form for large sizes.
bool number(const Header& h, size_t offset, size_t length, int64_t& out) {
  const auto* p = reinterpret_cast<const unsigned char*>(h.data() + offset);
  if (p[0] & 0x80) {
    if (p[0] != 0x80) return false;  // negative or larger than int64
    out = 0;
    for (size_t i = 1; i < length; ++i) {
      if (out > (INT64_MAX >> 8)) return false;
      out = (out << 8) | p[i];
    }
    return true;
  }
  size_t i = 0;
  while (i < length && p[i] == ' ') ++i;
  out = 0;
  bool any = false;
  for (; i < length && p[i] >= '0' && p[i] <= '7'; ++i, any = true) {
    if (out > (INT64_MAX >> 3)) return false;
    out = out * 8 + (p[i] - '0');
  }
  for (; i < length; ++i)
    if (p[i] != ' ' && p[i] != '\0') return false;
  return any;
}

bool checksum_ok(const Header& h) {
  int64_t stored = 0;
  if (!number(h, 148, 8, stored)) return false;
  int64_t unsigned_sum = 0, signed_sum = 0;  // old tars summed signed chars
  for (size_t i = 0; i < h.size(); ++i) {
    const char c = i >= 148 && i < 156 ? ' ' : h[i];
    unsigned_sum += static_cast<unsigned char>(c);
    signed_sum += static_cast<signed char>(c);
  }
  return stored == unsigned_sum || stored == signed_sum;
}

// pax records "<length> <key>=<value>\n": the ones that change the next member's name or size.
void read_pax(const std::string& data, std::string& path, int64_t& size) {
  size_t at = 0;
  while (at < data.size()) {
    const size_t space = data.find(' ', at);
    if (space == std::string::npos) return;
    int64_t length = 0;
    try {
      length = std::stoll(data.substr(at, space - at));
    } catch (const std::exception&) {
      return;
    }
    if (length <= 0 || at + static_cast<size_t>(length) > data.size() || space + 1 >= at + static_cast<size_t>(length))
      return;
    const std::string record = data.substr(space + 1, at + static_cast<size_t>(length) - space - 2);
    const size_t eq = record.find('=');
    if (eq != std::string::npos) {
      const auto key = record.substr(0, eq), value = record.substr(eq + 1);
      if (key == "path") path = value;
      if (key == "size") {
        try {
          size = std::stoll(value);
        } catch (const std::exception&) {
        }
      }
    }
    at += static_cast<size_t>(length);
  }
}

}  // namespace

TarListing list_tar(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open tar archive '" + path.string() + "'");
  in.seekg(0, std::ios::end);
  const int64_t file_size = in.tellg();
  TarListing out;
  int64_t at = 0;
  std::string long_name, pax_path;
  int64_t pax_size = -1;
  auto stop = [&](const std::string& why) { out.problem = why + " at byte " + std::to_string(at); };
  while (true) {
    if (at == file_size) return out;  // no end-of-archive blocks: tolerated, as GNU tar does
    if (at + kBlock > file_size) {
      stop("the archive ends inside a header");
      return out;
    }
    Header h{};
    in.seekg(at);
    in.read(h.data(), kBlock);
    if (!in) {
      stop("read error");
      return out;
    }
    if (std::all_of(h.begin(), h.end(), [](char c) { return c == '\0'; })) return out;  // end of archive
    int64_t size = 0;
    if (!checksum_ok(h) || !number(h, 124, 12, size)) {
      stop("a corrupt header (bad checksum or size)");
      return out;
    }
    const char type = h[156];
    if (pax_size >= 0 && (type == '0' || type == '\0' || type == '7')) size = pax_size;
    const int64_t data = at + kBlock;
    if (size > file_size - data) {
      stop("a member cut short ('" + field(h, 0, 100) + "' needs " + std::to_string(size) + " bytes)");
      return out;
    }
    if (type == 'L' || type == 'x') {
      if (size > kMaxExtendedHeader) {
        stop("an extended header of " + std::to_string(size) + " bytes");
        return out;
      }
      std::string bytes(static_cast<size_t>(size), '\0');
      in.seekg(data);
      in.read(bytes.data(), size);
      if (type == 'L') long_name = std::string(bytes.c_str());
      else read_pax(bytes, pax_path, pax_size);
    } else {
      if (type == '0' || type == '\0' || type == '7') {
        std::string name = field(h, 0, 100);
        if (std::memcmp(h.data() + 257, "ustar", 6) == 0) {  // POSIX "ustar\0"; GNU's "ustar  " has no prefix field
          const auto prefix = field(h, 345, 155);
          if (!prefix.empty()) name = prefix + "/" + name;
        }
        if (!long_name.empty()) name = long_name;
        if (!pax_path.empty()) name = pax_path;
        out.members.push_back({name, data, size});
      }
      long_name.clear();
      pax_path.clear();
      pax_size = -1;
    }
    at = data + padded(size);
  }
}

TarWriter::TarWriter(const fs::path& path) : path_(path), out_(path, std::ios::binary | std::ios::trunc) {
  if (!out_) throw std::runtime_error("cannot create tar archive '" + path.string() + "'");
}

void TarWriter::add(const std::string& name, const std::string& bytes) {
  if (bytes.size() > (size_t{1} << 33) - 1) throw std::runtime_error("tar member '" + name + "' is over 8 GiB");
  Header h{};
  std::string prefix, base = name;
  if (name.size() > 100) {  // ustar splits long names at a '/' into prefix (155) and name (100)
    const size_t cut = name.rfind('/', 155);
    if (cut == std::string::npos || name.size() - cut - 1 > 100 || cut == 0)
      throw std::runtime_error("tar member name '" + name + "' is too long for ustar (100 bytes, or 255 split at a '/')");
    prefix = name.substr(0, cut);
    base = name.substr(cut + 1);
  }
  std::memcpy(h.data(), base.data(), base.size());
  std::snprintf(h.data() + 100, 8, "%07o", 0644);
  std::snprintf(h.data() + 108, 8, "%07o", 0);
  std::snprintf(h.data() + 116, 8, "%07o", 0);
  std::snprintf(h.data() + 124, 12, "%011llo", static_cast<unsigned long long>(bytes.size()));
  std::snprintf(h.data() + 136, 12, "%011o", 0);
  h[156] = '0';
  std::memcpy(h.data() + 257, "ustar", 6);  // magic with its NUL
  std::memcpy(h.data() + 263, "00", 2);
  std::memcpy(h.data() + 345, prefix.data(), prefix.size());
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (const char c : h) sum += static_cast<unsigned char>(c);
  std::snprintf(h.data() + 148, 8, "%06o", sum);  // six digits, NUL, then the space already there
  h[155] = ' ';
  out_.write(h.data(), kBlock);
  out_.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const std::string pad(static_cast<size_t>(padded(static_cast<int64_t>(bytes.size())) - static_cast<int64_t>(bytes.size())), '\0');
  out_.write(pad.data(), static_cast<std::streamsize>(pad.size()));
}

void TarWriter::close() {
  if (closed_) return;
  closed_ = true;
  const std::string end(2 * kBlock, '\0');
  out_.write(end.data(), static_cast<std::streamsize>(end.size()));
  out_.close();
  if (!out_) throw std::runtime_error("cannot write tar archive '" + path_.string() + "' (disk full?)");
}

TarWriter::~TarWriter() {
  try {
    close();
  } catch (...) {
  }
}

}  // namespace perceiver::datasets

#include "perceiver/io/zip_records.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "perceiver/io/json_io.h"

namespace perceiver::io {
namespace {

// Signatures and fixed sizes from PKWARE's APPNOTE (4.3.12, 4.3.14-4.3.16).
constexpr uint32_t kEndOfCentralDirectory = 0x06054b50;
constexpr uint32_t kZip64EndOfCentralDirectory = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint64_t kEocdSize = 22, kZip64LocatorSize = 20, kZip64EocdSize = 56, kCentralHeaderSize = 46,
                   kLocalHeaderSize = 30;
constexpr uint64_t kMaxComment = 0xFFFF;

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw std::runtime_error("torch checkpoint '" + name + "': " + what);
}

uint64_t le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::vector<uint8_t> read_at(const caffe2::serialize::ReadAdapterInterface& in, const std::string& name, uint64_t pos,
                             uint64_t n, const char* what) {
  const uint64_t size = in.size();
  if (pos > size || n > size - pos) fail(name, std::string(what) + " lies past the end of the file (truncated file?)");
  std::vector<uint8_t> out(static_cast<size_t>(n));
  if (n > 0 && in.read(pos, out.data(), static_cast<size_t>(n), what) != n)
    fail(name, std::string("short read of the ") + what);
  return out;
}

struct Directory {
  uint64_t entries = 0, offset = 0, size = 0;
};

Directory find_directory(const caffe2::serialize::ReadAdapterInterface& in, const std::string& name) {
  const uint64_t size = in.size();
  if (size < kEocdSize) fail(name, "file is too short for a zip archive (truncated file?)");
  const uint64_t tail_size = std::min(size, kEocdSize + kMaxComment);
  const auto tail = read_at(in, name, size - tail_size, tail_size, "end of the zip archive");
  // The end record sits before a comment of at most 64 KiB: search backwards for its signature.
  for (uint64_t at = tail_size - kEocdSize + 1; at-- > 0;) {
    const uint8_t* e = tail.data() + at;
    if (le(e, 4) != kEndOfCentralDirectory || le(e + 20, 2) != tail_size - kEocdSize - at) continue;
    Directory d{le(e + 10, 2), le(e + 16, 4), le(e + 12, 4)};
    const uint64_t eocd_pos = size - tail_size + at;
    if (d.entries == 0xFFFF || d.offset == 0xFFFFFFFF || d.size == 0xFFFFFFFF) {
      if (eocd_pos < kZip64LocatorSize) fail(name, "zip64 end record locator is missing");
      const auto loc = read_at(in, name, eocd_pos - kZip64LocatorSize, kZip64LocatorSize, "zip64 locator");
      if (le(loc.data(), 4) != kZip64Locator) fail(name, "zip64 end record locator is missing");
      const auto z = read_at(in, name, le(loc.data() + 8, 8), kZip64EocdSize, "zip64 end record");
      if (le(z.data(), 4) != kZip64EndOfCentralDirectory) fail(name, "zip64 end record has a bad signature");
      d = {le(z.data() + 32, 8), le(z.data() + 48, 8), le(z.data() + 40, 8)};
    }
    if (d.offset > eocd_pos || d.size > eocd_pos - d.offset)
      fail(name, "the zip central directory lies outside the file (truncated or corrupt archive)");
    return d;
  }
  fail(name, "no zip end-of-central-directory record (truncated or not a zip archive)");
}

}  // namespace

StoredZip::StoredZip(std::shared_ptr<caffe2::serialize::ReadAdapterInterface> in, std::string name)
    : in_(std::move(in)), name_(std::move(name)) {
  const auto& reader = *in_;
  const Directory dir = find_directory(reader, name_);
  const auto cd = read_at(reader, name_, dir.offset, dir.size, "zip central directory");
  const uint64_t file_size = reader.size();
  uint64_t pos = 0;
  for (uint64_t k = 0; k < dir.entries; ++k) {
    if (cd.size() - pos < kCentralHeaderSize || le(cd.data() + pos, 4) != kCentralHeader)
      fail(name_, "zip central directory entry " + std::to_string(k) + " is malformed");
    const uint8_t* h = cd.data() + pos;
    const uint64_t method = le(h + 10, 2), name_len = le(h + 28, 2), extra_len = le(h + 30, 2), comment_len = le(h + 32, 2);
    uint64_t compressed = le(h + 20, 4), uncompressed = le(h + 24, 4), local = le(h + 42, 4);
    if (cd.size() - pos - kCentralHeaderSize < name_len + extra_len + comment_len)
      fail(name_, "zip central directory entry " + std::to_string(k) + " runs past the directory");
    const std::string full(reinterpret_cast<const char*>(h + kCentralHeaderSize), name_len);
    const std::string shown = excerpt(full, 200);
    // zip64 extra field (id 1): the 64-bit values of the fields saturated in the header, in order.
    const uint8_t* extra = h + kCentralHeaderSize + name_len;
    for (uint64_t e = 0; e + 4 <= extra_len;) {
      const uint64_t id = le(extra + e, 2), len = le(extra + e + 2, 2);
      if (e + 4 + len > extra_len) break;
      if (id == 1) {
        uint64_t f = e + 4;
        for (uint64_t* field : {&uncompressed, &compressed, &local}) {
          if (*field != 0xFFFFFFFF) continue;
          if (f + 8 > e + 4 + len) fail(name_, "record '" + shown + "' has a short zip64 field");
          *field = le(extra + f, 8);
          f += 8;
        }
      }
      e += 4 + len;
    }
    if (method != 0)
      fail(name_, "record '" + shown + "' is compressed (zip method " + std::to_string(method) +
                      "); torch.save writes stored records only");
    if (compressed != uncompressed || uncompressed > file_size)
      fail(name_, "record '" + shown + "' declares " + std::to_string(uncompressed) + " bytes, which the " +
                      std::to_string(file_size) + "-byte file cannot hold");
    if (k == 0) {
      const auto slash = full.find('/');
      if (slash == std::string::npos) fail(name_, "record '" + shown + "' is not inside an archive folder");
      prefix_ = full.substr(0, slash + 1);
    }
    if (full.compare(0, prefix_.size(), prefix_) == 0) {
      const Record r{local, uncompressed, static_cast<uint32_t>(le(h + 16, 4))};
      if (!records_.emplace(full.substr(prefix_.size()), r).second)
        fail(name_, "record '" + shown + "' appears twice in the archive");
    }
    pos += kCentralHeaderSize + name_len + extra_len + comment_len;
  }
}

bool StoredZip::has(const std::string& record) const { return records_.count(record) > 0; }

c10::DataPtr StoredZip::read(const std::string& record, uint64_t* size) const {
  const auto it = records_.find(record);
  if (it == records_.end()) fail(name_, "record '" + prefix_ + record + "' is missing from the archive");
  const Record& r = it->second;
  const auto local = read_at(*in_, name_, r.local_header, kLocalHeaderSize, "local header of a zip record");
  if (le(local.data(), 4) != kLocalHeader) fail(name_, "record '" + prefix_ + record + "' has a bad local header");
  const uint64_t start = r.local_header + kLocalHeaderSize + le(local.data() + 26, 2) + le(local.data() + 28, 2);
  if (start > in_->size() || r.size > in_->size() - start)
    fail(name_, "record '" + prefix_ + record + "' runs past the end of the file (truncated file?)");
  c10::DataPtr data = c10::GetCPUAllocator()->allocate(static_cast<size_t>(r.size));
  // Read in chunks: the adapter takes size_t counts and a file may be large.
  auto* out = static_cast<char*>(data.get());
  for (uint64_t done = 0; done < r.size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(r.size - done, uint64_t{1} << 30));
    if (in_->read(start + done, out + done, n, "zip record") != n)
      fail(name_, "short read of record '" + prefix_ + record + "' (file changed while it was read?)");
    done += n;
  }
  uLong crc = crc32(0L, Z_NULL, 0);
  for (uint64_t done = 0; done < r.size;) {
    const uInt n = static_cast<uInt>(std::min<uint64_t>(r.size - done, uint64_t{1} << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(out + done), n);
    done += n;
  }
  if (static_cast<uint32_t>(crc) != r.crc)
    fail(name_, "record '" + prefix_ + record + "' fails its CRC-32 check (corrupt file)");
  *size = r.size;
  return data;
}

}  // namespace perceiver::io

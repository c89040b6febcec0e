#include "datasets/gzip.h"

#include <zlib.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace perceiver::datasets {

bool is_gzip(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f && static_cast<unsigned char>(bytes[1]) == 0x8b;
}

struct GzipReader::State {
  z_stream z{};
  std::string_view bytes;
  std::string what;
  bool done = false;

  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error(what + ": corrupt or truncated gzip: " + why);
  }
  // zlib counts in uInt: feed at most 1 GiB at a time.
  void feed() {
    if (z.avail_in == 0 && !bytes.empty()) {
      const size_t n = std::min<size_t>(bytes.size(), size_t{1} << 30);
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
      z.avail_in = static_cast<uInt>(n);
      bytes.remove_prefix(n);
    }
  }
  std::string_view unread() const {
    // What zlib has not consumed of the current chunk, then the rest.
    return z.avail_in ? std::string_view(reinterpret_cast<const char*>(z.next_in), z.avail_in + bytes.size()) : bytes;
  }
};

GzipReader::GzipReader(std::string_view bytes, std::string what) : state_(std::make_unique<State>()) {
  state_->bytes = bytes;
  state_->what = std::move(what);
  if (!is_gzip(bytes)) state_->fail("not gzip (magic 1f 8b missing)");
  if (inflateInit2(&state_->z, 16 + MAX_WBITS) != Z_OK) state_->fail("zlib could not start");
}

GzipReader::~GzipReader() { inflateEnd(&state_->z); }

size_t GzipReader::read(char* dst, size_t n) {
  State& s = *state_;
  size_t got = 0;
  while (got < n && !s.done) {
    s.feed();
    const size_t want = std::min<size_t>(n - got, size_t{1} << 30);
    s.z.next_out = reinterpret_cast<Bytef*>(dst + got);
    s.z.avail_out = static_cast<uInt>(want);
    const int rc = inflate(&s.z, Z_NO_FLUSH);
    got += want - s.z.avail_out;
    if (rc == Z_STREAM_END) {
      // Another member may follow (as `cat a.gz b.gz`); zero bytes after the last one are padding.
      const auto rest = s.unread();
      if (std::all_of(rest.begin(), rest.end(), [](char c) { return c == 0; })) {
        s.done = true;
      } else if (!is_gzip(rest)) {
        s.fail("garbage after gzip member");
      } else if (inflateReset(&s.z) != Z_OK) {
        s.fail("zlib could not restart");
      }
    } else if (rc == Z_BUF_ERROR) {
      if (s.z.avail_in == 0 && s.bytes.empty()) s.fail("unexpected end of data");
    } else if (rc != Z_OK) {
      s.fail(s.z.msg ? s.z.msg : "inflate error " + std::to_string(rc));
    }
  }
  return got;
}

std::string gunzip(std::string_view bytes, const std::string& what, size_t max_output) {
  GzipReader reader(bytes, what);
  std::string out;
  char buf[1 << 16];
  while (const size_t n = reader.read(buf, sizeof buf)) {
    if (n > max_output - out.size())
      throw std::runtime_error(what + ": gzip data decompresses to more than " + std::to_string(max_output) + " bytes");
    out.append(buf, n);
  }
  return out;
}

std::string gzip(std::string_view bytes, int level) {
  if (bytes.size() > std::numeric_limits<uInt>::max()) throw std::runtime_error("gzip: input over 4 GB");
  z_stream z{};
  if (deflateInit2(&z, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("gzip: zlib could not start");
  std::string out(deflateBound(&z, static_cast<uLong>(bytes.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw std::runtime_error("gzip: compression failed");
  return out;
}

}  // namespace perceiver::datasets

// gzip (RFC 1952) through zlib: streaming decompression with an output bound, and compression.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

namespace perceiver::datasets {

bool is_gzip(std::string_view bytes);

// Pulls decompressed bytes out of every gzip member of `bytes` (zero padding after the last member
// is allowed), so that a caller can stop as soon as it has what it expects: a small file that would
// inflate to gigabytes costs only what is read. Errors are std::runtime_error naming `what`.
class GzipReader {
 public:
  GzipReader(std::string_view bytes, std::string what);
  ~GzipReader();
  GzipReader(const GzipReader&) = delete;
  GzipReader& operator=(const GzipReader&) = delete;
  // Up to n bytes into dst; fewer only at the end of the data.
  size_t read(char* dst, size_t n);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Decompresses everything, refusing output beyond max_output bytes.
std::string gunzip(std::string_view bytes, const std::string& what = "gzip data",
                   size_t max_output = std::numeric_limits<size_t>::max());
// One gzip member (zlib's default compression level unless given).
std::string gzip(std::string_view bytes, int level = -1);

}  // namespace perceiver::datasets

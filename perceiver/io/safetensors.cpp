#include "perceiver/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <tuple>
#include <vector>

#include "perceiver/io/json_io.h"

namespace perceiver::io {
namespace {

using nlohmann::json;

struct DtypeEntry {
  const char* name;
  torch::ScalarType type;
};

// The dtypes LibTorch 1.13 can represent (no unsigned >8-bit or float8 types).
constexpr DtypeEntry kDtypes[] = {
    {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
    {"I64", torch::kInt64},   {"I32", torch::kInt32},   {"I16", torch::kInt16},   {"I8", torch::kInt8},
    {"U8", torch::kUInt8},    {"BOOL", torch::kBool},
};

std::string supported_dtype_list() {
  std::string s;
  for (const auto& d : kDtypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::runtime_error("safetensors file '" + source + "': " + what);
}

// The reference implementation's limit: a larger header is refused before it is read.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// A safetensors header is {name: {"shape": [int, ...], ...}}: nothing nests deeper than depth 2
// (the top object is depth 0), so deeper values are refused while parsing.
constexpr int kMaxHeaderDepth = 2;


// Random access to the bytes of a file (pread, no mapping: a file that shrinks while it is read gives
// an error, not SIGBUS) or of a buffer.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  // Copies n bytes at offset to dst; false when fewer are there.
  virtual bool read(uint64_t offset, void* dst, uint64_t n) const = 0;
};

class FileSource final : public ByteSource {
 public:
  explicit FileSource(const std::filesystem::path& file) : name_(file.string()) {
    fd_ = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail(name_, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      fail(name_, "not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~FileSource() override { ::close(fd_); }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  uint64_t size() const override { return size_; }
  bool read(uint64_t offset, void* dst, uint64_t n) const override {
    auto* out = static_cast<char*>(dst);
    while (n > 0) {
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
      const ssize_t got = ::pread(fd_, out, chunk, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      out += got;
      offset += static_cast<uint64_t>(got);
      n -= static_cast<uint64_t>(got);
    }
    return true;
  }

 private:
  std::string name_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

class BufferSource final : public ByteSource {
 public:
  explicit BufferSource(std::string_view bytes) : bytes_(bytes) {}
  uint64_t size() const override { return bytes_.size(); }
  bool read(uint64_t offset, void* dst, uint64_t n) const override {
    if (offset > bytes_.size() || n > bytes_.size() - offset) return false;
    if (n > 0) std::memcpy(dst, bytes_.data() + offset, static_cast<size_t>(n));
    return true;
  }

 private:
  std::string_view bytes_;
};

uint64_t read_le_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// a * b, or nullopt on uint64 overflow.
std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return std::nullopt;
  return a * b;
}

uint64_t as_u64(const json& v, const std::string& source, const std::string& what) {
  if (!v.is_number_unsigned()) fail(source, what + " must be a non-negative integer, found " + json_excerpt(v));
  return v.get<uint64_t>();
}

// One tensor's header entry, validated against the data section (nothing read yet).
struct TensorEntry {
  std::string name;
  torch::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // relative to the data section
};

TensorEntry parse_entry(const std::string& source, const std::string& name, const json& entry, uint64_t data_size) {
  const std::string where = "tensor '" + excerpt(name) + "'";
  if (!entry.is_object()) fail(source, where + ": header entry must be an object, found " + json_excerpt(entry));
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!entry.contains(field)) fail(source, where + ": header entry lacks \"" + field + "\"");

  const json& dtype_json = entry.at("dtype");
  if (!dtype_json.is_string()) fail(source, where + ": dtype must be a string, found " + json_excerpt(dtype_json));
  const auto dtype_name = dtype_json.get<std::string>();
  std::optional<torch::ScalarType> dtype;
  for (const auto& d : kDtypes)
    if (dtype_name == d.name) dtype = d.type;
  if (!dtype)
    fail(source, where + ": unsupported dtype '" + excerpt(dtype_name) + "' (supported: " + supported_dtype_list() + ")");

  TensorEntry out{name, *dtype, {}, 0, 0};
  const json& shape_json = entry.at("shape");
  if (!shape_json.is_array()) fail(source, where + ": shape must be an array, found " + json_excerpt(shape_json));
  uint64_t numel = 1;
  for (const auto& d : shape_json) {
    const uint64_t dim = as_u64(d, source, where + ": shape entry");
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) fail(source, where + ": shape entry too large");
    const auto n = checked_mul(numel, dim);
    if (!n) fail(source, where + ": shape " + json_excerpt(shape_json) + " overflows");
    numel = *n;
    out.shape.push_back(static_cast<int64_t>(dim));
  }
  const auto nbytes = checked_mul(numel, c10::elementSize(*dtype));
  if (!nbytes) fail(source, where + ": shape " + json_excerpt(shape_json) + " overflows");

  const json& offsets = entry.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2)
    fail(source, where + ": data_offsets must be [begin, end], found " + json_excerpt(offsets));
  out.begin = as_u64(offsets[0], source, where + ": data_offsets[0]");
  out.end = as_u64(offsets[1], source, where + ": data_offsets[1]");
  if (out.begin > out.end) fail(source, where + ": data_offsets " + json_excerpt(offsets) + " has begin > end");
  if (out.end > data_size)
    fail(source, where + ": data_offsets " + json_excerpt(offsets) + " exceed the data section of " + std::to_string(data_size) +
                     " bytes (truncated file?)");
  if (out.end - out.begin != *nbytes)
    fail(source, where + ": data_offsets " + json_excerpt(offsets) + " span " + std::to_string(out.end - out.begin) +
                     " bytes but dtype " + dtype_name + " and shape " + json_excerpt(shape_json) + " need " +
                     std::to_string(*nbytes));
  return out;
}

// Tensors may not share bytes (as in the reference implementation): that also bounds what is
// allocated by the size of the file.
void check_no_overlap(const std::string& source, std::vector<const TensorEntry*> entries) {
  std::sort(entries.begin(), entries.end(),
            [](const TensorEntry* a, const TensorEntry* b) { return std::tie(a->begin, a->end) < std::tie(b->begin, b->end); });
  const TensorEntry* previous = nullptr;
  for (const TensorEntry* e : entries) {
    if (e->begin == e->end) continue;
    if (previous && e->begin < previous->end)
      fail(source, "tensors '" + excerpt(previous->name) + "' (bytes " + std::to_string(previous->begin) + "-" +
                       std::to_string(previous->end) + ") and '" + excerpt(e->name) + "' (bytes " + std::to_string(e->begin) +
                       "-" + std::to_string(e->end) + ") overlap");
    previous = e;
  }
}

SafetensorsContents read_from(const ByteSource& in, const std::string& source) {
  const uint64_t size = in.size();
  if (size < 8)
    fail(source, "file is " + std::to_string(size) + " bytes, too short for the 8-byte header length (truncated file?)");
  uint8_t len_bytes[8];
  if (!in.read(0, len_bytes, 8)) fail(source, "the file shrank while it was read");
  const uint64_t header_len = read_le_u64(len_bytes);
  if (header_len > kMaxHeaderBytes)
    fail(source, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                     std::to_string(kMaxHeaderBytes) + " bytes (corrupt file?)");
  if (header_len > size - 8)
    fail(source, "header length " + std::to_string(header_len) + " exceeds the " + std::to_string(size - 8) +
                     " bytes after the length field (truncated file?)");

  std::string header_text(static_cast<size_t>(header_len), '\0');
  if (!in.read(8, header_text.data(), header_len)) fail(source, "the file shrank while its header was read");
  json header;
  try {
    header = parse_json(header_text, "header", kMaxHeaderDepth);
  } catch (const std::runtime_error& e) {
    fail(source, e.what());
  }
  if (!header.is_object()) fail(source, "header must be a JSON object");

  const uint64_t data_begin = 8 + header_len;
  const uint64_t data_size = size - data_begin;
  SafetensorsContents out;
  std::vector<TensorEntry> entries;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(source, "__metadata__ must be an object, found " + json_excerpt(entry));
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail(source, "__metadata__ value for '" + excerpt(k) + "' must be a string, found " + json_excerpt(v));
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(source, name, entry, data_size));
  }
  std::vector<const TensorEntry*> pointers;
  for (const auto& e : entries) pointers.push_back(&e);
  check_no_overlap(source, pointers);

  for (const auto& e : entries) {
    torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype));
    const uint64_t nbytes = e.end - e.begin;
    if (nbytes > 0 && !in.read(data_begin + e.begin, t.data_ptr(), nbytes))
      fail(source, "tensor '" + excerpt(e.name) + "': the file shrank while it was read (it was " + std::to_string(size) +
                       " bytes when opened)");
    if (e.dtype == torch::kBool) {
      // Any byte other than 0/1 is not a valid C++ bool.
      const auto* bytes = static_cast<const uint8_t*>(t.data_ptr());
      for (uint64_t i = 0; i < nbytes; ++i)
        if (bytes[i] > 1)
          fail(source, "tensor '" + excerpt(e.name) + "': BOOL byte at index " + std::to_string(i) + " is neither 0 nor 1");
    }
    out.tensors[e.name] = std::move(t);
  }
  return out;
}

}  // namespace

std::string safetensors_dtype_name(torch::ScalarType dtype) {
  for (const auto& d : kDtypes)
    if (d.type == dtype) return d.name;
  throw std::runtime_error(std::string("safetensors cannot store dtype ") + c10::toString(dtype) +
                           " (supported: " + supported_dtype_list() + ")");
}

SafetensorsContents read_safetensors(const std::filesystem::path& file) {
  const FileSource source(file);
  return read_from(source, file.string());
}

SafetensorsContents parse_safetensors(std::string_view bytes, const std::string& name) {
  return read_from(BufferSource(bytes), name);
}

TensorMap load_safetensors(const std::filesystem::path& file) { return read_safetensors(file).tensors; }

void save_safetensors(const std::filesystem::path& file, const TensorMap& tensors, const Metadata& metadata) {
  // Same compact JSON as HF's writer: "__metadata__" first, then tensors by name, fields alphabetical.
  std::string header = "{";
  if (!metadata.empty()) header += "\"__metadata__\":" + json(metadata).dump();
  std::vector<torch::Tensor> blobs;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") throw std::runtime_error("safetensors: a tensor cannot be named __metadata__");
    if (!tensor.defined())
      throw std::runtime_error("safetensors: tensor '" + name + "' is undefined (writing '" + file.string() + "')");
    const std::string dtype = safetensors_dtype_name(tensor.scalar_type());
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t nbytes = t.numel() * t.element_size();
    if (header.size() > 1) header += ",";
    header += json(name).dump() + ":{\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + nbytes) + "],\"dtype\":\"" + dtype + "\",\"shape\":" + json(t.sizes().vec()).dump() +
              "}";
    offset += nbytes;
    blobs.push_back(std::move(t));
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  // Write next to the target and rename, so a failure never leaves a half-written checkpoint.
  std::filesystem::path tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("safetensors: cannot open '" + tmp.string() + "' for writing");
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const auto& t : blobs)
      if (t.numel() > 0)
        out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
    out.close();
    if (!out) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw std::runtime_error("safetensors: failed writing '" + tmp.string() + "'");
    }
  }
  std::filesystem::rename(tmp, file);
}

}  // namespace perceiver::io

#include "perceiver/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <nlohmann/json.hpp>
#include <stdexcept>

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

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& what) {
  throw std::runtime_error("safetensors file '" + file.string() + "': " + what);
}

// Read-only private mapping of a whole file, unmapped on destruction.
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& file) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(file, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      fail(file, "not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        fail(file, std::string("mmap failed: ") + std::strerror(err));
      }
      data_ = static_cast<const uint8_t*>(p);
      ::madvise(p, size_, MADV_SEQUENTIAL);
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
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

uint64_t as_u64(const json& v, const std::filesystem::path& file, const std::string& what) {
  if (!v.is_number_unsigned()) fail(file, what + " must be a non-negative integer, found " + v.dump());
  return v.get<uint64_t>();
}

torch::Tensor read_tensor(const std::filesystem::path& file, const std::string& name, const json& entry,
                          const uint8_t* data, uint64_t data_size) {
  const std::string where = "tensor '" + name + "'";
  if (!entry.is_object()) fail(file, where + ": header entry must be an object, found " + entry.dump());
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!entry.contains(field)) fail(file, where + ": header entry lacks \"" + field + "\"");

  const json& dtype_json = entry.at("dtype");
  if (!dtype_json.is_string()) fail(file, where + ": dtype must be a string, found " + dtype_json.dump());
  const auto dtype_name = dtype_json.get<std::string>();
  std::optional<torch::ScalarType> dtype;
  for (const auto& d : kDtypes)
    if (dtype_name == d.name) dtype = d.type;
  if (!dtype) fail(file, where + ": unsupported dtype '" + dtype_name + "' (supported: " + supported_dtype_list() + ")");

  const json& shape_json = entry.at("shape");
  if (!shape_json.is_array()) fail(file, where + ": shape must be an array, found " + shape_json.dump());
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  for (const auto& d : shape_json) {
    const uint64_t dim = as_u64(d, file, where + ": shape entry");
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) fail(file, where + ": shape entry too large");
    const auto n = checked_mul(numel, dim);
    if (!n) fail(file, where + ": shape " + shape_json.dump() + " overflows");
    numel = *n;
    shape.push_back(static_cast<int64_t>(dim));
  }
  const auto nbytes = checked_mul(numel, c10::elementSize(*dtype));
  if (!nbytes) fail(file, where + ": shape " + shape_json.dump() + " overflows");

  const json& offsets = entry.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2)
    fail(file, where + ": data_offsets must be [begin, end], found " + offsets.dump());
  const uint64_t begin = as_u64(offsets[0], file, where + ": data_offsets[0]");
  const uint64_t end = as_u64(offsets[1], file, where + ": data_offsets[1]");
  if (begin > end) fail(file, where + ": data_offsets " + offsets.dump() + " has begin > end");
  if (end > data_size)
    fail(file, where + ": data_offsets " + offsets.dump() + " exceed the data section of " + std::to_string(data_size) +
                   " bytes (truncated file?)");
  if (end - begin != *nbytes)
    fail(file, where + ": data_offsets " + offsets.dump() + " span " + std::to_string(end - begin) +
                   " bytes but dtype " + dtype_name + " and shape " + shape_json.dump() + " need " +
                   std::to_string(*nbytes));

  const uint8_t* src = data + begin;
  if (*dtype == torch::kBool) {
    // Any byte other than 0/1 is not a valid C++ bool.
    for (uint64_t i = 0; i < *nbytes; ++i)
      if (src[i] > 1) fail(file, where + ": BOOL byte at index " + std::to_string(i) + " is neither 0 nor 1");
  }
  torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(*dtype));
  if (*nbytes > 0) std::memcpy(t.data_ptr(), src, *nbytes);
  return t;
}

}  // namespace

std::string safetensors_dtype_name(torch::ScalarType dtype) {
  for (const auto& d : kDtypes)
    if (d.type == dtype) return d.name;
  throw std::runtime_error(std::string("safetensors cannot store dtype ") + c10::toString(dtype) +
                           " (supported: " + supported_dtype_list() + ")");
}

SafetensorsContents read_safetensors(const std::filesystem::path& file) {
  const MappedFile mapped(file);
  const uint64_t size = mapped.size();
  if (size < 8)
    fail(file, "file is " + std::to_string(size) + " bytes, too short for the 8-byte header length (truncated file?)");
  const uint64_t header_len = read_le_u64(mapped.data());
  if (header_len > size - 8)
    fail(file, "header length " + std::to_string(header_len) + " exceeds the " + std::to_string(size - 8) +
                   " bytes after the length field (truncated file?)");

  const auto* header_begin = reinterpret_cast<const char*>(mapped.data() + 8);
  json header;
  try {
    header = json::parse(header_begin, header_begin + header_len);
  } catch (const json::exception& e) {
    fail(file, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(file, "header must be a JSON object");

  const uint8_t* data = mapped.data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  SafetensorsContents out;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(file, "__metadata__ must be an object, found " + entry.dump());
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail(file, "__metadata__ value for '" + k + "' must be a string, found " + v.dump());
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    out.tensors[name] = read_tensor(file, name, entry, data, data_size);
  }
  return out;
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

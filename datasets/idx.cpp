#include "datasets/idx.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>

#include "datasets/common.h"
#include "datasets/file_store.h"
#include "datasets/gzip.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

// ---- IDX ----
namespace {

constexpr uint64_t kMaxIdxElements = uint64_t{1} << 40;
constexpr uint64_t kMaxDeflateRatio = 1032;

struct IdxType {
  unsigned char code;
  torch::ScalarType dtype;
  int size;
};
constexpr std::array<IdxType, 6> kIdxTypes = {{{0x08, torch::kUInt8, 1},
                                               {0x09, torch::kInt8, 1},
                                               {0x0B, torch::kInt16, 2},
                                               {0x0C, torch::kInt32, 4},
                                               {0x0D, torch::kFloat, 4},
                                               {0x0E, torch::kDouble, 8}}};

}  // namespace

torch::Tensor parse_idx(const std::string& raw, const std::string& name) {
  // Bytes are pulled from the file or through the decompressor, never more than the header announces
  // plus one (to detect trailing data): a gzip bomb costs only what the header claims.
  std::unique_ptr<GzipReader> gz;
  if (is_gzip(raw)) gz = std::make_unique<GzipReader>(raw, name);
  size_t raw_pos = 0;
  auto pull = [&](char* dst, size_t n) -> size_t {
    if (gz) return gz->read(dst, n);
    n = std::min(n, raw.size() - raw_pos);
    if (n > 0) std::memcpy(dst, raw.data() + raw_pos, n);  // an empty tensor's data pointer may be null
    raw_pos += n;
    return n;
  };
  unsigned char magic[4];
  const size_t got = pull(reinterpret_cast<char*>(magic), 4);
  if (got < 4 || magic[0] != 0 || magic[1] != 0)
    throw std::runtime_error(name + ": not an IDX file (expected magic 00 00 <type> <ndims>)");
  const auto type = std::find_if(kIdxTypes.begin(), kIdxTypes.end(), [&](const IdxType& t) { return t.code == magic[2]; });
  if (type == kIdxTypes.end())
    throw std::runtime_error(name + ": unknown IDX type byte " + std::to_string(magic[2]) +
                             " (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)");
  const int ndims = magic[3];
  if (ndims == 0) throw std::runtime_error(name + ": IDX with 0 dimensions");
  std::vector<unsigned char> dims(4 * static_cast<size_t>(ndims));
  const size_t header = 4 + dims.size();
  const size_t got_dims = pull(reinterpret_cast<char*>(dims.data()), dims.size());
  if (got_dims < dims.size())
    throw std::runtime_error(name + ": truncated IDX header (" + std::to_string(ndims) + " dims need " +
                             std::to_string(header) + " bytes, file has " + std::to_string(4 + got_dims) + ")");
  std::vector<int64_t> shape;
  uint64_t count = 1;
  for (int i = 0; i < ndims; ++i) {
    const unsigned char* p = dims.data() + 4 * i;
    const uint64_t dim = (uint64_t{p[0]} << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
    shape.push_back(static_cast<int64_t>(dim));
    if (dim != 0 && count > kMaxIdxElements / dim)  // checked before multiplying: no wrap-around
      throw std::runtime_error(name + ": IDX dimensions " + c10::str(c10::IntArrayRef(shape)) +
                               "... hold more than 2^40 elements (corrupt header?)");
    count *= dim;
  }
  const uint64_t payload = count * static_cast<uint64_t>(type->size);
  const uint64_t expected = header + payload;
  // Check what the file can hold before allocating: its size, or for gzip, its size times deflate's
  // largest compression ratio (1032:1).
  if (!gz && raw.size() < expected)
    throw std::runtime_error(name + ": IDX truncated: dims need " + std::to_string(expected) + " bytes, found " +
                             std::to_string(raw.size()));
  if (gz && expected / kMaxDeflateRatio > raw.size())
    throw std::runtime_error(name + ": IDX header announces " + std::to_string(expected) + " bytes, more than " +
                             std::to_string(raw.size()) + " bytes of gzip data can hold (corrupt header?)");
  auto t = torch::empty(shape, type->dtype);
  auto* out = static_cast<char*>(t.data_ptr());
  const size_t got_payload = pull(out, payload);
  char extra = 0;
  if (got_payload < payload || pull(&extra, 1) != 0)
    throw std::runtime_error(name + ": IDX " + (got_payload < payload ? "truncated" : "has trailing bytes") +
                             ": dims need " + std::to_string(expected) + " bytes" +
                             (got_payload < payload ? ", found " + std::to_string(header + got_payload) : std::string()));
  const int sz = type->size;
  for (uint64_t i = 0; i < count && sz > 1; ++i)  // IDX is big-endian
    std::reverse(out + i * sz, out + (i + 1) * sz);
  return t;
}

torch::Tensor read_idx(const fs::path& path) { return parse_idx(read_file_bytes(path), "'" + path.string() + "'"); }

void write_idx(const fs::path& path, const torch::Tensor& tensor, bool gzip) {
  const auto type = std::find_if(kIdxTypes.begin(), kIdxTypes.end(), [&](const IdxType& t) { return t.dtype == tensor.scalar_type(); });
  if (type == kIdxTypes.end()) throw std::invalid_argument("write_idx: dtype has no IDX type code");
  if (tensor.dim() == 0 || tensor.dim() > 255) throw std::invalid_argument("write_idx: need 1..255 dims");
  std::string bytes = {'\0', '\0', static_cast<char>(type->code), static_cast<char>(tensor.dim())};
  for (const int64_t s : tensor.sizes())
    for (int k = 3; k >= 0; --k) bytes += static_cast<char>((s >> (8 * k)) & 0xFF);
  const auto t = tensor.contiguous();
  const auto* src = static_cast<const unsigned char*>(t.data_ptr());
  const int sz = type->size;
  for (int64_t i = 0; i < t.numel(); ++i)
    for (int k = sz - 1; k >= 0; --k) bytes += static_cast<char>(src[i * sz + k]);
  if (gzip) bytes = datasets::gzip(bytes);
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write IDX file '" + path.string() + "'");
}

namespace {
// `classes`, or "0".."max label" when empty; a label outside them is an error naming the file.
std::vector<std::string> checked_classes(const torch::Tensor& labels, const fs::path& file, std::vector<std::string> classes) {
  const int64_t max_label = labels.numel() ? labels.max().item<int64_t>() : -1;
  if (classes.empty())
    for (int64_t i = 0; i <= max_label; ++i) classes.push_back(std::to_string(i));
  if (max_label >= static_cast<int64_t>(classes.size()) || (labels.numel() && labels.min().item<int64_t>() < 0))
    throw std::runtime_error("'" + file.string() + "': label " + std::to_string(max_label) + " outside the " +
                             std::to_string(classes.size()) + " classes");
  return classes;
}
}  // namespace

ImageClassificationSet load_idx_classification(const fs::path& images, const fs::path& labels,
                                               std::vector<std::string> classes) {
  ImageClassificationSet set;
  auto img = read_idx(images);
  auto lab = read_idx(labels);
  if (img.scalar_type() != torch::kUInt8 || (img.dim() != 3 && img.dim() != 4))
    throw std::runtime_error("'" + images.string() + "': expected uint8 (N, H, W[, C]) images");
  if (lab.dim() != 1 || lab.size(0) != img.size(0))
    throw std::runtime_error("'" + labels.string() + "': expected " + std::to_string(img.size(0)) + " labels, found shape " +
                             c10::str(lab.sizes()));
  set.images = img.dim() == 3 ? img.unsqueeze(-1) : img;
  set.labels = lab.to(torch::kInt64);
  set.classes = checked_classes(set.labels, labels, std::move(classes));
  return set;
}

namespace {

// uint8 IDX images (N, H, W[, C]) read one record at a time.
class IdxImageDataset : public Dataset {
 public:
  IdxImageDataset(FileStamp file, int64_t offset, int64_t count, std::vector<int64_t> shape)
      : file_(std::move(file)), offset_(offset), count_(count), shape_(std::move(shape)) {}
  int64_t size() const override { return count_; }
  Example get(int64_t index) const override {
    auto image = torch::empty(shape_, torch::kUInt8);
    const int64_t record = image.numel();
    read_stamped(file_, offset_ + index * record, record, static_cast<char*>(image.data_ptr()));
    return {{"images", image}};
  }

 private:
  FileStamp file_;
  int64_t offset_, count_;
  std::vector<int64_t> shape_;  // (H, W, C)
};

}  // namespace

ImageSet open_idx_images(const fs::path& images, const fs::path& labels, std::vector<std::string> classes,
                         const ImageFolderOptions& options) {
  std::string head(4 + 4 * 4, '\0');
  {
    std::ifstream in(images, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open file '" + images.string() + "'");
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    head.resize(static_cast<size_t>(in.gcount()));
  }
  const auto u = [&](size_t i) { return static_cast<unsigned char>(head[i]); };
  const bool plain_u8 = !is_gzip(head) && head.size() >= 4 && u(0) == 0 && u(1) == 0 && u(2) == 0x08 &&
                        (u(3) == 3 || u(3) == 4) && head.size() >= 4 + 4 * size_t{u(3)};
  if (!plain_u8) return in_memory_images(load_idx_classification(images, labels, std::move(classes)), options);

  const int ndims = u(3);
  std::vector<int64_t> dims;
  for (int i = 0; i < ndims; ++i) {
    const size_t p = 4 + 4 * static_cast<size_t>(i);
    dims.push_back(static_cast<int64_t>((uint64_t{u(p)} << 24) | (u(p + 1) << 16) | (u(p + 2) << 8) | u(p + 3)));
  }
  if (ndims == 3) dims.push_back(1);
  const auto stamp = FileStamp::of(images);
  const int64_t header = 4 + 4 * ndims;
  // The payload the dims announce, checked against the file before any product can overflow.
  int64_t payload = 1;
  for (const auto d : dims)
    payload = d != 0 && payload > (stamp.size - header) / d ? stamp.size : payload * d;
  if (stamp.size != header + payload || std::find(dims.begin(), dims.end(), 0) != dims.end())
    throw std::runtime_error("'" + images.string() + "': IDX dims " + c10::str(c10::IntArrayRef(dims).slice(0, ndims)) +
                             " are empty or do not match the file's " + std::to_string(stamp.size) + " bytes");
  const auto lab = read_idx(labels);
  if (lab.dim() != 1 || lab.size(0) != dims[0])
    throw std::runtime_error("'" + labels.string() + "': expected " + std::to_string(dims[0]) + " labels, found shape " +
                             c10::str(lab.sizes()));
  ImageSet set;
  set.labels = lab.to(torch::kInt64);
  set.classes = checked_classes(set.labels, labels, std::move(classes));
  set.images = processed_images(
      std::make_shared<IdxImageDataset>(stamp, header, dims[0], std::vector<int64_t>(dims.begin() + 1, dims.end())),
      options);
  set.shape = dims[0] > 0 ? set.images->get(0).at("images").sizes().vec() : std::vector<int64_t>(dims.begin() + 1, dims.end());
  return set;
}

fs::path fashion_mnist_dir() {
  return find_package_file("dataset-fashion-mnist", "/fashion-mnist/train-images-idx3-ubyte.gz",
                           "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
      .parent_path();
}

std::vector<std::string> fashion_mnist_classes() {
  return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
}

ImageClassificationSet load_fashion_mnist(bool train, const fs::path& dir) {
  const std::string prefix = train ? "train" : "t10k";
  return load_idx_classification(dir / (prefix + "-images-idx3-ubyte.gz"), dir / (prefix + "-labels-idx1-ubyte.gz"),
                                 fashion_mnist_classes());
}

}  // namespace perceiver::datasets

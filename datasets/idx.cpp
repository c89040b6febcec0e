#include "datasets/idx.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <set>
#include <stdexcept>

#include "datasets/common.h"
#include "datasets/labelled_text.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

// ---- inflate (RFC 1951), after zlib's puff.c: canonical Huffman decoding, bit by bit ----
namespace {

struct InflateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class BitReader {
 public:
  BitReader(const unsigned char* data, size_t size, size_t pos) : data_(data), size_(size), pos_(pos) {}
  uint32_t bits(int need) {
    uint64_t val = buf_;
    while (count_ < need) {
      if (pos_ >= size_) throw InflateError("truncated deflate stream");
      val |= uint64_t{data_[pos_++]} << count_;
      count_ += 8;
    }
    buf_ = static_cast<uint32_t>(val >> need);
    count_ -= need;
    return static_cast<uint32_t>(val & ((uint64_t{1} << need) - 1));
  }
  void align() {
    buf_ = 0;
    count_ = 0;
  }
  size_t pos() const { return pos_; }
  void skip(size_t n) { pos_ += n; }
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const unsigned char* data_;
  size_t size_;
  size_t pos_;
  uint32_t buf_ = 0;
  int count_ = 0;
};

constexpr int kMaxBits = 15;

struct Huffman {
  std::array<int16_t, kMaxBits + 1> count{};
  std::array<int16_t, 288> symbol{};
};

// Returns the number of unused codes (0: complete); throws when over-subscribed.
int build_huffman(Huffman& h, const int16_t* lengths, int n) {
  h.count.fill(0);
  for (int s = 0; s < n; ++s) ++h.count[lengths[s]];
  if (h.count[0] == n) return 0;
  int left = 1;
  for (int len = 1; len <= kMaxBits; ++len) {
    left <<= 1;
    left -= h.count[len];
    if (left < 0) throw InflateError("over-subscribed Huffman code");
  }
  std::array<int16_t, kMaxBits + 1> offs{};
  for (int len = 1; len < kMaxBits; ++len) offs[len + 1] = offs[len] + h.count[len];
  for (int s = 0; s < n; ++s)
    if (lengths[s] != 0) h.symbol[offs[lengths[s]]++] = static_cast<int16_t>(s);
  return left;
}

int decode_symbol(BitReader& in, const Huffman& h) {
  int code = 0, first = 0, index = 0;
  for (int len = 1; len <= kMaxBits; ++len) {
    code |= static_cast<int>(in.bits(1));
    const int count = h.count[len];
    if (code - count < first) return h.symbol[index + (code - first)];
    index += count;
    first += count;
    first <<= 1;
    code <<= 1;
  }
  throw InflateError("invalid Huffman code");
}

constexpr std::array<int16_t, 29> kLenBase = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                              31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr std::array<int16_t, 29> kLenExtra = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                               2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr std::array<int16_t, 30> kDistBase = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,
                                               33,  49,  65,  97,  129, 193,  257,  385,  513,  769,
                                               1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
constexpr std::array<int16_t, 30> kDistExtra = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                                6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

void inflate_codes(BitReader& in, std::string& out, const Huffman& lencode, const Huffman& distcode) {
  while (true) {
    int sym = decode_symbol(in, lencode);
    if (sym < 256) {
      out += static_cast<char>(sym);
    } else if (sym == 256) {
      return;
    } else {
      sym -= 257;
      if (sym >= 29) throw InflateError("invalid length symbol");
      const size_t len = kLenBase[sym] + in.bits(kLenExtra[sym]);
      const int dsym = decode_symbol(in, distcode);
      if (dsym >= 30) throw InflateError("invalid distance symbol");
      const size_t dist = kDistBase[dsym] + in.bits(kDistExtra[dsym]);
      if (dist > out.size()) throw InflateError("distance too far back");
      const size_t from = out.size() - dist;
      for (size_t k = 0; k < len; ++k) out += out[from + k];  // overlapping copies repeat bytes
    }
  }
}

void inflate_stored(BitReader& in, std::string& out) {
  in.align();
  const size_t p = in.pos();
  if (p + 4 > in.size()) throw InflateError("truncated stored block header");
  const unsigned char* d = in.data();
  const unsigned len = d[p] | (d[p + 1] << 8);
  const unsigned nlen = d[p + 2] | (d[p + 3] << 8);
  if (len != (~nlen & 0xFFFFu)) throw InflateError("stored block length check failed");
  if (p + 4 + len > in.size()) throw InflateError("truncated stored block");
  out.append(reinterpret_cast<const char*>(d + p + 4), len);
  in.skip(4 + len);
}

void inflate_fixed(BitReader& in, std::string& out) {
  std::array<int16_t, 288> lengths{};
  int s = 0;
  for (; s < 144; ++s) lengths[s] = 8;
  for (; s < 256; ++s) lengths[s] = 9;
  for (; s < 280; ++s) lengths[s] = 7;
  for (; s < 288; ++s) lengths[s] = 8;
  Huffman lencode, distcode;
  build_huffman(lencode, lengths.data(), 288);
  std::array<int16_t, 30> dl{};
  dl.fill(5);
  build_huffman(distcode, dl.data(), 30);
  inflate_codes(in, out, lencode, distcode);
}

void inflate_dynamic(BitReader& in, std::string& out) {
  static constexpr std::array<int, 19> kOrder = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
  const int nlen = static_cast<int>(in.bits(5)) + 257;
  const int ndist = static_cast<int>(in.bits(5)) + 1;
  const int ncode = static_cast<int>(in.bits(4)) + 4;
  if (nlen > 286 || ndist > 30) throw InflateError("bad dynamic block counts");
  std::array<int16_t, 320> lengths{};
  for (int i = 0; i < ncode; ++i) lengths[kOrder[i]] = static_cast<int16_t>(in.bits(3));
  Huffman lencode, distcode;
  if (build_huffman(lencode, lengths.data(), 19) != 0) throw InflateError("incomplete code-length code");
  int index = 0;
  while (index < nlen + ndist) {
    int sym = decode_symbol(in, lencode);
    if (sym < 16) {
      lengths[index++] = static_cast<int16_t>(sym);
      continue;
    }
    int16_t len = 0;
    int repeat = 0;
    if (sym == 16) {
      if (index == 0) throw InflateError("repeat with no previous length");
      len = lengths[index - 1];
      repeat = 3 + static_cast<int>(in.bits(2));
    } else if (sym == 17) {
      repeat = 3 + static_cast<int>(in.bits(3));
    } else {
      repeat = 11 + static_cast<int>(in.bits(7));
    }
    if (index + repeat > nlen + ndist) throw InflateError("too many code lengths");
    while (repeat--) lengths[index++] = len;
  }
  if (lengths[256] == 0) throw InflateError("no end-of-block code");
  const int left = build_huffman(lencode, lengths.data(), nlen);
  if (left != 0 && nlen - lencode.count[0] != 1) throw InflateError("incomplete literal/length code");
  const int dleft = build_huffman(distcode, lengths.data() + nlen, ndist);
  if (dleft != 0 && ndist - distcode.count[0] != 1) throw InflateError("incomplete distance code");
  inflate_codes(in, out, lencode, distcode);
}

uint32_t crc32(const std::string& data) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (const char ch : data) c = table[(c ^ static_cast<unsigned char>(ch)) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t le32(const unsigned char* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t{p[3]} << 24); }

}  // namespace

bool is_gzip(const std::string& bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f && static_cast<unsigned char>(bytes[1]) == 0x8b;
}

std::string gunzip(const std::string& bytes, const std::string& what) {
  const auto* d = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  std::string result;
  size_t pos = 0;
  int member = 0;
  try {
    while (pos < n) {
      if (member > 0 && std::all_of(bytes.begin() + static_cast<std::ptrdiff_t>(pos), bytes.end(), [](char c) { return c == 0; }))
        break;  // zero padding after the last member
      if (n - pos < 18 || d[pos] != 0x1f || d[pos + 1] != 0x8b)
        throw InflateError(member == 0 ? "not gzip (magic 1f 8b missing)" : "garbage after gzip member");
      if (d[pos + 2] != 8) throw InflateError("unsupported compression method " + std::to_string(d[pos + 2]));
      const unsigned flags = d[pos + 3];
      size_t p = pos + 10;
      if (flags & 4) {  // FEXTRA
        if (p + 2 > n) throw InflateError("truncated header");
        p += 2 + (d[p] | (d[p + 1] << 8));
      }
      for (const unsigned bit : {8u, 16u}) {  // FNAME, FCOMMENT: zero-terminated
        if (flags & bit) {
          while (p < n && d[p] != 0) ++p;
          ++p;
        }
      }
      if (flags & 2) p += 2;  // FHCRC
      if (p >= n) throw InflateError("truncated header");
      std::string out;
      BitReader in(d, n, p);
      bool last = false;
      while (!last) {
        last = in.bits(1) != 0;
        switch (in.bits(2)) {
          case 0: inflate_stored(in, out); break;
          case 1: inflate_fixed(in, out); break;
          case 2: inflate_dynamic(in, out); break;
          default: throw InflateError("invalid block type 3");
        }
      }
      in.align();
      p = in.pos();
      if (p + 8 > n) throw InflateError("truncated gzip trailer");
      if (le32(d + p) != crc32(out)) throw InflateError("CRC32 mismatch");
      if (le32(d + p + 4) != static_cast<uint32_t>(out.size())) throw InflateError("length mismatch");
      result += out;
      pos = p + 8;
      ++member;
    }
  } catch (const InflateError& e) {
    throw std::runtime_error(what + ": corrupt or truncated gzip: " + e.what());
  }
  return result;
}

std::string gzip_stored(const std::string& bytes) {
  std::string out = {'\x1f', '\x8b', '\x08', '\0', '\0', '\0', '\0', '\0', '\0', '\xff'};
  size_t pos = 0;
  do {
    const size_t len = std::min<size_t>(65535, bytes.size() - pos);
    const bool last = pos + len == bytes.size();
    out += static_cast<char>(last ? 1 : 0);
    out += static_cast<char>(len & 0xFF);
    out += static_cast<char>(len >> 8);
    out += static_cast<char>(~len & 0xFF);
    out += static_cast<char>((~len >> 8) & 0xFF);
    out.append(bytes, pos, len);
    pos += len;
  } while (pos < bytes.size());
  const uint32_t crc = crc32(bytes), size = static_cast<uint32_t>(bytes.size());
  for (const uint32_t v : {crc, size})
    for (int k = 0; k < 4; ++k) out += static_cast<char>((v >> (8 * k)) & 0xFF);
  return out;
}

// ---- IDX ----
namespace {

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
  const std::string bytes = is_gzip(raw) ? gunzip(raw, name) : raw;
  const auto* d = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 4 || d[0] != 0 || d[1] != 0)
    throw std::runtime_error(name + ": not an IDX file (expected magic 00 00 <type> <ndims>)");
  const auto type = std::find_if(kIdxTypes.begin(), kIdxTypes.end(), [&](const IdxType& t) { return t.code == d[2]; });
  if (type == kIdxTypes.end())
    throw std::runtime_error(name + ": unknown IDX type byte " + std::to_string(d[2]) +
                             " (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)");
  const int ndims = d[3];
  if (ndims == 0) throw std::runtime_error(name + ": IDX with 0 dimensions");
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  if (bytes.size() < header)
    throw std::runtime_error(name + ": truncated IDX header (" + std::to_string(ndims) + " dims need " +
                             std::to_string(header) + " bytes, file has " + std::to_string(bytes.size()) + ")");
  std::vector<int64_t> shape;
  uint64_t count = 1;
  for (int i = 0; i < ndims; ++i) {
    const unsigned char* p = d + 4 + 4 * i;
    const uint64_t dim = (uint64_t{p[0]} << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
    shape.push_back(static_cast<int64_t>(dim));
    count *= dim;
    if (count > (uint64_t{1} << 40)) throw std::runtime_error(name + ": IDX dimensions are implausibly large");
  }
  const uint64_t expected = header + count * type->size;
  if (bytes.size() != expected)
    throw std::runtime_error(name + ": IDX " + (bytes.size() < expected ? "truncated" : "has trailing bytes") +
                             ": dims need " + std::to_string(expected) + " bytes, found " + std::to_string(bytes.size()));
  auto t = torch::empty(shape, type->dtype);
  auto* out = static_cast<unsigned char*>(t.data_ptr());
  const unsigned char* src = d + header;
  const int sz = type->size;
  for (uint64_t i = 0; i < count; ++i)  // IDX is big-endian
    for (int k = 0; k < sz; ++k) out[i * sz + k] = src[i * sz + (sz - 1 - k)];
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
  if (gzip) bytes = gzip_stored(bytes);
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write IDX file '" + path.string() + "'");
}

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
  const int64_t max_label = set.labels.numel() ? set.labels.max().item<int64_t>() : -1;
  if (classes.empty())
    for (int64_t i = 0; i <= max_label; ++i) classes.push_back(std::to_string(i));
  if (max_label >= static_cast<int64_t>(classes.size()) || (set.labels.numel() && set.labels.min().item<int64_t>() < 0))
    throw std::runtime_error("'" + labels.string() + "': label " + std::to_string(max_label) + " outside the " +
                             std::to_string(classes.size()) + " classes");
  set.classes = std::move(classes);
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

// ---- image folders ----
namespace {

torch::Tensor mat_to_tensor(const cv::Mat& m) {
  cv::Mat c = m.isContinuous() ? m : m.clone();
  return torch::from_blob(c.data, {c.rows, c.cols, c.channels()}, torch::kUInt8).clone();
}

cv::Mat decode(const fs::path& path, bool grayscale) {
  cv::Mat m;
  try {
    m = cv::imread(path.string(), grayscale ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
  } catch (const cv::Exception&) {
    m.release();
  }
  if (!m.empty() && m.depth() != CV_8U) m.convertTo(m, CV_8U);
  if (!m.empty() && !grayscale) cv::cvtColor(m, m, cv::COLOR_BGR2RGB);
  return m;
}

}  // namespace

torch::Tensor read_image(const fs::path& path, bool grayscale) {
  const cv::Mat m = decode(path, grayscale);
  if (m.empty()) throw std::runtime_error("cannot decode image '" + path.string() + "'");
  return mat_to_tensor(m);
}

namespace {

// Decodes, resizes and stacks images; a size mismatch without resizing is an error naming the file.
class ImageStack {
 public:
  explicit ImageStack(const ImageFolderOptions& options) : options_(options) {
    if ((options.height > 0) != (options.width > 0)) throw std::invalid_argument("images: set both height and width");
  }
  // False (and counted by the caller) when the file cannot be decoded.
  bool add(const fs::path& file) {
    cv::Mat m = decode(file, options_.grayscale);
    if (m.empty()) return false;
    if (options_.height > 0)
      cv::resize(m, m, cv::Size(static_cast<int>(options_.width), static_cast<int>(options_.height)), 0, 0, cv::INTER_AREA);
    auto t = mat_to_tensor(m);
    if (!images_.empty() && t.sizes() != images_.front().sizes())
      throw std::runtime_error("image '" + file.string() + "' is " + c10::str(t.sizes()) + " but earlier images are " +
                               c10::str(images_.front().sizes()) + "; set height and width to resize");
    images_.push_back(std::move(t));
    return true;
  }
  torch::Tensor stacked() const {
    const int64_t channels = options_.grayscale ? 1 : 3;
    return images_.empty() ? torch::empty({0, options_.height, options_.width, channels}, torch::kUInt8)
                           : torch::stack(images_);
  }

 private:
  ImageFolderOptions options_;
  std::vector<torch::Tensor> images_;
};

}  // namespace

ImageClassificationSet load_image_folder(const fs::path& root, const ImageFolderOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw std::runtime_error("image folder '" + root.string() + "' is not a directory");
  ImageStack stack(options);
  ImageClassificationSet set;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) set.classes.push_back(e.path().filename().string());
  std::sort(set.classes.begin(), set.classes.end());
  if (set.classes.empty()) throw std::runtime_error("image folder '" + root.string() + "' has no class subfolders");
  std::vector<int64_t> labels;
  for (size_t c = 0; c < set.classes.size(); ++c) {
    std::vector<fs::path> files;
    for (const auto& e : fs::recursive_directory_iterator(root / set.classes[c])) {
      if (!e.is_regular_file()) continue;
      std::string ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
      if (std::find(options.extensions.begin(), options.extensions.end(), ext) != options.extensions.end())
        files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      if (!stack.add(f)) {
        ++set.unreadable;
        continue;
      }
      labels.push_back(static_cast<int64_t>(c));
    }
  }
  set.images = stack.stacked();
  set.labels = torch::tensor(labels, torch::kInt64);
  return set;
}

ImageClassificationSet load_image_list(const fs::path& csv, const ImageListOptions& options) {
  const auto rows = parse_delimited(read_file_bytes(csv), ',');
  if (rows.empty()) throw std::runtime_error("image list '" + csv.string() + "': empty file, expected a header row");
  auto column = [&](const std::string& name) {
    const auto it = std::find(rows[0].begin(), rows[0].end(), name);
    if (it == rows[0].end()) throw std::runtime_error("image list '" + csv.string() + "': no column '" + name + "'");
    return static_cast<size_t>(it - rows[0].begin());
  };
  const size_t ic = column(options.image_field), lc = column(options.label_field);
  ImageStack stack(options);
  ImageClassificationSet set;
  for (size_t r = 1; r < rows.size(); ++r) {
    const auto& row = rows[r];
    if (row.size() <= std::max(ic, lc) || row[ic].empty() || row[lc].empty() || !stack.add(csv.parent_path() / row[ic])) {
      ++set.unreadable;
      continue;
    }
    set.label_names.push_back(row[lc]);
  }
  const std::set<std::string> names(set.label_names.begin(), set.label_names.end());
  set.classes.assign(names.begin(), names.end());
  std::vector<int64_t> labels;
  for (const auto& n : set.label_names)
    labels.push_back(std::lower_bound(set.classes.begin(), set.classes.end(), n) - set.classes.begin());
  set.images = stack.stacked();
  set.labels = torch::tensor(labels, torch::kInt64);
  return set;
}

// ---- augmentation ----
torch::Tensor augment_images(const torch::Tensor& images, const AugmentOptions& options, at::Generator& generator) {
  if (images.dim() != 3 && images.dim() != 4)
    throw std::invalid_argument("augment_images: expected (H, W, C) or (N, H, W, C), got " + c10::str(images.sizes()));
  if (options.crop_padding < 0) throw std::invalid_argument("augment_images: crop_padding must be >= 0");
  const bool single = images.dim() == 3;
  const auto batch = single ? images.unsqueeze(0) : images;
  const int64_t n = batch.size(0), h = batch.size(1), w = batch.size(2);
  const int64_t p = options.crop_padding;
  const auto offsets = torch::randint(0, 2 * p + 1, {n, 2}, generator, torch::kInt64);
  const auto flips = torch::rand({n}, generator, torch::kDouble);
  const auto padded = p > 0 ? torch::constant_pad_nd(batch, {0, 0, p, p, p, p}, 0) : batch;
  auto out = torch::empty_like(batch);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t dy = offsets[i][0].item<int64_t>(), dx = offsets[i][1].item<int64_t>();
    auto img = padded[i].slice(0, dy, dy + h).slice(1, dx, dx + w);
    if (flips[i].item<double>() < options.hflip_probability) img = img.flip({1});
    out[i].copy_(img);
  }
  return single ? out.squeeze(0) : out;
}

}  // namespace perceiver::datasets

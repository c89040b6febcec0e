#include "datasets/images.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <set>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "datasets/common.h"
#include "datasets/csv.h"
#include "datasets/idx.h"
#include "datasets/sources.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

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

bool is_image_file(const fs::directory_entry& entry, const ImageFolderOptions& options) {
  if (!entry.is_regular_file()) return false;
  std::string ext = entry.path().extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return std::find(options.extensions.begin(), options.extensions.end(), ext) != options.extensions.end();
}

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
    for (const auto& e : fs::recursive_directory_iterator(root / set.classes[c]))
      if (is_image_file(e, options)) files.push_back(e.path());
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

torch::Tensor augment_images(const torch::Tensor& images, const AugmentOptions& options, std::vector<at::Generator>& rows) {
  if (images.dim() != 4 || images.size(0) != static_cast<int64_t>(rows.size()))
    throw std::invalid_argument("augment_images: expected (N, H, W, C) images with one generator per image, got " +
                                c10::str(images.sizes()) + " and " + std::to_string(rows.size()) + " generators");
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < rows.size(); ++i) out.push_back(augment_images(images[static_cast<int64_t>(i)], options, rows[i]));
  return torch::stack(out);
}

// ---- sources (datasets/sources.h) ----
namespace {

ImageClassificationSet fashion_mnist_source(SourceOptions& s) {
  const auto split = s.get_string("split", s.is_train() ? "train" : "test");
  if (split != "train" && split != "test") s.fail("split", "must be train or test");
  const auto dir = s.get_string("path", "");
  return dir.empty() ? load_fashion_mnist(split == "train") : load_fashion_mnist(split == "train", dir);
}

ImageClassificationSet idx_source(SourceOptions& s) {
  return load_idx_classification(s.required("images"), s.required("labels"));
}

void read_resize(SourceOptions& s, ImageFolderOptions& o) {
  o.height = s.get_int("height", 0);
  o.width = s.get_int("width", 0);
}

ImageClassificationSet image_folder_source(SourceOptions& s) {
  ImageFolderOptions o;
  read_resize(s, o);
  auto out = load_image_folder(s.required("path"), o);
  if (out.unreadable > 0) spdlog::warn("{}: skipped {} unreadable images", s.path(), out.unreadable);
  return out;
}

ImageClassificationSet image_list_source(SourceOptions& s) {
  ImageListOptions o;
  read_resize(s, o);
  o.image_field = s.get_string("image_field", o.image_field);
  o.label_field = s.get_string("label_field", o.label_field);
  auto out = load_image_list(s.required("path"), o);
  if (out.unreadable > 0) spdlog::warn("{}: skipped {} unreadable images or incomplete rows", s.path(), out.unreadable);
  return out;
}

}  // namespace

const SourceRegistry<ImageSource>& image_sources() {
  static const SourceRegistry<ImageSource> registry = {
      {"fashion_mnist", fashion_mnist_source},
      {"idx", idx_source},
      {"image_folder", image_folder_source},
      {"image_list", image_list_source},
  };
  return registry;
}

}  // namespace perceiver::datasets

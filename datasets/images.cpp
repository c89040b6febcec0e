#include "datasets/images.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "datasets/common.h"
#include "datasets/csv.h"
#include "datasets/idx.h"
#include "datasets/image_shards.h"
#include "datasets/sources.h"
#include "perceiver/processing/image_processor.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

// ---- decoding ----
namespace {

torch::Tensor mat_to_tensor(const cv::Mat& m) {
  cv::Mat c = m.isContinuous() ? m : m.clone();
  return torch::from_blob(c.data, {c.rows, c.cols, c.channels()}, torch::kUInt8).clone();
}

std::string describe_shape(c10::IntArrayRef shape) {
  return shape.size() == 3 ? fmt::format("{}x{} with {} channel(s)", shape[1], shape[0], shape[2]) : c10::str(shape);
}

// The crop and resize a decoded uint8 image gets: the processor's (RGB) or a plain INTER_AREA resize.
cv::Mat crop_and_resize(cv::Mat m, const ImageFolderOptions& options) {
  if (options.processor) return options.processor->crop_and_resize(m);
  if (options.height > 0)
    cv::resize(m, m, cv::Size(static_cast<int>(options.width), static_cast<int>(options.height)), 0, 0, cv::INTER_AREA);
  return m;
}

torch::Tensor checked(torch::Tensor image, const std::string& source, const std::vector<int64_t>& shape) {
  if (!shape.empty() && image.sizes() != c10::IntArrayRef(shape))
    throw BadExample(source, "is " + describe_shape(image.sizes()) + " but the data set's images are " +
                                 describe_shape(shape) + " (set the source's height and width to resize every image)");
  return image;
}

std::string bytes_of(const std::string& path) {
  try {
    return read_file_bytes(path);
  } catch (const std::exception& e) {
    std::error_code ec;
    throw BadExample(path, fs::exists(path, ec) ? "cannot be read" : "the file no longer exists");
  }
}

}  // namespace

torch::Tensor decode_image(const std::string& bytes, const std::string& source, const ImageFolderOptions& options,
                           const std::vector<int64_t>& shape) {
  cv::Mat m;
  if (options.processor) {
    try {
      m = decode_image_rgb(bytes, source);  // as HF reads images: no EXIF rotation, alpha dropped
    } catch (const std::runtime_error& e) {
      throw BadExample(source, "cannot be decoded (corrupt, truncated or not an image)");
    }
  } else {
    try {
      const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
      m = cv::imdecode(buffer, options.grayscale ? cv::IMREAD_GRAYSCALE : cv::IMREAD_COLOR);
    } catch (const cv::Exception&) {
      m.release();
    }
    if (m.empty()) throw BadExample(source, "cannot be decoded (corrupt, truncated or not an image)");
    if (m.depth() != CV_8U) m.convertTo(m, CV_8U);
    if (!options.grayscale) cv::cvtColor(m, m, cv::COLOR_BGR2RGB);
  }
  return checked(mat_to_tensor(crop_and_resize(m, options)), source, shape);
}

torch::Tensor read_image(const fs::path& path, bool grayscale) {
  ImageFolderOptions o;
  o.grayscale = grayscale;
  return decode_image(bytes_of(path.string()), path.string(), o);
}

// ---- image files ----
ImageFileDataset::ImageFileDataset(std::vector<std::string> files, ImageFolderOptions options, std::vector<int64_t> shape)
    : files_(std::move(files)), options_(std::move(options)), shape_(std::move(shape)) {
  if ((options_.height > 0) != (options_.width > 0)) throw std::invalid_argument("images: set both height and width");
  if (!shape_.empty() || files_.empty()) return;
  // Every image must come out as the first readable one does.
  std::string last;
  for (size_t i = 0; i < files_.size() && i < 1000; ++i) {
    try {
      shape_ = get(static_cast<int64_t>(i)).at("images").sizes().vec();
      return;
    } catch (const BadExample& e) {
      last = e.what();
    }
  }
  throw std::runtime_error("none of the first " + std::to_string(std::min<size_t>(files_.size(), 1000)) +
                           " images can be read (the last: " + last + ")");
}

Example ImageFileDataset::get(int64_t index) const {
  const auto& file = files_.at(static_cast<size_t>(index));
  return {{"images", decode_image(bytes_of(file), file, options_, shape_)}};
}

bool is_image_file(const fs::directory_entry& entry, const ImageFolderOptions& options) {
  if (!entry.is_regular_file()) return false;
  std::string ext = entry.path().extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return std::find(options.extensions.begin(), options.extensions.end(), ext) != options.extensions.end();
}

namespace {
ImageSet image_files_set(std::vector<std::string> files, const ImageFolderOptions& options) {
  ImageSet set;
  auto dataset = std::make_shared<ImageFileDataset>(std::move(files), options);
  set.shape = dataset->shape();
  set.images = std::move(dataset);
  return set;
}
}  // namespace

ImageFolderListing list_image_folder_files(const fs::path& root, const ImageFolderOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw std::runtime_error("image folder '" + root.string() + "' is not a directory");
  std::vector<std::string> classes;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) classes.push_back(e.path().filename().string());
  std::sort(classes.begin(), classes.end());
  if (classes.empty()) throw std::runtime_error("image folder '" + root.string() + "' has no class subfolders");
  ImageFolderListing out;
  for (size_t c = 0; c < classes.size(); ++c) {
    std::vector<std::string> in_class;
    for (const auto& e : fs::recursive_directory_iterator(root / classes[c]))
      if (is_image_file(e, options)) in_class.push_back(e.path().string());
    std::sort(in_class.begin(), in_class.end());
    out.files.insert(out.files.end(), in_class.begin(), in_class.end());
    out.labels.insert(out.labels.end(), in_class.size(), static_cast<int64_t>(c));
  }
  out.classes = std::move(classes);
  return out;
}

ImageSet list_image_folder(const fs::path& root, const ImageFolderOptions& options) {
  auto listing = list_image_folder_files(root, options);
  auto set = image_files_set(std::move(listing.files), options);
  set.classes = std::move(listing.classes);
  set.labels = torch::tensor(listing.labels, torch::kInt64);
  return set;
}

ImageSet list_image_list(const fs::path& csv, const ImageListOptions& options) {
  const auto rows = parse_delimited(read_file_bytes(csv), ',');
  if (rows.empty()) throw std::runtime_error("image list '" + csv.string() + "': empty file, expected a header row");
  auto column = [&](const std::string& name) {
    const auto it = std::find(rows[0].begin(), rows[0].end(), name);
    if (it == rows[0].end()) throw std::runtime_error("image list '" + csv.string() + "': no column '" + name + "'");
    return static_cast<size_t>(it - rows[0].begin());
  };
  const size_t ic = column(options.image_field), lc = column(options.label_field);
  std::vector<std::string> files, label_names;
  int64_t skipped = 0;
  for (size_t r = 1; r < rows.size(); ++r) {
    const auto& row = rows[r];
    if (row.size() <= std::max(ic, lc) || row[ic].empty() || row[lc].empty()) {
      ++skipped;
      continue;
    }
    files.push_back((csv.parent_path() / row[ic]).string());
    label_names.push_back(row[lc]);
  }
  auto set = image_files_set(std::move(files), options);
  set.label_names = std::move(label_names);
  set.skipped = skipped;
  auto classes = sorted_ids(set.label_names);  // classes: the sorted distinct label fields
  set.classes = std::move(classes.names);
  set.labels = torch::tensor(classes.ids, torch::kInt64);
  return set;
}

std::shared_ptr<const Dataset> processed_images(std::shared_ptr<const Dataset> images, const ImageFolderOptions& options) {
  if (!options.processor && options.height <= 0) return images;
  return std::make_shared<MappedDataset>(std::move(images), [options](Example e, int64_t) {
    const auto image = e.at("images").contiguous();
    cv::Mat m(static_cast<int>(image.size(0)), static_cast<int>(image.size(1)), CV_8UC(static_cast<int>(image.size(2))),
              image.data_ptr<uint8_t>());
    if (options.processor) m = to_rgb(m);  // grey replicated, as HF's processor reads it
    return Example{{"images", mat_to_tensor(crop_and_resize(m, options))}};
  });
}

ImageSet in_memory_images(ImageClassificationSet images, const ImageFolderOptions& options) {
  ImageSet set;
  set.labels = images.labels;
  set.classes = std::move(images.classes);
  set.images = processed_images(std::make_shared<TensorDataset>(Example{{"images", images.images}}), options);
  set.shape = set.images->size() > 0 ? set.images->get(0).at("images").sizes().vec() : images.images.sizes().slice(1).vec();
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

ImageSet fashion_mnist_source(SourceOptions& s, const ImageFolderOptions& decode) {
  const auto split = s.has("split") ? s.get_string("split") : s.is_train() ? "train" : "test";
  if (split != "train" && split != "test") s.fail("split", "must be train or test");
  const auto dir = s.has("path") ? s.get_string("path") : "";
  return in_memory_images(dir.empty() ? load_fashion_mnist(split == "train") : load_fashion_mnist(split == "train", dir),
                          decode);
}

ImageSet idx_source(SourceOptions& s, const ImageFolderOptions& decode) {
  return open_idx_images(s.required("images"), s.required("labels"), {}, decode);
}

ImageFolderOptions with_resize(SourceOptions& s, const ImageFolderOptions& decode) {
  ImageFolderOptions o = decode;
  o.height = s.get_int("height");
  o.width = s.get_int("width");
  if ((o.height > 0) != (o.width > 0)) s.fail(o.height > 0 ? "width" : "height", "must be set with the other one");
  if (o.height > 0 && o.processor)
    s.fail("height", "and width resize images, but the model's preprocessor_config.json already crops and resizes "
                     "them: remove height and width");
  return o;
}

ImageSet image_folder_source(SourceOptions& s, const ImageFolderOptions& decode) {
  return list_image_folder(s.required("path"), with_resize(s, decode));
}

ImageSet image_list_source(SourceOptions& s, const ImageFolderOptions& decode) {
  ImageListOptions o;
  static_cast<ImageFolderOptions&>(o) = with_resize(s, decode);
  o.image_field = s.get_string("image_field");
  o.label_field = s.get_string("label_field");
  auto out = list_image_list(s.required("path"), o);
  if (out.skipped > 0) spdlog::warn("{}: skipped {} incomplete rows", s.path(), out.skipped);
  return out;
}

ImageSet image_shards_source(SourceOptions& s, const ImageFolderOptions& decode) {
  ImageShardOptions o;
  static_cast<ImageFolderOptions&>(o) = with_resize(s, decode);
  o.label_key = s.get_string("label_key");
  return open_image_shards(s.required("path"), o);
}

// A source's keys followed by the resize every decoded-image source accepts.
OptionSpecs with_resize_options(OptionSpecs specs) {
  specs.push_back({"height", "int", "0", "resize every image to this height (set width too); 0 keeps the size"});
  specs.push_back({"width", "int", "0", "resize every image to this width (set height too); 0 keeps the size"});
  return specs;
}

}  // namespace

const SourceRegistry<ImageSource>& image_sources() {
  static const SourceRegistry<ImageSource> registry = {
      {"fashion_mnist",
       {fashion_mnist_source, "Fashion-MNIST's official split (Debian's dataset-fashion-mnist), in memory",
        {{"split", "enum[train, test]", "", "the official split read; default train for data.train, test otherwise"},
         {"path", "string", "", "a folder of Fashion-MNIST's IDX files; absent: the installed package's"}}}},
      {"idx",
       {idx_source, "an IDX pair of image and label files (MNIST's format)",
        {{"images", "string", "", "the IDX file of uint8 images (plain or gzip)", true},
         {"labels", "string", "", "the IDX file of labels, one per image", true}}}},
      {"image_folder",
       {image_folder_source, "a folder with one subfolder of images per class (the subfolder's name is the label)",
        with_resize_options({{"path", "string", "", "the folder of class subfolders", true}})}},
      {"image_list",
       {image_list_source, "a CSV list of image paths (relative to the CSV's folder) and their label fields",
        with_resize_options(
            {{"path", "string", "", "the CSV file, with a header naming its columns", true},
             {"image_field", "string", "image", "the column that holds each image's path"},
             {"label_field", "string", "label",
              "the column that holds the label (a class name, a label list or a number, as task.problem_type says)"}})}},
      {"image_shards",
       {image_shards_source, "WebDataset tar shards of <key>.jpg (or .png, ...) with <key>.cls and/or <key>.json labels",
        with_resize_options(
            {{"path", "string", "", "a folder of .tar shards, one .tar, or a brace range such as train-{000000..000099}.tar",
              true},
             {"label_key", "string", "label", "the field of <key>.json that holds the label"}})}},
  };
  return registry;
}

}  // namespace perceiver::datasets

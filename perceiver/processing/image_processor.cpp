#include "perceiver/processing/image_processor.h"

#include <cmath>
#include <fstream>
#include <stdexcept>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "perceiver/io/json_io.h"

namespace perceiver {
namespace {

using nlohmann::json;

std::runtime_error key_error(const std::string& source, const std::string& key, const std::string& expected,
                             const json& found) {
  return std::runtime_error(source + ": key '" + key + "': expected " + expected + ", found " + json_excerpt(found));
}

bool read_bool(const json& j, const std::string& key, const std::string& source) {
  if (!j.is_boolean()) throw key_error(source, key, "true or false", j);
  return j.get<bool>();
}

double read_number(const json& j, const std::string& key, const std::string& source) {
  if (!j.is_number()) throw key_error(source, key, "a number", j);
  return j.get<double>();
}

// The largest crop or resize side a config may ask for: 8192^2 RGB pixels are already 805 MB as the
// float tensor a model takes, and a hostile 60000 made `predict` reach 10 GB before failing.
constexpr int64_t kMaxImageSide = 8192;

int read_image_side(const json& j, const std::string& key, const std::string& source) {
  if (!j.is_number_integer() || j.get<int64_t>() < 1 || j.get<int64_t>() > kMaxImageSide) {
    throw key_error(source, key, "a positive integer of at most " + std::to_string(kMaxImageSide) + " pixels", j);
  }
  return static_cast<int>(j.get<int64_t>());
}

// HF's get_size_dict: an int means a square; otherwise {"height", "width"} (Perceiver's crop and
// resize need both, so "shortest_edge"-style dicts are rejected).
ImageSize read_size(const json& j, const std::string& key, const std::string& source) {
  if (j.is_number_integer()) {
    const int s = read_image_side(j, key, source);
    return {s, s};
  }
  if (!j.is_object() || !j.contains("height") || !j.contains("width")) {
    throw key_error(source, key, "{\"height\": int, \"width\": int} or an int", j);
  }
  return {read_image_side(j["height"], key + ".height", source), read_image_side(j["width"], key + ".width", source)};
}

// A float applies to every channel (HF replicates it); a list must have one value per channel.
std::vector<double> read_channel_values(const json& j, const std::string& key, const std::string& source) {
  if (j.is_number()) return std::vector<double>(3, j.get<double>());
  if (!j.is_array() || j.size() != 3) throw key_error(source, key, "a number or a list of 3 numbers", j);
  std::vector<double> out;
  for (const auto& v : j) out.push_back(read_number(v, key, source));
  return out;
}

// Python's floor division by 2 (negative when the crop is larger than the image).
int floor_half(int v) { return static_cast<int>(std::floor(v / 2.0)); }

std::string shape_of(const cv::Mat& m) {
  return std::to_string(m.rows) + "x" + std::to_string(m.cols) + "x" + std::to_string(m.channels());
}

}  // namespace

ImageProcessorOptions ImageProcessorOptions::from_json(const json& config, const std::string& source) {
  if (!config.is_object()) throw std::runtime_error(source + ": expected a JSON object, found " + json_excerpt(config));
  if (config.contains("image_processor_type") && config["image_processor_type"].is_string()) {
    const auto type = config["image_processor_type"].get<std::string>();
    if (type != "PerceiverImageProcessor" && type != "PerceiverFeatureExtractor") {
      spdlog::warn("{}: image_processor_type is {}, reading it as PerceiverImageProcessor", source, type);
    }
  }
  ImageProcessorOptions o;
  auto has = [&](const char* key) { return config.contains(key) && !config[key].is_null(); };
  if (has("do_center_crop")) o.do_center_crop = read_bool(config["do_center_crop"], "do_center_crop", source);
  if (has("crop_size")) o.crop_size = read_size(config["crop_size"], "crop_size", source);
  if (has("do_resize")) o.do_resize = read_bool(config["do_resize"], "do_resize", source);
  if (has("size")) o.size = read_size(config["size"], "size", source);
  if (has("resample")) {
    const auto& r = config["resample"];
    if (!r.is_number_integer() || r.get<int64_t>() < 0 || r.get<int64_t>() > 5) {
      throw key_error(source, "resample", "a Pillow filter id 0..5 (0 nearest, 2 bilinear, 3 bicubic, ...)", r);
    }
    o.resample = image::pil_filter_from_int(static_cast<int>(r.get<int64_t>()));
  }
  if (has("do_rescale")) o.do_rescale = read_bool(config["do_rescale"], "do_rescale", source);
  if (has("rescale_factor")) o.rescale_factor = read_number(config["rescale_factor"], "rescale_factor", source);
  if (has("do_normalize")) o.do_normalize = read_bool(config["do_normalize"], "do_normalize", source);
  if (has("image_mean")) o.image_mean = read_channel_values(config["image_mean"], "image_mean", source);
  if (has("image_std")) o.image_std = read_channel_values(config["image_std"], "image_std", source);
  o.validate(source);
  return o;
}

ImageProcessorOptions ImageProcessorOptions::from_file(const std::filesystem::path& path) {
  const auto file = std::filesystem::is_directory(path) ? path / "preprocessor_config.json" : path;
  return from_json(read_json_file(file), file.string());
}

json ImageProcessorOptions::to_json() const {
  return json{{"do_center_crop", do_center_crop},
              {"crop_size", {{"height", crop_size.height}, {"width", crop_size.width}}},
              {"do_resize", do_resize},
              {"size", {{"height", size.height}, {"width", size.width}}},
              {"resample", static_cast<int>(resample)},
              {"do_rescale", do_rescale},
              {"rescale_factor", rescale_factor},
              {"do_normalize", do_normalize},
              {"image_mean", image_mean},
              {"image_std", image_std},
              {"image_processor_type", "PerceiverImageProcessor"}};
}

void ImageProcessorOptions::validate(const std::string& source) const {
  auto check_size = [&](const ImageSize& s, const char* key) {
    if (s.height < 1 || s.width < 1 || s.height > kMaxImageSide || s.width > kMaxImageSide) {
      throw std::runtime_error(source + ": key '" + key + "': expected height and width from 1 to " +
                               std::to_string(kMaxImageSide) + ", found " + std::to_string(s.height) + "x" +
                               std::to_string(s.width));
    }
  };
  check_size(crop_size, "crop_size");
  check_size(size, "size");
  if (!std::isfinite(rescale_factor)) {
    throw std::runtime_error(source + ": key 'rescale_factor': expected a finite number");
  }
  auto check_channels = [&](const std::vector<double>& v, const char* key, bool nonzero) {
    if (v.size() != 3) {
      throw std::runtime_error(source + ": key '" + key + "': expected 3 values (RGB), found " +
                               std::to_string(v.size()));
    }
    for (double x : v) {
      if (!std::isfinite(x) || (nonzero && x == 0.0)) {
        throw std::runtime_error(source + ": key '" + key + "': expected finite" + (nonzero ? " non-zero" : "") +
                                 " values, found " + std::to_string(x));
      }
    }
  };
  check_channels(image_mean, "image_mean", false);
  check_channels(image_std, "image_std", true);
}

cv::Mat to_rgb(const cv::Mat& image, const std::string& what) {
  if (image.empty()) throw std::runtime_error(what + ": empty image");
  if (image.dims != 2) throw std::runtime_error(what + ": expected a 2-D image, found " + std::to_string(image.dims) + " dims");
  if (image.depth() != CV_8U) {
    throw std::runtime_error(what + ": expected 8 bits per channel (uint8), found OpenCV depth " +
                             std::to_string(image.depth()) + " (16-bit and float images are not supported)");
  }
  cv::Mat rgb;
  switch (image.channels()) {
    case 1: cv::cvtColor(image, rgb, cv::COLOR_GRAY2RGB); break;
    case 2: {  // grey + alpha: PIL's LA -> RGB replicates L and drops A
      cv::Mat grey;
      cv::extractChannel(image, grey, 0);
      cv::cvtColor(grey, rgb, cv::COLOR_GRAY2RGB);
      break;
    }
    case 3: rgb = image.clone(); break;
    case 4: cv::cvtColor(image, rgb, cv::COLOR_RGBA2RGB); break;  // drops alpha, no compositing
    default:
      throw std::runtime_error(what + ": expected 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels, found " +
                               std::to_string(image.channels()));
  }
  return rgb;
}

cv::Mat image_from_buffer(const uint8_t* data, int height, int width, int channels) {
  if (data == nullptr || height < 1 || width < 1 || channels < 1 || channels > 4) {
    throw std::runtime_error("image_from_buffer: expected a non-null HWC uint8 buffer with positive size and 1..4 "
                             "channels, found " + std::to_string(height) + "x" + std::to_string(width) + "x" +
                             std::to_string(channels));
  }
  // const_cast is safe: to_rgb only reads the wrapper and returns a fresh image.
  const cv::Mat view(height, width, CV_8UC(channels), const_cast<uint8_t*>(data));
  return to_rgb(view, "image buffer");
}

cv::Mat decode_image_rgb(const std::string& bytes, const std::string& what) {
  cv::Mat decoded;
  try {
    // IMREAD_UNCHANGED: keep alpha and bit depth, ignore EXIF orientation (as PIL.Image.open does).
    const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
    decoded = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    throw std::runtime_error("cannot decode " + what + ": " + e.what());
  }
  if (decoded.empty()) throw std::runtime_error("cannot decode " + what + " (unreadable, corrupt or not an image)");
  // OpenCV decodes colour as BGR(A): reorder before the layout-generic conversion.
  if (decoded.depth() == CV_8U && decoded.channels() == 3) {
    cv::cvtColor(decoded, decoded, cv::COLOR_BGR2RGB);
  } else if (decoded.depth() == CV_8U && decoded.channels() == 4) {
    cv::cvtColor(decoded, decoded, cv::COLOR_BGRA2RGBA);
  }
  return to_rgb(decoded, what);
}

cv::Mat load_image_rgb(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw std::runtime_error("image file not found: " + path.string());
  if (!std::filesystem::is_regular_file(path, ec)) throw std::runtime_error("not a regular file: " + path.string());
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) throw std::runtime_error("cannot read image file " + path.string());
  return decode_image_rgb(bytes, "image file " + path.string());
}

PerceiverImageProcessor::PerceiverImageProcessor(ImageProcessorOptions options)
    : options_(std::move(options)), cache_(std::make_shared<image::ResampleCache>()) {
  options_.validate();
  // HF builds mean/std arrays in the image dtype (float32) before subtracting and dividing.
  for (int c = 0; c < 3; ++c) {
    mean_.push_back(static_cast<float>(options_.image_mean[c]));
    std_.push_back(static_cast<float>(options_.image_std[c]));
  }
}

PerceiverImageProcessor PerceiverImageProcessor::from_pretrained(const std::filesystem::path& path) {
  return PerceiverImageProcessor(ImageProcessorOptions::from_file(path));
}

cv::Mat PerceiverImageProcessor::center_crop(const cv::Mat& rgb) const {
  const int h = rgb.rows, w = rgb.cols;
  const int min_dim = std::min(h, w);
  // Python: int((size / crop_size) * min_dim), a float product truncated.
  const int ch = static_cast<int>(static_cast<double>(options_.size.height) / options_.crop_size.height * min_dim);
  const int cw = static_cast<int>(static_cast<double>(options_.size.width) / options_.crop_size.width * min_dim);
  if (ch < 1 || cw < 1) {
    throw std::runtime_error("center_crop: a " + std::to_string(h) + "x" + std::to_string(w) +
                             " image gives an empty crop window (" + std::to_string(ch) + "x" + std::to_string(cw) + ")");
  }
  const int top = floor_half(h - ch), left = floor_half(w - cw);
  if (top >= 0 && left >= 0 && top + ch <= h && left + cw <= w) {
    return rgb(cv::Rect(left, top, cw, ch)).clone();
  }
  // HF pads with zeros to max(crop, image), the image centred with ceil offsets, then crops; the
  // window then starts at top + top_pad (>= 0) in padded coordinates.
  const int top_pad = std::max(0, (ch - h + 1) / 2), left_pad = std::max(0, (cw - w + 1) / 2);
  const int r0 = top + top_pad, c0 = left + left_pad;  // window origin in padded coordinates
  cv::Mat out(ch, cw, rgb.type(), cv::Scalar::all(0));
  // Image rows [top_pad, top_pad + h) of the padded canvas intersected with the window.
  const cv::Rect image_in_padded(left_pad, top_pad, w, h);
  const cv::Rect window(c0, r0, cw, ch);
  const cv::Rect overlap = image_in_padded & window;
  if (overlap.area() > 0) {
    rgb(overlap - cv::Point(left_pad, top_pad)).copyTo(out(overlap - cv::Point(c0, r0)));
  }
  return out;
}

cv::Mat PerceiverImageProcessor::resize(const cv::Mat& rgb) const {
  return image::pil_resize(rgb, options_.size.width, options_.size.height, options_.resample, cache_.get());
}

cv::Mat PerceiverImageProcessor::crop_and_resize(const cv::Mat& rgb) const {
  cv::Mat out = options_.do_center_crop ? center_crop(rgb) : rgb;
  if (options_.do_resize) out = resize(out);
  return out;
}

torch::Tensor PerceiverImageProcessor::to_tensor(const cv::Mat& rgb) const {
  if (rgb.empty() || rgb.type() != CV_8UC3) {
    throw std::runtime_error("to_tensor: expected a non-empty HWC uint8 RGB image (CV_8UC3), found " + shape_of(rgb) +
                             " of OpenCV type " + std::to_string(rgb.type()));
  }
  const int h = rgb.rows, w = rgb.cols;
  auto out = torch::empty({3, h, w}, torch::kFloat32);
  float* dst = out.data_ptr<float>();
  const size_t plane = static_cast<size_t>(h) * w;
  const bool rescale = options_.do_rescale, normalize = options_.do_normalize;
  const double factor = options_.rescale_factor;
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = rgb.ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c) {
        // HF: rescale multiplies in float64 and casts to float32; normalise works in float32.
        float v = rescale ? static_cast<float>(static_cast<double>(row[x * 3 + c]) * factor)
                          : static_cast<float>(row[x * 3 + c]);
        if (normalize) v = (v - mean_[c]) / std_[c];
        dst[c * plane + static_cast<size_t>(y) * w + x] = v;
      }
    }
  }
  return out;
}

torch::Tensor PerceiverImageProcessor::preprocess(const cv::Mat& image) const {
  return to_tensor(crop_and_resize(to_rgb(image)));
}

torch::Tensor PerceiverImageProcessor::operator()(const std::vector<cv::Mat>& images) const {
  if (images.empty()) throw std::runtime_error("PerceiverImageProcessor: empty batch");
  std::vector<torch::Tensor> processed;
  processed.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    processed.push_back(to_tensor(crop_and_resize(to_rgb(images[i], "image " + std::to_string(i)))));
    if (processed.back().sizes() != processed.front().sizes()) {
      throw std::runtime_error("PerceiverImageProcessor: image " + std::to_string(i) + " came out " +
                               std::to_string(processed.back().size(1)) + "x" + std::to_string(processed.back().size(2)) +
                               " but image 0 came out " + std::to_string(processed.front().size(1)) + "x" +
                               std::to_string(processed.front().size(2)) + "; enable do_resize to batch them");
    }
  }
  return torch::stack(processed);
}

torch::Tensor PerceiverImageProcessor::preprocess_files(const std::vector<std::filesystem::path>& paths) const {
  std::vector<cv::Mat> images;
  images.reserve(paths.size());
  for (const auto& p : paths) images.push_back(load_image_rgb(p));
  return (*this)(images);
}

}  // namespace perceiver

// PerceiverImageProcessor: HF's image_processing_perceiver.py (transformers e5fd865e) in C++.
//
// Pipeline per image (all optional, in this order): centre crop of a square proportional to the
// shorter side, Pillow-exact resize on uint8, rescale (float64 product cast to float32), normalise
// with float32 mean/std, channels first. Images are HWC uint8 RGB cv::Mat (CV_8UC3).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <torch/types.h>

#include "perceiver/processing/pil_resample.h"

namespace perceiver {

struct ImageSize {
  int height = 0;
  int width = 0;
};

// Mirrors HF's preprocessor_config.json for PerceiverImageProcessor; defaults are HF's.
struct ImageProcessorOptions {
  bool do_center_crop = true;
  ImageSize crop_size{256, 256};
  bool do_resize = true;
  ImageSize size{224, 224};
  image::PilFilter resample = image::PilFilter::Bicubic;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::vector<double> image_mean{0.485, 0.456, 0.406};  // IMAGENET_DEFAULT_MEAN
  std::vector<double> image_std{0.229, 0.224, 0.225};   // IMAGENET_DEFAULT_STD

  // Reads the keys above from a config object; missing or null keys keep their defaults, unknown
  // keys are ignored. `source` (usually the file name) is quoted in error messages.
  static ImageProcessorOptions from_json(const nlohmann::json& config, const std::string& source = "<json>");
  // Loads a preprocessor_config.json file, or the one inside a directory.
  static ImageProcessorOptions from_file(const std::filesystem::path& path);
  nlohmann::json to_json() const;
  // Throws std::runtime_error naming the offending key when a value is out of range.
  void validate(const std::string& source = "<options>") const;
};

// Decodes an image file (OpenCV, no EXIF rotation, like PIL.Image.open) into HWC uint8 RGB.
// Grey is replicated to three channels; alpha is dropped without compositing (PIL's
// convert("RGB")). Throws std::runtime_error naming the file if it is missing, unreadable,
// not an image, or not 8-bit.
cv::Mat load_image_rgb(const std::filesystem::path& path);
// The same for an encoded image in memory (a file's bytes, a tar member); `what` names it in errors.
cv::Mat decode_image_rgb(const std::string& bytes, const std::string& what);

// Converts an in-memory 8-bit image whose channels are already in R,G,B(,A) order (or grey,
// grey+alpha) into a CV_8UC3 RGB image, with the same rules as load_image_rgb. `what` names the
// image in error messages.
cv::Mat to_rgb(const cv::Mat& image, const std::string& what = "image");

// Wraps (copies) a raw HWC uint8 buffer with 1 (grey), 3 (RGB) or 4 (RGBA) channels as RGB.
cv::Mat image_from_buffer(const uint8_t* data, int height, int width, int channels);

class PerceiverImageProcessor {
 public:
  explicit PerceiverImageProcessor(ImageProcessorOptions options = {});
  // Reads preprocessor_config.json from a file or a model directory.
  static PerceiverImageProcessor from_pretrained(const std::filesystem::path& path);

  const ImageProcessorOptions& options() const { return options_; }

  // HF's Perceiver centre crop: a (size/crop_size * min(h, w)) window, truncated to int, centred
  // with floor offsets; zero padding where that window is larger than the image.
  cv::Mat center_crop(const cv::Mat& rgb) const;
  // Pillow resize to options().size with options().resample.
  cv::Mat resize(const cv::Mat& rgb) const;
  // The uint8 HWC image after the enabled crop and resize steps.
  cv::Mat crop_and_resize(const cv::Mat& rgb) const;
  // Rescale + normalise (as enabled) a uint8 RGB image into a float32 (3, H, W) tensor.
  torch::Tensor to_tensor(const cv::Mat& rgb) const;

  // One image -> (3, H, W) float32. Accepts any layout to_rgb accepts.
  torch::Tensor preprocess(const cv::Mat& image) const;
  // A batch -> (B, 3, H, W) float32; every processed image must come out the same size
  // (always true with do_resize). Throws std::runtime_error otherwise or when empty.
  torch::Tensor operator()(const std::vector<cv::Mat>& images) const;
  torch::Tensor preprocess_files(const std::vector<std::filesystem::path>& paths) const;

 private:
  ImageProcessorOptions options_;
  std::vector<float> mean_, std_;                 // float32, as HF casts them to the image dtype
  std::shared_ptr<image::ResampleCache> cache_;  // shared by copies: coefficients per size pair
};

// HF's deprecated name for the same class.
using PerceiverFeatureExtractor = PerceiverImageProcessor;

}  // namespace perceiver

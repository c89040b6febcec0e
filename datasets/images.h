// Labelled images: the set every image source produces, image folders (one subfolder per class)
// and CSV image lists decoded with OpenCV, and simple augmentation.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace perceiver::datasets {

struct ImageClassificationSet {
  torch::Tensor images;              // (N, H, W, C) uint8
  torch::Tensor labels;              // (N) int64
  std::vector<std::string> classes;  // id -> name
  int64_t unreadable = 0;            // files skipped because they could not be decoded
  std::vector<std::string> label_names;  // the raw label field per image (image lists only)
};

struct ImageFolderOptions {
  int64_t height = 0;  // > 0 with width: resize every image (INTER_AREA); 0: all images must share one size
  int64_t width = 0;
  bool grayscale = false;  // C = 1, else RGB C = 3
  std::vector<std::string> extensions = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"};
};
// A regular file whose extension (any case) is one of options.extensions.
bool is_image_file(const std::filesystem::directory_entry& entry, const ImageFolderOptions& options = {});

// root/<class>/<image>: classes are the sorted subfolder names.
ImageClassificationSet load_image_folder(const std::filesystem::path& root, const ImageFolderOptions& options = {});

// A CSV manifest: one row per image with a path (relative to the CSV's folder) and a label field (a
// class name, a '|'-separated label list or a number: the task's problem type decides). Classes are
// the sorted distinct label fields; unreadable images and rows with an empty field are skipped.
struct ImageListOptions : ImageFolderOptions {
  std::string image_field = "image";
  std::string label_field = "label";
};
ImageClassificationSet load_image_list(const std::filesystem::path& csv, const ImageListOptions& options = {});

// Decodes one image file to (H, W, C) uint8 RGB (or gray); throws naming the file when it cannot.
torch::Tensor read_image(const std::filesystem::path& path, bool grayscale = false);

struct AugmentOptions {
  int64_t crop_padding = 4;        // zero padding before a random crop back to the input size (0: no crop)
  double hflip_probability = 0.5;  // horizontal flip
};
// (H, W, C) or (N, H, W, C) uint8; each image gets its own crop offset and flip.
torch::Tensor augment_images(const torch::Tensor& images, const AugmentOptions& options, at::Generator& generator);
// (N, H, W, C): image i drawn from rows[i] alone (one generator per example).
torch::Tensor augment_images(const torch::Tensor& images, const AugmentOptions& options, std::vector<at::Generator>& rows);

}  // namespace perceiver::datasets

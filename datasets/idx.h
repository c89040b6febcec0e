// Image classification data: IDX files (MNIST / Fashion-MNIST, plain or gzip), image folders
// (one subfolder per class, decoded with OpenCV), the embedded Fashion-MNIST, and simple augmentation.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace perceiver::datasets {

// IDX tensor (dtype from the type byte: u8, i8, i16, i32, f32, f64); gzip detected by its magic and
// decompressed no further than the header announces.
torch::Tensor read_idx(const std::filesystem::path& path);
torch::Tensor parse_idx(const std::string& bytes, const std::string& name);
// Plain IDX (gzip-compressed when `gzip`); supports the six IDX dtypes.
void write_idx(const std::filesystem::path& path, const torch::Tensor& tensor, bool gzip = false);

struct ImageClassificationSet {
  torch::Tensor images;              // (N, H, W, C) uint8
  torch::Tensor labels;              // (N) int64
  std::vector<std::string> classes;  // id -> name
  int64_t unreadable = 0;            // files skipped because they could not be decoded
  std::vector<std::string> label_names;  // the raw label field per image (image lists only)
};

// IDX image (N, H, W) + label (N) files.
ImageClassificationSet load_idx_classification(const std::filesystem::path& images, const std::filesystem::path& labels,
                                               std::vector<std::string> classes = {});

// The official split of Debian's dataset-fashion-mnist (60000 train / 10000 test, 28x28x1).
std::filesystem::path fashion_mnist_dir();
std::vector<std::string> fashion_mnist_classes();
ImageClassificationSet load_fashion_mnist(bool train, const std::filesystem::path& dir = fashion_mnist_dir());

struct ImageFolderOptions {
  int64_t height = 0;  // > 0 with width: resize every image (INTER_AREA); 0: all images must share one size
  int64_t width = 0;
  bool grayscale = false;  // C = 1, else RGB C = 3
  std::vector<std::string> extensions = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"};
};
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

}  // namespace perceiver::datasets

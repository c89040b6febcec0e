// IDX files (MNIST / Fashion-MNIST, plain or gzip) and the embedded Fashion-MNIST.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "datasets/images.h"

namespace perceiver::datasets {

// IDX tensor (dtype from the type byte: u8, i8, i16, i32, f32, f64); gzip detected by its magic and
// decompressed no further than the header announces.
torch::Tensor read_idx(const std::filesystem::path& path);
torch::Tensor parse_idx(const std::string& bytes, const std::string& name);
// Plain IDX (gzip-compressed when `gzip`); supports the six IDX dtypes.
void write_idx(const std::filesystem::path& path, const torch::Tensor& tensor, bool gzip = false);

// IDX image (N, H, W) + label (N) files.
ImageClassificationSet load_idx_classification(const std::filesystem::path& images, const std::filesystem::path& labels,
                                               std::vector<std::string> classes = {});

// The same as an ImageSet. Uncompressed uint8 image files are read one image at a time as the loader
// asks (memory holds only the labels); gzip-compressed ones cannot be read at an offset and are loaded
// whole. A processor in `options` crops and resizes each image when it is asked for.
ImageSet open_idx_images(const std::filesystem::path& images, const std::filesystem::path& labels,
                         std::vector<std::string> classes = {}, const ImageFolderOptions& options = {});

// The official split of Debian's dataset-fashion-mnist (60000 train / 10000 test, 28x28x1).
std::filesystem::path fashion_mnist_dir();
std::vector<std::string> fashion_mnist_classes();
ImageClassificationSet load_fashion_mnist(bool train, const std::filesystem::path& dir = fashion_mnist_dir());

}  // namespace perceiver::datasets

// Writes RGB tensors as image files (OpenCV; the format follows the extension, e.g. .png).
#pragma once

#include <filesystem>

#include <torch/types.h>

namespace perceiver {

// rgb: (H, W, 3) uint8, or float in [0, 1] (clipped, rounded). Errors name the file.
void write_image_rgb(const std::filesystem::path& path, const torch::Tensor& rgb);

}  // namespace perceiver

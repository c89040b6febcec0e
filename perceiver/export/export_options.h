// What an export is asked for, and the tags its archive carries.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace perceiver {

struct ExportOptions {
  torch::Device device = torch::kCPU;  // where the module is traced; the file runs there
  // Fourier and conv image heads take any image size eagerly; an export fixes one. 0 = the image
  // processor's size (preprocessor_config), else config.image_size.
  int64_t image_height = 0;
  int64_t image_width = 0;
  // HF's image-processor settings shipped with an image head (its `size` becomes the exported size);
  // null = HF's defaults at that size.
  nlohmann::json preprocessor_config;
  std::string source;  // where the model came from (recorded in perceiver.json)
};

// The archive's manifest name and format tag.
inline constexpr const char* kExportManifest = "perceiver.json";
inline constexpr const char* kExportFormat = "perceiver-cpp-torchscript";

// The format tag of a Triton repository's archive (export_triton.h): one that `open_exported` refuses.
inline constexpr const char* kTritonFormat = "perceiver-cpp-triton";

}  // namespace perceiver

// Hugging Face safetensors: read and write checkpoint files.
//
// Layout: 8-byte little-endian header length N, N bytes of JSON
// ({"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}),
// then the raw little-endian tensor bytes; offsets are relative to the data section.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

namespace perceiver::io {

using TensorMap = std::map<std::string, torch::Tensor>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsContents {
  TensorMap tensors;
  Metadata metadata;  // the optional "__metadata__" object
};

// Reads every tensor (CPU, contiguous, owning its memory) and the metadata. Throws
// std::runtime_error naming the file and the problem for truncated or malformed files: headers over
// 100 MB, values nested deeper than a header's, overlapping tensors and files that shrink while they
// are read (read with pread, never mapped) included.
SafetensorsContents read_safetensors(const std::filesystem::path& file);
TensorMap load_safetensors(const std::filesystem::path& file);
// The same from bytes in memory; `name` stands for the file in error messages.
SafetensorsContents parse_safetensors(std::string_view bytes, const std::string& name);

// Writes tensors sorted by name, header padded with spaces to a multiple of 8 bytes, as HF's
// safetensors does. Tensors are moved to CPU and made contiguous; the data is not deduplicated.
void save_safetensors(const std::filesystem::path& file, const TensorMap& tensors,
                      const Metadata& metadata = {{"format", "pt"}});

// Safetensors dtype name ("F32", "BF16", ...) for a torch dtype; throws for dtypes it cannot hold.
std::string safetensors_dtype_name(torch::ScalarType dtype);

}  // namespace perceiver::io

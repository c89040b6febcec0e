// PyTorch checkpoints written by Python's torch.save(state_dict) (zip format, torch >= 1.6), as in
// Hugging Face's pytorch_model.bin, plus a loader that accepts either checkpoint format.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "perceiver/io/safetensors.h"

namespace perceiver::io {

// Reads `<archive>/data.pkl` with a restricted unpickler (only the opcodes and globals that
// state dicts use; anything else is rejected, never executed) and the `<archive>/data/<key>` storage
// records. Tensors sharing a storage stay views of one storage, as with torch.load.
TensorMap load_torch_bin(const std::filesystem::path& file);
// The same from bytes in memory; `name` stands for the file in error messages. The zip is read by
// StoredZip (compressed records, which torch.save never writes, are refused; sizes are checked
// against the file; CRC-32 verified), and the pickle's objects, stack, memo and nesting are bounded.
TensorMap parse_torch_bin(std::string_view bytes, const std::string& name);

// Loads a state dict from a .safetensors or torch.save zip file, chosen by the file's magic bytes;
// a directory is searched for model.safetensors, then pytorch_model.bin.
TensorMap load_state_dict(const std::filesystem::path& file_or_dir);

}  // namespace perceiver::io

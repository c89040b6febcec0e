// HF model directories: config.json + model.safetensors (or pytorch_model.bin) <-> a built head.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "perceiver/models/model.h"

namespace perceiver::io {

struct LoadReport {
  std::vector<std::string> missing;     // in the model, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the model
  std::vector<std::string> mismatched;  // "name: file shape [..] vs model shape [..]"
  std::vector<std::string> loaded;
  std::string summary() const;
};

// Copies `tensors` into the model's parameters and buffers (dtype converted to the model's).
// HF's base_model_prefix rule applies: a bare PerceiverModel checkpoint loads into a head and vice
// versa. strict: any missing, unexpected or mismatched tensor is an error naming it (and both
// shapes); otherwise mismatched and missing tensors keep their current values and are reported.
LoadReport load_weights(torch::nn::Module& model, const std::map<std::string, torch::Tensor>& tensors, bool strict,
                        const std::string& source);

struct LoadOptions {
  bool strict = true;
  // PerceiverModel compositions: a `construction` object, or null to use DIR/meta.json's if present.
  nlohmann::json construction;
};

// The weights file of an HF model directory: model.safetensors, else pytorch_model.bin.
std::filesystem::path weights_file(const std::filesystem::path& dir);

// Builds the head named by DIR/config.json and loads its weights.
PerceiverPreTrainedModel load_pretrained(const std::filesystem::path& dir, const LoadOptions& options = {},
                                         LoadReport* report = nullptr);

// Writes DIR/config.json (architectures set) and DIR/model.safetensors with HF's names and dtypes.
void save_pretrained(const PerceiverPreTrainedModelImpl& model, const std::filesystem::path& dir);

// name -> tensor of every parameter and buffer (the state dict), as HF names them.
std::map<std::string, torch::Tensor> state_dict(const torch::nn::Module& model);

}  // namespace perceiver::io

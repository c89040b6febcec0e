// Runs a model directory on HF-named tensors: the library side of `perceiver infer`.
#pragma once

#include <filesystem>

#include "perceiver/device.h"
#include "perceiver/io/model_dir.h"
#include "perceiver/model.h"

namespace perceiver {

struct InferOptions {
  ForwardOptions forward;
  io::LoadOptions load;
  torch::Device device = torch::kCPU;  // where the model runs; outputs come back on the CPU
  device::Precision precision = device::Precision::fp32;
};

// Loads DIR, puts the model in eval mode and runs forward_named without gradients.
NamedTensors infer(const std::filesystem::path& model_dir, const NamedTensors& inputs, const InferOptions& options = {});

}  // namespace perceiver

// Runs a model directory, training checkpoint or exported file on HF-named tensors: the library side
// of `perceiver infer`.
#pragma once

#include <filesystem>

#include "perceiver/models/runner.h"

namespace perceiver {

using InferOptions = RunnerOptions;

// Opens `model` (open_model: a directory or a file written by `perceiver export`) and runs it in
// eval mode without autograd; outputs come back on the CPU.
NamedTensors infer(const std::filesystem::path& model, const NamedTensors& inputs, const InferOptions& options = {});

}  // namespace perceiver

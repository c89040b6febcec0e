// What the pipelines and `perceiver predict` / `infer` need from a model, whether it is an eager
// model built from a model or checkpoint directory or an exported TorchScript file: its config and
// architecture, and a forward on HF-named tensors.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "perceiver/models/config.h"
#include "perceiver/runtime/device.h"
#include "perceiver/models/model_dir.h"
#include "perceiver/models/model.h"

namespace perceiver {

struct RunnerOptions {
  torch::Device device = torch::kCPU;  // where the model runs; outputs come back on the CPU
  device::Precision precision = device::Precision::fp32;
  ForwardOptions forward;  // eager models only (an exported file returns what it was traced with)
  io::LoadOptions load;    // model directories only
};

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;
  virtual const PerceiverConfig& config() const = 0;
  // The HF class name (config.json's architectures[0]).
  virtual std::string architecture() const = 0;
  // The directory or file the model came from (for messages and for preprocessor_config.json).
  virtual const std::filesystem::path& source() const = 0;
  // HF-named inputs (on any device) -> HF-named outputs on the CPU; eval mode, no autograd.
  virtual NamedTensors forward(const NamedTensors& inputs) = 0;
};

// An eager model (already loaded) behind the runner interface; moves it to options.device.
std::unique_ptr<ModelRunner> eager_runner(PerceiverPreTrainedModel model, std::filesystem::path source,
                                          const RunnerOptions& options = {});

}  // namespace perceiver

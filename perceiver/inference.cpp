#include "perceiver/inference.h"

#include <c10/core/InferenceMode.h>

namespace perceiver {

NamedTensors infer(const std::filesystem::path& model_dir, const NamedTensors& inputs, const InferOptions& options) {
  auto model = io::load_pretrained(model_dir, options.load);
  model->eval();
  model->to(options.device);
  c10::InferenceMode inference;  // no autograd bookkeeping at all: outputs are inference tensors
  NamedTensors on_device;
  for (const auto& [name, t] : inputs) on_device[name] = device::to(t, options.device);
  NamedTensors outputs;
  {
    const device::AutocastGuard autocast(options.device, options.precision);
    outputs = model->forward_named(on_device, options.forward);
  }
  for (auto& [name, t] : outputs) t = t.to(torch::kCPU).contiguous();
  return outputs;
}

}  // namespace perceiver

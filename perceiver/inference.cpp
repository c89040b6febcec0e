#include "perceiver/inference.h"

#include <c10/core/InferenceMode.h>

namespace perceiver {

NamedTensors infer(const std::filesystem::path& model_dir, const NamedTensors& inputs, const InferOptions& options) {
  auto model = io::load_pretrained(model_dir, options.load);
  model->eval();
  c10::InferenceMode inference;  // no autograd bookkeeping at all: outputs are inference tensors
  NamedTensors outputs = model->forward_named(inputs, options.forward);
  for (auto& [name, t] : outputs) t = t.contiguous();
  return outputs;
}

}  // namespace perceiver

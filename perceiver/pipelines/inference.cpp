#include "perceiver/pipelines/open_model.h"
#include "perceiver/pipelines/inference.h"

namespace perceiver {

NamedTensors infer(const std::filesystem::path& model, const NamedTensors& inputs, const InferOptions& options) {
  return open_model(model, options)->forward(inputs);
}

}  // namespace perceiver

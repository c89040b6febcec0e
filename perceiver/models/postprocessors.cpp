#include "perceiver/models/postprocessors.h"

#include "perceiver/ops/dynamic_size.h"
#include "perceiver/ops/matmul.h"

namespace perceiver {

PerceiverProjectionPostprocessorImpl::PerceiverProjectionPostprocessorImpl(int64_t in_channels, int64_t out_channels) {
  classifier = register_module("classifier", torch::nn::Linear(in_channels, out_channels));
}

TensorOrDict PerceiverProjectionPostprocessorImpl::forward(const TensorOrDict& inputs,
                                                           const std::optional<ModalitySizes>& /*modality_sizes*/) {
  return ops::linear(single_tensor(inputs, "PerceiverProjectionPostprocessor"), classifier);
}

PerceiverClassificationPostprocessorImpl::PerceiverClassificationPostprocessorImpl(const PerceiverConfig& config,
                                                                                   int64_t in_channels) {
  classifier = register_module("classifier", torch::nn::Linear(in_channels, config.num_labels()));
}

TensorOrDict PerceiverClassificationPostprocessorImpl::forward(const TensorOrDict& inputs,
                                                               const std::optional<ModalitySizes>& /*modality_sizes*/) {
  return ops::linear(single_tensor(inputs, "PerceiverClassificationPostprocessor"), classifier).select(1, 0);
}

std::map<std::string, torch::Tensor> restructure(const ModalitySizes& modality_sizes, const torch::Tensor& inputs) {
  int64_t total = 0;
  for (const auto& [name, size] : modality_sizes) total += size.value();
  TORCH_CHECK(inputs.dim() >= 2 && inputs.size(1) >= total, "restructure: the modalities need ", total,
              " positions but the tensor has shape ", inputs.sizes());
  std::map<std::string, torch::Tensor> out;
  DynamicSize index = 0;
  for (const auto& [name, size] : modality_sizes) {
    out[name] = dynamic::narrow(inputs, 1, index, size);
    index = index + size;
  }
  return out;
}

PerceiverAudioPostprocessorImpl::PerceiverAudioPostprocessorImpl(const PerceiverConfig& config, int64_t in_channels,
                                                                 const std::string& postproc_type) {
  TORCH_CHECK(postproc_type == "patches", "Invalid postproc_type! (only 'patches' is supported, got '", postproc_type,
              "')");
  classifier = register_module("classifier", torch::nn::Linear(in_channels, config.samples_per_patch));
}

TensorOrDict PerceiverAudioPostprocessorImpl::forward(const TensorOrDict& inputs,
                                                      const std::optional<ModalitySizes>& /*modality_sizes*/) {
  const auto& x = single_tensor(inputs, "PerceiverAudioPostprocessor");
  return ops::linear(x, classifier).flatten(1);
}

PerceiverMultimodalPostprocessorImpl::PerceiverMultimodalPostprocessorImpl(std::map<std::string, Postprocessor> modalities,
                                                                           bool input_is_dict)
    : modalities_(std::move(modalities)), input_is_dict_(input_is_dict) {
  register_module("modalities", modality_dict(modalities_));
}

TensorOrDict PerceiverMultimodalPostprocessorImpl::forward(const TensorOrDict& inputs,
                                                           const std::optional<ModalitySizes>& modality_sizes) {
  std::map<std::string, torch::Tensor> parts;
  if (input_is_dict_) {
    parts = inputs.dict;
  } else {
    TORCH_CHECK(modality_sizes.has_value(), "Modality sizes should be specified if input is not a dictionary.");
    parts = restructure(*modality_sizes, single_tensor(inputs, "PerceiverMultimodalPostprocessor"));
  }
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, post] : modalities_) {
    auto it = parts.find(name);
    TORCH_CHECK(it != parts.end(), "PerceiverMultimodalPostprocessor: no decoder output for modality '", name, "'");
    out[name] = single_tensor(post->forward(it->second, std::nullopt), "PerceiverMultimodalPostprocessor");
  }
  return out;
}

}  // namespace perceiver

#include "perceiver/postprocessors.h"

namespace perceiver {

PerceiverProjectionPostprocessorImpl::PerceiverProjectionPostprocessorImpl(int64_t in_channels, int64_t out_channels) {
  classifier = register_module("classifier", torch::nn::Linear(in_channels, out_channels));
}

TensorOrDict PerceiverProjectionPostprocessorImpl::forward(const TensorOrDict& inputs,
                                                           const std::optional<ModalitySizes>& /*modality_sizes*/) {
  return classifier(single_tensor(inputs, "PerceiverProjectionPostprocessor"));
}

PerceiverClassificationPostprocessorImpl::PerceiverClassificationPostprocessorImpl(const PerceiverConfig& config,
                                                                                   int64_t in_channels) {
  classifier = register_module("classifier", torch::nn::Linear(in_channels, config.num_labels()));
}

TensorOrDict PerceiverClassificationPostprocessorImpl::forward(const TensorOrDict& inputs,
                                                               const std::optional<ModalitySizes>& /*modality_sizes*/) {
  return classifier(single_tensor(inputs, "PerceiverClassificationPostprocessor")).select(1, 0);
}

}  // namespace perceiver

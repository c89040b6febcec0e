// Output postprocessors: PerceiverProjectionPostprocessor and PerceiverClassificationPostprocessor.
#pragma once

#include "perceiver/components.h"
#include "perceiver/config.h"

namespace perceiver {

class PerceiverProjectionPostprocessorImpl : public PostprocessorImpl {
 public:
  PerceiverProjectionPostprocessorImpl(int64_t in_channels, int64_t out_channels);
  TensorOrDict forward(const TensorOrDict& inputs, const std::optional<ModalitySizes>& modality_sizes) override;

 private:
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(PerceiverProjectionPostprocessor);

class PerceiverClassificationPostprocessorImpl : public PostprocessorImpl {
 public:
  PerceiverClassificationPostprocessorImpl(const PerceiverConfig& config, int64_t in_channels);
  // (B, N, C) -> logits of the first position (B, num_labels)
  TensorOrDict forward(const TensorOrDict& inputs, const std::optional<ModalitySizes>& modality_sizes) override;

 private:
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(PerceiverClassificationPostprocessor);

}  // namespace perceiver

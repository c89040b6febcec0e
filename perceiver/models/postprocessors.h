// Output postprocessors: PerceiverProjectionPostprocessor, PerceiverClassificationPostprocessor,
// PerceiverAudioPostprocessor and PerceiverMultimodalPostprocessor.
#pragma once

#include <map>
#include <string>

#include "perceiver/models/components.h"
#include "perceiver/models/config.h"

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

// HF's restructure: splits (B, N, C) into the modalities' consecutive slices, in sorted order.
std::map<std::string, torch::Tensor> restructure(const ModalitySizes& modality_sizes, const torch::Tensor& inputs);

// (B, N, in_channels) -> (B, N * samples_per_patch) audio samples.
class PerceiverAudioPostprocessorImpl : public PostprocessorImpl {
 public:
  PerceiverAudioPostprocessorImpl(const PerceiverConfig& config, int64_t in_channels,
                                  const std::string& postproc_type = "patches");
  TensorOrDict forward(const TensorOrDict& inputs, const std::optional<ModalitySizes>& modality_sizes) override;

  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(PerceiverAudioPostprocessor);

// Splits the decoder output by modality_sizes (or takes a dict) and applies each modality's postprocessor.
class PerceiverMultimodalPostprocessorImpl : public PostprocessorImpl {
 public:
  explicit PerceiverMultimodalPostprocessorImpl(std::map<std::string, Postprocessor> modalities,
                                                bool input_is_dict = false);
  TensorOrDict forward(const TensorOrDict& inputs, const std::optional<ModalitySizes>& modality_sizes) override;

 private:
  std::map<std::string, Postprocessor> modalities_;
  bool input_is_dict_;
};
TORCH_MODULE(PerceiverMultimodalPostprocessor);

}  // namespace perceiver

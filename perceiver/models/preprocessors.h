// Input preprocessors. This file: PerceiverTextPreprocessor (byte embeddings + learned positions).
#pragma once

#include "perceiver/models/components.h"
#include "perceiver/models/config.h"

namespace perceiver {

class PerceiverTextPreprocessorImpl : public PreprocessorImpl {
 public:
  explicit PerceiverTextPreprocessorImpl(const PerceiverConfig& config);
  int64_t num_channels() const override { return d_model_; }
  PreprocessorOutput forward(const TensorOrDict& inputs, bool interpolate_pos_encoding) override;

  torch::nn::Embedding embeddings{nullptr};
  torch::nn::Embedding position_embeddings{nullptr};

 private:
  int64_t d_model_;
};
TORCH_MODULE(PerceiverTextPreprocessor);

}  // namespace perceiver

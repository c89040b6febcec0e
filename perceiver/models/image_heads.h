// The image classification heads: PerceiverForImageClassificationLearned / Fourier / ConvProcessing.
#pragma once

#include "perceiver/models/heads.h"
#include "perceiver/models/model.h"

namespace perceiver {

class PerceiverForImageClassificationLearnedImpl : public PerceiverClassifierHeadImpl {
 public:
  explicit PerceiverForImageClassificationLearnedImpl(const PerceiverConfig& config);

 protected:
  std::string input_alias() const override { return "pixel_values"; }
};
TORCH_MODULE(PerceiverForImageClassificationLearned);

class PerceiverForImageClassificationFourierImpl : public PerceiverClassifierHeadImpl {
 public:
  explicit PerceiverForImageClassificationFourierImpl(const PerceiverConfig& config);

 protected:
  std::string input_alias() const override { return "pixel_values"; }
};
TORCH_MODULE(PerceiverForImageClassificationFourier);

class PerceiverForImageClassificationConvProcessingImpl : public PerceiverClassifierHeadImpl {
 public:
  explicit PerceiverForImageClassificationConvProcessingImpl(const PerceiverConfig& config);

 protected:
  std::string input_alias() const override { return "pixel_values"; }
};
TORCH_MODULE(PerceiverForImageClassificationConvProcessing);

}  // namespace perceiver

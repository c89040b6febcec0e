// Abstract bases of the pluggable parts of PerceiverModel (HF's AbstractPreprocessor,
// PerceiverAbstractDecoder and the postprocessors). Concrete classes keep HF's names.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "perceiver/models/outputs.h"
#include "perceiver/models/shared_channels.h"

namespace perceiver {

// What HF's preprocessors return (inputs, modality_sizes, inputs_without_pos). A preprocessor that
// concatenates position features, the same for every example, leaves `inputs` unmade and hands out
// the two parts instead, so that the layers which take them apart never make the whole.
struct PreprocessorOutput {
  // (B, N, num_channels), positions included; undefined where held as parts (whole() makes it).
  torch::Tensor inputs;
  std::optional<ModalitySizes> modality_sizes;  // multimodal only
  torch::Tensor inputs_without_pos;             // undefined where HF returns None
  // (1, N, Cs): the last Cs channels of the inputs where they are the same for every example (position
  // features concatenated); the encoder's cross-attention then projects them once per batch.
  torch::Tensor shared_channels;

  // HF's `inputs`, made from the parts where they were left apart.
  torch::Tensor whole() const;
  // The inputs with their shared channels, as the encoder takes them: held apart where unmade.
  WithSharedChannels parts() const;
};

class PreprocessorImpl : public torch::nn::Module {
 public:
  virtual int64_t num_channels() const = 0;
  // HF's forward (PreprocessorOutput::whole() is HF's `inputs`).
  virtual PreprocessorOutput forward(const TensorOrDict& inputs, bool interpolate_pos_encoding) = 0;
};

class DecoderImpl : public torch::nn::Module {
 public:
  virtual int64_t num_query_channels() const = 0;
  // HF's decoder_query (.whole() is HF's tensor) for inputs that may hold their shared channels apart
  // (PreprocessorOutput::parts()); queries that are those inputs keep their shared channels.
  // subsampled_points: undefined, a tensor of flat indices (uni-modal decoders) or one per modality.
  virtual WithSharedChannels decoder_query(const WithSharedChannels& inputs,
                                           const std::optional<ModalitySizes>& modality_sizes,
                                           const torch::Tensor& inputs_without_pos,
                                           const TensorOrDict& subsampled_points) = 0;
  virtual PerceiverDecoderOutput forward(const WithSharedChannels& query, const torch::Tensor& z,
                                         const torch::Tensor& query_mask, bool output_attentions) = 0;
};

class PostprocessorImpl : public torch::nn::Module {
 public:
  virtual TensorOrDict forward(const TensorOrDict& inputs, const std::optional<ModalitySizes>& modality_sizes) = 0;
};

using Preprocessor = std::shared_ptr<PreprocessorImpl>;
using Decoder = std::shared_ptr<DecoderImpl>;
using Postprocessor = std::shared_ptr<PostprocessorImpl>;

// Requires a single tensor (not a per-modality dict) and returns it; `who` names the caller.
const torch::Tensor& single_tensor(const TensorOrDict& value, const char* who);

// The per-modality components of a multimodal module as a ModuleDict (HF's nn.ModuleDict), so that
// their parameters are named `<attribute>.<modality>.<...>` as in HF.
template <typename T>
torch::nn::ModuleDict modality_dict(const std::map<std::string, std::shared_ptr<T>>& modalities) {
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> items(modalities.begin(), modalities.end());
  return torch::nn::ModuleDict(items);
}

}  // namespace perceiver

// PerceiverModel and the base class every PerceiverFor* head shares.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>

#include "perceiver/models/components.h"
#include "perceiver/models/config.h"
#include "perceiver/models/encoder.h"
#include "perceiver/models/outputs.h"

namespace perceiver {

using NamedTensors = std::map<std::string, torch::Tensor>;

struct ForwardOptions {
  bool output_attentions = false;
  bool output_hidden_states = false;
  bool interpolate_pos_encoding = false;
};

// HF's PerceiverPreTrainedModel: holds the config, initialises weights as HF does, and runs
// forward on HF-named tensors (the `perceiver infer` contract).
class PerceiverPreTrainedModelImpl : public torch::nn::Module {
 public:
  explicit PerceiverPreTrainedModelImpl(PerceiverConfig config) : config_(std::move(config)) {}
  const PerceiverConfig& config() const { return config_; }
  PerceiverConfig& config() { return config_; }
  // The HF class name written into config.json's `architectures`.
  virtual std::string architecture() const = 0;

  // inputs: `inputs` (or `input_ids` / `pixel_values`), `inputs.<modality>`, `attention_mask`,
  // `labels`, `subsampled_output_points.<modality>`. Outputs: `loss`, `logits` / `logits.<modality>`,
  // `last_hidden_state`, `hidden_states.<i>`, `attentions.<i>`, `cross_attentions.<i>`.
  virtual NamedTensors forward_named(const NamedTensors& inputs, const ForwardOptions& options) = 0;

  // HF's _init_weights: normal(0, initializer_range) for linear/conv/embedding weights, latents,
  // trainable positions and per-modality parameters; zero biases; LayerNorm to (1, 0).
  void init_weights();

 protected:
  PerceiverConfig config_;
};

using PerceiverPreTrainedModel = std::shared_ptr<PerceiverPreTrainedModelImpl>;

class PerceiverModelImpl : public PerceiverPreTrainedModelImpl {
 public:
  PerceiverModelImpl(const PerceiverConfig& config, Decoder decoder = nullptr, Preprocessor input_preprocessor = nullptr,
                     Postprocessor output_postprocessor = nullptr);
  std::string architecture() const override { return "PerceiverModel"; }

  // subsampled_output_points: per-modality flat indices (multimodal) or empty. decode_positions:
  // (batch, K) indices of the decoder queries to decode, per example (all when undefined); not HF's.
  PerceiverModelOutput forward(const TensorOrDict& inputs, const torch::Tensor& attention_mask = {},
                               const TensorOrDict& subsampled_output_points = {}, const ForwardOptions& options = {},
                               const torch::Tensor& decode_positions = {});
  NamedTensors forward_named(const NamedTensors& inputs, const ForwardOptions& options) override;

  const Preprocessor& input_preprocessor() const { return input_preprocessor_; }
  const Decoder& decoder() const { return decoder_; }

 private:
  Preprocessor input_preprocessor_;
  Postprocessor output_postprocessor_;
  PerceiverEmbeddings embeddings{nullptr};
  PerceiverEncoder encoder{nullptr};
  Decoder decoder_;
};
TORCH_MODULE(PerceiverModel);

// Helpers for forward_named implementations.
namespace named {
// `inputs` (or one of `aliases`) as a tensor, else every `inputs.<modality>` as a dict.
TensorOrDict model_inputs(const NamedTensors& inputs, const std::vector<std::string>& aliases = {});
// Optional tensor by name (undefined when absent).
torch::Tensor optional(const NamedTensors& inputs, const std::string& name);
// Every `<prefix>.<key>` as a dict.
TensorOrDict with_prefix(const NamedTensors& inputs, const std::string& prefix);
// Throws, naming the tensor and the accepted names, for any input not in `accepted` (prefixes end in '.').
void check_known(const NamedTensors& inputs, const std::vector<std::string>& accepted);
// Writes loss/logits/hidden states/attentions with HF's names.
NamedTensors outputs(const torch::Tensor& loss, const TensorOrDict& logits, const torch::Tensor& last_hidden_state,
                     const std::vector<torch::Tensor>& hidden_states, const std::vector<torch::Tensor>& attentions,
                     const std::vector<torch::Tensor>& cross_attentions);
}  // namespace named

}  // namespace perceiver

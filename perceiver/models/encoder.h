// PerceiverEmbeddings (the latent array) and PerceiverEncoder (one cross-attention layer followed
// by num_blocks applications of a shared stack of self-attention layers).
#pragma once

#include <torch/torch.h>

#include <vector>

#include "perceiver/models/attention.h"
#include "perceiver/models/config.h"
#include "perceiver/ops/dynamic_size.h"

namespace perceiver {

class PerceiverEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit PerceiverEmbeddingsImpl(const PerceiverConfig& config);
  torch::Tensor forward(const DynamicSize& batch_size) { return dynamic::expand(latents, {batch_size, -1, -1}); }

  torch::Tensor latents;
};
TORCH_MODULE(PerceiverEmbeddings);

struct EncoderOutput {
  torch::Tensor last_hidden_state;
  std::vector<torch::Tensor> hidden_states;
  std::vector<torch::Tensor> attentions;
  std::vector<torch::Tensor> cross_attentions;
};

class PerceiverEncoderImpl : public torch::nn::Module {
 public:
  PerceiverEncoderImpl(const PerceiverConfig& config, int64_t kv_dim);
  // inputs_mask is the additive (B,1,1,N) mask of the inputs (see invert_attention_mask).
  EncoderOutput forward(const torch::Tensor& latents, const WithSharedChannels& inputs, const torch::Tensor& inputs_mask,
                        bool output_attentions, bool output_hidden_states);
  // Recompute each self-attention layer in backward instead of keeping its activations (training
  // only; HF has no such option). Saves memory at the cost of a second forward per layer.
  void set_activation_checkpointing(bool enabled) { checkpointing_ = enabled; }

 private:
  bool checkpointing_ = false;
  int64_t num_blocks_;
  PerceiverLayer cross_attention{nullptr};
  torch::nn::ModuleList self_attends{nullptr};
};
TORCH_MODULE(PerceiverEncoder);

// Turns activation checkpointing on or off for every PerceiverEncoder inside `model`.
void set_activation_checkpointing(torch::nn::Module& model, bool enabled);

}  // namespace perceiver

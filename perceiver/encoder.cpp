#include "perceiver/encoder.h"

namespace perceiver {

PerceiverEmbeddingsImpl::PerceiverEmbeddingsImpl(const PerceiverConfig& config) {
  latents = register_parameter("latents", torch::randn({config.num_latents, config.d_latents}));
}

PerceiverEncoderImpl::PerceiverEncoderImpl(const PerceiverConfig& config, int64_t kv_dim)
    : num_blocks_(config.num_blocks) {
  PerceiverLayerOptions cross;
  cross.is_cross_attention = true;
  cross.qk_channels = config.qk_channels;
  cross.v_channels = config.v_channels;
  cross.num_heads = config.num_cross_attention_heads;
  cross.q_dim = config.d_latents;
  cross.kv_dim = kv_dim;
  cross.widening_factor = config.cross_attention_widening_factor;
  cross.use_query_residual = config.use_query_residual;
  cross_attention = register_module("cross_attention", PerceiverLayer(config, cross));

  PerceiverLayerOptions self;
  self.qk_channels = config.qk_channels;
  self.v_channels = config.v_channels;
  self.num_heads = config.num_self_attention_heads;
  self.q_dim = config.d_latents;
  self.kv_dim = config.d_latents;
  self.widening_factor = config.self_attention_widening_factor;
  self_attends = register_module("self_attends", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_self_attends_per_block; ++i) self_attends->push_back(PerceiverLayer(config, self));
}

EncoderOutput PerceiverEncoderImpl::forward(const torch::Tensor& latents, const torch::Tensor& inputs,
                                            const torch::Tensor& inputs_mask, bool output_attentions,
                                            bool output_hidden_states) {
  EncoderOutput out;
  auto cross = cross_attention->forward(latents, inputs, inputs_mask, output_attentions);
  auto hidden = cross.output;
  if (output_attentions) out.cross_attentions.push_back(cross.attention_probs);

  // HF records the state before every self-attention layer and once more after each block.
  for (int64_t block = 0; block < num_blocks_; ++block) {
    for (const auto& module : *self_attends) {
      if (output_hidden_states) out.hidden_states.push_back(hidden);
      auto layer = module->as<PerceiverLayerImpl>()->forward(hidden, {}, {}, output_attentions);
      hidden = layer.output;
      if (output_attentions) out.attentions.push_back(layer.attention_probs);
    }
    if (output_hidden_states) out.hidden_states.push_back(hidden);
  }
  out.last_hidden_state = hidden;
  return out;
}

}  // namespace perceiver

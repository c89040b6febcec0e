#include "perceiver/models/encoder.h"

#include <ATen/Context.h>

#include "perceiver/runtime/device.h"
#include "perceiver/ops/torch_compat.h"

namespace perceiver {
namespace {

// The generator dropout draws from for tensors on `device`: the CPU's, or that GPU's.
at::Generator default_generator(const torch::Device& device) { return at::globalContext().defaultGenerator(device); }

// Runs one self-attention layer without keeping its activations; backward replays it (with the
// same dropout draws) and back-propagates through the replay. This is the "reentrant" scheme of
// torch.utils.checkpoint.
struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& hidden,
                               PerceiverLayerImpl* layer) {
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    ctx->saved_data["rng"] = default_generator(hidden.device()).get_state();
    // The replay must compute in the forward's precision (autocast state is per thread, and
    // backward runs on the autograd engine's threads).
    ctx->saved_data["autocast"] = compat::autocast_enabled(hidden.device().type());
    ctx->save_for_backward({hidden});
    return layer->forward(hidden).output;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* layer = reinterpret_cast<PerceiverLayerImpl*>(ctx->saved_data["layer"].toInt());
    auto hidden = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    auto generator = default_generator(hidden.device());
    const auto current = generator.get_state();
    generator.set_state(ctx->saved_data["rng"].toTensor());
    torch::Tensor output;
    {
      torch::AutoGradMode enable(true);
      const device::AutocastGuard autocast(
          hidden.device(), ctx->saved_data["autocast"].toBool() ? device::Precision::bf16 : device::Precision::fp32);
      output = layer->forward(hidden).output;
    }
    generator.set_state(current);
    torch::autograd::backward({output}, {grads[0]});
    return {hidden.grad(), torch::Tensor()};
  }
};

}  // namespace

void set_activation_checkpointing(torch::nn::Module& model, bool enabled) {
  for (auto& module : model.modules())
    if (auto* encoder = module->as<PerceiverEncoderImpl>()) encoder->set_activation_checkpointing(enabled);
}

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

EncoderOutput PerceiverEncoderImpl::forward(const torch::Tensor& latents, const WithSharedChannels& inputs,
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
      auto* layer = module->as<PerceiverLayerImpl>();
      if (checkpointing_ && is_training() && torch::GradMode::is_enabled() && !output_attentions) {
        hidden = CheckpointedLayer::apply(hidden, layer);
        continue;
      }
      auto result = layer->forward(hidden, {}, {}, output_attentions);
      hidden = result.output;
      if (output_attentions) out.attentions.push_back(result.attention_probs);
    }
    if (output_hidden_states) out.hidden_states.push_back(hidden);
  }
  out.last_hidden_state = hidden;
  return out;
}

}  // namespace perceiver

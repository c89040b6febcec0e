#include "perceiver/attention.h"

#include <cmath>
#include <limits>

namespace perceiver {
namespace {

// Every LayerNorm in HF's Perceiver uses PyTorch's default eps (config.layer_norm_eps is unused).
torch::nn::LayerNorm layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5));
}

// LayerNorm in the dtype of its weight. Under CPU autocast LibTorch 1.13 hands a bf16 activation to
// layer_norm with fp32 weights and refuses it; CUDA autocast already computes layer norms in fp32.
torch::Tensor norm(torch::nn::LayerNorm& layer, const torch::Tensor& x) {
  const auto dtype = layer->weight.scalar_type();
  return layer(x.scalar_type() == dtype ? x : x.to(dtype));
}

void require_divisible(const char* what, int64_t channels, int64_t heads) {
  TORCH_CHECK(heads > 0 && channels % heads == 0, what, " (", channels, ") must be divisible by num_heads (", heads,
              ")");
}

// (B, T, H*C) -> (B, H, T, C)
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  return x.unflatten(-1, {heads, x.size(-1) / heads}).transpose(1, 2);
}

}  // namespace

torch::Tensor apply_activation(const std::string& name, const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  if (name == "gelu" || name == "gelu_python") return F::gelu(x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return F::gelu(x, F::GELUFuncOptions().approximate("tanh"));
  if (name == "quick_gelu") return x * torch::sigmoid(1.702 * x);
  if (name == "relu") return torch::relu(x);
  if (name == "relu6") return torch::clamp(x, 0.0, 6.0);
  if (name == "selu") return torch::selu(x);
  if (name == "silu" || name == "swish") return torch::silu(x);
  if (name == "tanh") return torch::tanh(x);
  if (name == "sigmoid") return torch::sigmoid(x);
  if (name == "mish") return F::mish(x);
  if (name == "linear") return x;
  TORCH_CHECK(false, "unknown activation '", name, "'");
}

torch::Tensor invert_attention_mask(const torch::Tensor& mask) {
  TORCH_CHECK(mask.dim() == 2 || mask.dim() == 3, "attention_mask must have shape (batch, seq) or (batch, q, seq), got ",
              mask.sizes());
  auto m = mask.to(torch::kFloat32);
  m = mask.dim() == 2 ? m.unsqueeze(1).unsqueeze(1) : m.unsqueeze(1);
  return (1.0 - m) * std::numeric_limits<float>::lowest();
}

PerceiverSelfAttentionImpl::PerceiverSelfAttentionImpl(const PerceiverSelfAttentionOptions& options)
    : options_(options) {
  require_divisible("qk_channels", options.qk_channels, options.num_heads);
  require_divisible("v_channels", options.v_channels, options.num_heads);
  layernorm1 = register_module("layernorm1", layer_norm(options.q_dim));
  if (options.is_cross_attention) layernorm2 = register_module("layernorm2", layer_norm(options.kv_dim));
  query = register_module("query", torch::nn::Linear(options.q_dim, options.qk_channels));
  key = register_module("key", torch::nn::Linear(options.kv_dim, options.qk_channels));
  value = register_module("value", torch::nn::Linear(options.kv_dim, options.v_channels));
  dropout = register_module("dropout", torch::nn::Dropout(options.dropout));
}

AttentionResult PerceiverSelfAttentionImpl::forward(const torch::Tensor& hidden_states, const torch::Tensor& inputs,
                                                    const torch::Tensor& attention_mask, bool output_attentions) {
  const auto normed = norm(layernorm1, hidden_states);
  const bool cross = inputs.defined();
  TORCH_CHECK(cross == options_.is_cross_attention,
              cross ? "self-attention layer called with cross-attention inputs" : "cross-attention layer needs inputs");
  const auto kv = cross ? norm(layernorm2, inputs) : normed;
  TORCH_CHECK(kv.size(-1) == options_.kv_dim, "attention inputs have ", kv.size(-1), " channels, expected ",
              options_.kv_dim);

  const int64_t heads = options_.num_heads;
  const auto q = split_heads(query(normed), heads);
  const auto k = split_heads(key(kv), heads);
  const auto v = split_heads(value(kv), heads);

  auto scores = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(q.size(-1)));
  if (attention_mask.defined()) scores = scores + attention_mask;
  auto probs = torch::softmax(scores, -1);
  probs = dropout(probs);

  auto context = torch::matmul(probs, v).transpose(1, 2).flatten(-2);
  return {context, output_attentions ? probs : torch::Tensor()};
}

PerceiverSelfOutputImpl::PerceiverSelfOutputImpl(int64_t input_channels, int64_t output_channels) {
  dense = register_module("dense", torch::nn::Linear(input_channels, output_channels));
}

PerceiverAttentionImpl::PerceiverAttentionImpl(const PerceiverConfig& config, const PerceiverLayerOptions& o)
    : use_query_residual_(o.use_query_residual) {
  int64_t qk = 0;
  if (o.qk_channels) {
    qk = *o.qk_channels;
  } else if (o.is_cross_attention) {
    qk = config.cross_attention_shape_for_attention == "q" ? o.q_dim : o.kv_dim;
  } else {
    qk = o.q_dim;
  }
  const int64_t v = o.v_channels.value_or(qk);
  PerceiverSelfAttentionOptions so;
  so.is_cross_attention = o.is_cross_attention;
  so.qk_channels = qk;
  so.v_channels = v;
  so.num_heads = o.num_heads;
  so.q_dim = o.q_dim;
  so.kv_dim = o.kv_dim;
  so.dropout = config.attention_probs_dropout_prob;
  self = register_module("self", PerceiverSelfAttention(so));
  // Cross-attention projects back to the query width; self-attention keeps v channels.
  output = register_module("output", PerceiverSelfOutput(v, o.is_cross_attention ? o.q_dim : v));
}

AttentionResult PerceiverAttentionImpl::forward(const torch::Tensor& hidden_states, const torch::Tensor& inputs,
                                                const torch::Tensor& attention_mask, bool output_attentions) {
  auto result = self->forward(hidden_states, inputs, attention_mask, output_attentions);
  result.output = output(result.output);
  if (use_query_residual_) result.output = result.output + hidden_states;
  return result;
}

PerceiverMLPImpl::PerceiverMLPImpl(const PerceiverConfig& config, int64_t input_size, int64_t widening_factor)
    : activation_(config.hidden_act) {
  dense1 = register_module("dense1", torch::nn::Linear(input_size, widening_factor * input_size));
  dense2 = register_module("dense2", torch::nn::Linear(widening_factor * input_size, input_size));
}

torch::Tensor PerceiverMLPImpl::forward(const torch::Tensor& x) {
  return dense2(apply_activation(activation_, dense1(x)));
}

PerceiverLayerImpl::PerceiverLayerImpl(const PerceiverConfig& config, const PerceiverLayerOptions& options) {
  attention = register_module("attention", PerceiverAttention(config, options));
  layernorm = register_module("layernorm", layer_norm(options.q_dim));
  mlp = register_module("mlp", PerceiverMLP(config, options.q_dim, options.widening_factor));
}

AttentionResult PerceiverLayerImpl::forward(const torch::Tensor& hidden_states, const torch::Tensor& inputs,
                                            const torch::Tensor& attention_mask, bool output_attentions) {
  auto result = attention->forward(hidden_states, inputs, attention_mask, output_attentions);
  result.output = mlp(norm(layernorm, result.output)) + result.output;
  return result;
}

}  // namespace perceiver

// The attention core, mirroring HF's PerceiverSelfAttention, PerceiverSelfOutput,
// PerceiverAttention, PerceiverMLP and PerceiverLayer (module names equal HF's attribute names).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "perceiver/models/attention_plan.h"
#include "perceiver/models/config.h"
#include "perceiver/ops/matmul.h"
#include "perceiver/models/shared_channels.h"

namespace perceiver {

// HF's ACT2FN for the names PerceiverConfig.hidden_act accepts ("gelu" is the exact erf form).
torch::Tensor apply_activation(const std::string& name, const torch::Tensor& x);
// The same activation as one that a product applies as it writes its result, where there is one.
std::optional<ops::Activation> fusable_activation(const std::string& name);

// HF's invert_attention_mask: (B, N) 1/0 mask -> (B, 1, 1, N) additive float mask
// (1 - mask) * finfo(float32).min, so a fully masked row stays finite (uniform attention).
torch::Tensor invert_attention_mask(const torch::Tensor& mask);

struct AttentionResult {
  torch::Tensor output;
  torch::Tensor attention_probs;  // undefined unless requested
};

// A cross-attention's keys and values, made once for several slices of queries (a decoder that
// takes its queries a slice at a time).
struct AttentionKeys {
  torch::Tensor keys;    // (B, H, L, QK / H)
  torch::Tensor values;  // (B, H, L, V / H)
  // The values times the output projection (B, H * L, O), where the output projection folds for the
  // slices' number of queries (see output_projection_folds).
  torch::Tensor projected_values;
};

// What attention computes before the values are mixed: per head, the weights of every key for every
// query and the values they weigh.
struct Attended {
  torch::Tensor probs;             // (B, H, N, L), after dropout
  torch::Tensor values;            // (B, H, L, V / H)
  torch::Tensor projected_values;  // as in AttentionKeys, where already made
  torch::Tensor context;           // (B, N, V): the weighted values, where made without the values
};

struct PerceiverSelfAttentionOptions {
  bool is_cross_attention = false;
  int64_t qk_channels = 0;  // already resolved (PerceiverAttention applies HF's defaults)
  int64_t v_channels = 0;
  int64_t num_heads = 1;
  int64_t q_dim = 0;
  int64_t kv_dim = 0;
  double dropout = 0.0;
};

class PerceiverSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit PerceiverSelfAttentionImpl(const PerceiverSelfAttentionOptions& options);
  // inputs undefined = self-attention over hidden_states; mask is additive, broadcastable to scores.
  // Shared channels of the queries (a decoder whose queries are the encoder's inputs) or of the
  // inputs are normalised and projected once per batch (see WithSharedChannels).
  AttentionResult forward(const WithSharedChannels& hidden_states, const WithSharedChannels& inputs,
                          const torch::Tensor& attention_mask, bool output_attentions);
  // forward's work up to the weighted sum of the values, the way `plan` says; a cross-attention takes
  // the keys and values of `inputs` from `made_keys` where given (made by keys()).
  Attended attend(const WithSharedChannels& hidden_states, const WithSharedChannels& inputs,
                  const torch::Tensor& attention_mask, const AttentionPlan& plan,
                  const AttentionKeys* made_keys = nullptr);
  // A cross-attention's keys and values of `inputs` (plan.factor_inputs: their shared channels factored).
  AttentionKeys keys(const WithSharedChannels& inputs, const AttentionPlan& plan);
  // The shapes of a call on these tensors, for select_attention_plan (out_channels left 0); or of
  // `batch` x `queries` queries without shared channels (keys made for later calls).
  AttentionCall describe(const WithSharedChannels& hidden_states, const WithSharedChannels& inputs) const;
  AttentionCall describe(const WithSharedChannels& inputs, int64_t batch, int64_t queries) const;
  // The state of the thread with this module's dropout.
  ExecutionState state() const;

 private:
  struct SharedTermsCache;
  struct Factored;
  void check_inputs(const WithSharedChannels& inputs) const;
  // a's own channels centred and scaled, and the kept terms of its shared channels (see attention.cpp).
  Factored factor(const WithSharedChannels& a, const torch::nn::LayerNorm& norm,
                  const std::vector<torch::nn::Linear>& layers, SharedTermsCache& cache, bool in_place);
  // Keys and values of already normalised inputs (heads split).
  AttentionKeys project_keys(const torch::Tensor& normed);
  Attended attend_without_keys(const torch::Tensor& q, const WithSharedChannels& inputs,
                               const torch::Tensor& attention_mask, bool in_place);
  // norm(a.whole()) projected by each of layers, the terms of a's shared channels made once per batch, and
  // without gradients kept in `cache` while the weights and the shared channels stay the same.
  std::vector<torch::Tensor> factored_projections(const WithSharedChannels& a, const torch::nn::LayerNorm& norm,
                                                  const std::vector<torch::nn::Linear>& layers, SharedTermsCache& cache,
                                                  bool in_place);

  PerceiverSelfAttentionOptions options_;
  torch::nn::LayerNorm layernorm1{nullptr}, layernorm2{nullptr};
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr};
  torch::nn::Dropout dropout{nullptr};
  // Without gradients, the shared channels' terms are kept between calls while the weights and the
  // shared channels stay the same (inference on a fixed grid projects its positions once).
  std::shared_ptr<SharedTermsCache> query_terms_cache_, key_value_terms_cache_;
};
TORCH_MODULE(PerceiverSelfAttention);

class PerceiverSelfOutputImpl : public torch::nn::Module {
 public:
  PerceiverSelfOutputImpl(int64_t input_channels, int64_t output_channels);
  // dense(x) + residual where defined (the query residual, added as the product is written).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual = {});
  // dense(context) + residual, the context being the attended values with the heads side by side;
  // computed as probs (values dense) where plan.fold_output. The same up to float rounding.
  torch::Tensor forward(const Attended& attended, const torch::Tensor& residual, const AttentionPlan& plan);
  // The values (B, H, L, V / H) times the projection: (B, H * L, O), the first product of the fold.
  torch::Tensor project_values(const torch::Tensor& values) const;
  int64_t out_channels() const { return dense->weight.size(0); }

 private:
  torch::nn::Linear dense{nullptr};
};
TORCH_MODULE(PerceiverSelfOutput);

// Arguments of HF's PerceiverAttention / PerceiverLayer; unset channels follow HF's rules.
struct PerceiverLayerOptions {
  bool is_cross_attention = false;
  std::optional<int64_t> qk_channels;
  std::optional<int64_t> v_channels;
  int64_t num_heads = 1;
  int64_t q_dim = 0;
  int64_t kv_dim = 0;
  int64_t widening_factor = 4;
  bool use_query_residual = true;
};

class PerceiverAttentionImpl : public torch::nn::Module {
 public:
  PerceiverAttentionImpl(const PerceiverConfig& config, const PerceiverLayerOptions& options);
  // keys: made by keys() from these inputs, or none. The plan comes from select_attention_plan.
  AttentionResult forward(const WithSharedChannels& hidden_states, const WithSharedChannels& inputs,
                          const torch::Tensor& attention_mask, bool output_attentions,
                          const AttentionKeys* made_keys = nullptr);
  // A cross-attention's keys and values of `inputs`, for slices of `queries` queries at a time.
  AttentionKeys keys(const WithSharedChannels& inputs, int64_t queries);

 private:
  PerceiverSelfAttention self{nullptr};
  PerceiverSelfOutput output{nullptr};
  bool use_query_residual_;
};
TORCH_MODULE(PerceiverAttention);

class PerceiverMLPImpl : public torch::nn::Module {
 public:
  PerceiverMLPImpl(const PerceiverConfig& config, int64_t input_size, int64_t widening_factor);
  // dense2(act(dense1(x))) + residual where defined (PerceiverLayer's, added as the product is written).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& residual = {});

 private:
  std::string activation_;
  std::optional<ops::Activation> fused_activation_;
  torch::nn::Linear dense1{nullptr}, dense2{nullptr};
};
TORCH_MODULE(PerceiverMLP);

class PerceiverLayerImpl : public torch::nn::Module {
 public:
  PerceiverLayerImpl(const PerceiverConfig& config, const PerceiverLayerOptions& options);
  AttentionResult forward(const WithSharedChannels& hidden_states, const WithSharedChannels& inputs = {},
                          const torch::Tensor& attention_mask = {}, bool output_attentions = false,
                          const AttentionKeys* made_keys = nullptr);
  // As PerceiverAttention::keys.
  AttentionKeys keys(const WithSharedChannels& inputs, int64_t queries) { return attention->keys(inputs, queries); }

 private:
  PerceiverAttention attention{nullptr};
  torch::nn::LayerNorm layernorm{nullptr};
  PerceiverMLP mlp{nullptr};
};
TORCH_MODULE(PerceiverLayer);

}  // namespace perceiver

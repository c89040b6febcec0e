#include "perceiver/models/attention.h"

#include <cmath>
#include <limits>
#include <mutex>
#include <vector>

#include "perceiver/ops/dynamic_size.h"
#include "perceiver/ops/matmul.h"
#include "perceiver/ops/softmax.h"
#include "perceiver/ops/torch_compat.h"

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

// scores + the additive mask where there is one: in place where that changes nothing (no backward
// needs the scores); a mask of another dtype promotes the scores, as HF's add does under autocast.
torch::Tensor with_mask(torch::Tensor scores, const torch::Tensor& mask) {
  if (!mask.defined()) return scores;
  const bool fits =
      mask.scalar_type() == scores.scalar_type() && at::infer_size(scores.sizes(), mask.sizes()) == scores.sizes();
  return fits ? scores.add_(mask) : scores + mask;
}

// The weighted values with the heads side by side (B, N, V): made by attend itself, or probs values.
torch::Tensor context_of(const Attended& attended) {
  if (attended.context.defined()) return attended.context;
  return ops::matmul(attended.probs, attended.values).transpose(1, 2).flatten(-2);
}

}  // namespace

torch::Tensor apply_activation(const std::string& name, const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  if (const auto fusable = fusable_activation(name)) return ops::activate(x, *fusable);
  if (name == "quick_gelu") return x * torch::sigmoid(1.702 * x);
  if (name == "relu6") return torch::clamp(x, 0.0, 6.0);
  if (name == "selu") return torch::selu(x);
  if (name == "silu" || name == "swish") return torch::silu(x);
  if (name == "tanh") return torch::tanh(x);
  if (name == "sigmoid") return torch::sigmoid(x);
  if (name == "mish") return F::mish(x);
  if (name == "linear") return x;
  TORCH_CHECK(false, "unknown activation '", name, "'");
}

std::optional<ops::Activation> fusable_activation(const std::string& name) {
  if (name == "gelu" || name == "gelu_python") return ops::Activation::gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return ops::Activation::gelu_tanh;
  if (name == "relu") return ops::Activation::relu;
  return std::nullopt;
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
  query_terms_cache_ = std::make_shared<SharedTermsCache>();
  key_value_terms_cache_ = std::make_shared<SharedTermsCache>();
}

// LayerNorm(a) projected by linear layers, with a = [x, e]: x (B, M, Cx) per example, e (1, M, Cs)
// the same for every example. With G = W * gamma (gamma folded into W's columns), LayerNorm then W
// gives ((a - mean) G^T) / std + (W beta + b), and (a - mean) G^T splits into
//   (x - mean) G_x^T  +  (e - mean_e) G_e^T  +  (mean_e - mean) rowsum(G_e)
// whose middle term, the large one, is computed once for the batch. The statistics come from x's and
// e's own centred sums (no E[a^2] - mean^2 cancellation).
namespace {

// What a factored projection needs beyond x: functions of the weights and of e only. Each layer is
// projected on its own, so that the gradients need no split of one (B, M, K + V) product.
struct FoldedProjection {
  torch::Tensor weight_x;     // (N, Cx + 1): [G_x, rowsum(G_e)], so that one product also adds
                              // the (mean_e - mean) rowsum(G_e) term
  torch::Tensor bias;         // (N): W beta + b
  torch::Tensor e_projected;  // (1, M, N): (e - mean_e) G_e^T
};

struct SharedTerms {
  torch::Tensor e_mean;     // (1, M, 1)
  torch::Tensor e_scatter;  // (1, M, 1): sum of squared deviations from e_mean
  std::vector<FoldedProjection> projections;

  // The terms of rows [start, start + length) of e (views).
  SharedTerms rows(int64_t start, int64_t length) const {
    SharedTerms t{e_mean.narrow(1, start, length), e_scatter.narrow(1, start, length), projections};
    for (auto& p : t.projections) p.e_projected = p.e_projected.narrow(1, start, length);
    return t;
  }
};

FoldedProjection fold(const torch::nn::Linear& layer, const torch::nn::LayerNorm& norm,
                      const torch::Tensor& e_centred) {
  const int64_t cs = e_centred.size(-1), cx = layer->weight.size(1) - cs;
  const auto weight = layer->weight * norm->weight;
  const auto w_e = weight.narrow(1, cx, cs);
  // e centred before projecting, so that no large terms cancel afterwards, also where autocast
  // projects in bf16.
  return {torch::cat({weight.narrow(1, 0, cx), w_e.sum(1, true)}, 1),
          layer->bias + (layer->weight * norm->bias).sum(1), ops::linear(e_centred, w_e)};
}

SharedTerms shared_terms(const torch::Tensor& e, const std::vector<torch::nn::Linear>& layers,
                         const torch::nn::LayerNorm& norm) {
  SharedTerms t;
  t.e_mean = e.mean(-1, true);
  const auto e_centred = e - t.e_mean;
  t.e_scatter = e_centred.square().sum(-1, true);
  for (const auto& layer : layers) t.projections.push_back(fold(layer, norm, e_centred));
  return t;
}

// Whether `a` comes with shared channels, which must fit its rows.
bool has_shared_channels(const WithSharedChannels& a, const char* what) {
  if (!a.shared.defined()) return false;
  const bool rows_fit = a.sliced ? a.shared_offset >= 0 && a.shared_offset + a.size(1) <= a.shared.size(1)
                                 : a.shared_offset == 0 && a.shared.size(1) == a.size(1);
  TORCH_CHECK(a.shared.dim() == 3 && a.shared.size(0) == 1 && rows_fit && a.shared.size(2) < a.size(2),
              "shared channels of the attention ", what, " ", a.shared.sizes(), " from row ", a.shared_offset,
              " do not fit the ", what, " ", a.rows_tensor().sizes(), a.held_apart() ? " (own channels)" : "");
  return true;
}

}  // namespace

// Without gradients (plan.in_place) the terms of the shared channels are kept between calls, keyed on
// the weights' identity and version and on the shared channels (by identity and version, else by
// value). Why a cache and not a frozen inference session that owns the terms: it is measured to pay
// (flow-infer 0.062 s/iter with it, 0.085 without, 2026-12-07, docs/performance.md "Kept position
// terms"), and keying on versions keeps it right under every write that ATen's in-place ops make
// (optimizer steps between evaluations, load_state_dict, a user's own code) with no call a user must
// remember. Code that writes a weight through a raw pointer must bump its version, as ATen's in-place
// ops do and as autograd's saved-tensor checks need anyway (trainers/fused_adamw.cpp does).
struct PerceiverSelfAttentionImpl::SharedTermsCache {
  std::mutex mutex;
  torch::Tensor shared;                                   // the shared channels the terms were made from
  uint32_t shared_version = 0;                            // and their version then
  c10::optional<torch::ScalarType> autocast;             // the dtype autocast projected them in, if on
  std::vector<std::pair<const void*, uint32_t>> weights;  // identity and version of each parameter used
  SharedTerms terms;
};

struct PerceiverSelfAttentionImpl::Factored {
  torch::Tensor x_augmented;  // (B, M, Cx + 1): [x - mean, mean_e - mean]
  torch::Tensor inv_std;      // (B, M, 1)
  SharedTerms terms;          // of this slice's rows
};

PerceiverSelfAttentionImpl::Factored PerceiverSelfAttentionImpl::factor(const WithSharedChannels& a,
                                                                        const torch::nn::LayerNorm& norm,
                                                                        const std::vector<torch::nn::Linear>& layers,
                                                                        SharedTermsCache& cache, bool in_place) {
  const auto dtype = norm->weight.scalar_type();
  const int64_t c = a.size(-1), cs = a.shared.size(-1);
  const auto x = a.own_channels().to(dtype);
  const auto e = a.shared.to(dtype);
  const int64_t rows = a.size(1), offset = a.shared_offset;
  const bool slice = offset != 0 || rows != e.size(1);

  SharedTerms t;
  if (in_place) {
    std::vector<std::pair<const void*, uint32_t>> weights;
    std::vector<const torch::Tensor*> parameters{&norm->weight, &norm->bias};
    for (const auto& layer : layers) parameters.insert(parameters.end(), {&layer->weight, &layer->bias});
    for (const auto* p : parameters) weights.emplace_back(p->unsafeGetTensorImpl(), p->_version());
    std::lock_guard<std::mutex> lock(cache.mutex);
    // The same memory at the same version holds the same values (a position encoding that keeps its
    // grid hands out the same tensor); memory changed in place since has lost the values the terms
    // came from; other memory is compared by value. (Inference tensors keep no version: for them the
    // same memory is a miss.)
    const auto same_values = [&] {
      if (!cache.shared.is_alias_of(e)) return torch::equal(cache.shared, e);
      return !e.is_inference() && !cache.shared.is_inference() && cache.shared.storage_offset() == e.storage_offset() &&
             cache.shared.strides() == e.strides() && cache.shared_version == e._version();
    };
    const auto device_type = e.device().type();
    const auto autocast = compat::autocast_enabled(device_type)
                              ? c10::optional<torch::ScalarType>(compat::autocast_dtype(device_type))
                              : c10::nullopt;
    const bool hit = cache.shared.defined() && cache.weights == weights && cache.autocast == autocast &&
                     cache.shared.sizes() == e.sizes() &&
                     cache.shared.scalar_type() == e.scalar_type() && cache.shared.device() == e.device() &&
                     same_values();
    if (!hit) cache.terms = shared_terms(e, layers, norm);
    cache.shared = e;  // also on a hit by value: the next call with this tensor is a hit by identity
    cache.shared_version = e.is_inference() ? 0 : e._version();
    cache.weights = std::move(weights);
    cache.autocast = autocast;
    t = cache.terms;
    // The whole sequence's terms are kept; a slice of it takes their rows.
    if (slice) t = t.rows(offset, rows);
  } else {
    t = shared_terms(slice ? e.narrow(1, offset, rows) : e, layers, norm);
  }

  const double n = static_cast<double>(c);
  // Mean and variance over all C channels per (example, position).
  const auto mean = (x.sum(-1, true) + t.e_mean * static_cast<double>(cs)) / n;  // (B, M, 1)
  const auto x_centred = x - mean;
  const auto var =
      (x_centred.square().sum(-1, true) + t.e_scatter + (t.e_mean - mean).square() * static_cast<double>(cs)) / n;
  Factored f;
  f.inv_std = torch::rsqrt(var + norm->options.eps());
  f.x_augmented = torch::cat({x_centred, t.e_mean - mean}, -1);
  f.terms = std::move(t);
  return f;
}

std::vector<torch::Tensor> PerceiverSelfAttentionImpl::factored_projections(const WithSharedChannels& a,
                                                                            const torch::nn::LayerNorm& norm,
                                                                            const std::vector<torch::nn::Linear>& layers,
                                                                            SharedTermsCache& cache,
                                                                            bool in_place) {
  const auto factored = factor(a, norm, layers, cache, in_place);
  std::vector<torch::Tensor> out;
  for (const auto& f : factored.terms.projections) {
    // Per example: (x - mean) G_x^T + (mean_e - mean) rowsum(G_e) as one product; then the shared term.
    auto projected = ops::linear(factored.x_augmented, f.weight_x);
    projected.add_(f.e_projected);  // in place: nothing saved the product for backward
    // In place without gradients too: these (B, M, N) products are the largest tensors of a forward.
    // In the product's dtype, as an unfactored projection's result (bf16 under autocast).
    const auto dtype = projected.scalar_type();
    out.push_back(in_place ? projected.mul_(factored.inv_std).add_(f.bias)
                           : torch::addcmul(f.bias.to(dtype), projected, factored.inv_std.to(dtype)));
  }
  return out;
}

AttentionResult PerceiverSelfAttentionImpl::forward(const WithSharedChannels& hidden_states,
                                                    const WithSharedChannels& inputs,
                                                    const torch::Tensor& attention_mask, bool output_attentions) {
  const auto plan = select_attention_plan(describe(hidden_states, inputs), state());
  auto attended = attend(hidden_states, inputs, attention_mask, plan);
  return {context_of(attended), output_attentions ? attended.probs : torch::Tensor()};
}

AttentionCall PerceiverSelfAttentionImpl::describe(const WithSharedChannels& hidden_states,
                                                   const WithSharedChannels& inputs) const {
  TORCH_CHECK(inputs.defined() || !hidden_states.shared.defined(),
              "a self-attention layer takes no shared query channels");
  auto call = describe(inputs, hidden_states.size(0), hidden_states.size(1));
  call.queries_share_channels = has_shared_channels(hidden_states, "queries");
  return call;
}

AttentionCall PerceiverSelfAttentionImpl::describe(const WithSharedChannels& inputs, int64_t batch,
                                                   int64_t queries) const {
  check_inputs(inputs);
  AttentionCall call;
  call.cross = inputs.defined();
  call.batch = batch;
  call.queries = queries;
  call.keys = call.cross ? inputs.size(1) : queries;
  call.heads = options_.num_heads;
  call.v_channels = options_.v_channels;
  call.inputs_share_channels = call.cross && has_shared_channels(inputs, "inputs");
  return call;
}

ExecutionState PerceiverSelfAttentionImpl::state() const {
  return ExecutionState::current(is_training() && options_.dropout > 0);
}

void PerceiverSelfAttentionImpl::check_inputs(const WithSharedChannels& inputs) const {
  const bool cross = inputs.defined();
  TORCH_CHECK(cross == options_.is_cross_attention,
              cross ? "self-attention layer called with cross-attention inputs" : "cross-attention layer needs inputs");
  if (cross)
    TORCH_CHECK(inputs.size(-1) == options_.kv_dim, "attention inputs have ", inputs.size(-1),
                " channels, expected ", options_.kv_dim);
}

AttentionKeys PerceiverSelfAttentionImpl::keys(const WithSharedChannels& inputs, const AttentionPlan& plan) {
  check_inputs(inputs);
  TORCH_CHECK(inputs.defined(), "only a cross-attention's keys can be made apart from its queries");
  const int64_t heads = options_.num_heads;
  if (plan.factor_inputs) {
    const auto kv = factored_projections(inputs, layernorm2, {key, value}, *key_value_terms_cache_, plan.in_place);
    return {split_heads(kv[0], heads), split_heads(kv[1], heads), {}};
  }
  return project_keys(norm(layernorm2, inputs.whole()));
}

AttentionKeys PerceiverSelfAttentionImpl::project_keys(const torch::Tensor& normed) {
  const int64_t heads = options_.num_heads;
  return {split_heads(ops::linear(normed, key), heads), split_heads(ops::linear(normed, value), heads), {}};
}

Attended PerceiverSelfAttentionImpl::attend(const WithSharedChannels& hidden_states, const WithSharedChannels& inputs,
                                            const torch::Tensor& attention_mask, const AttentionPlan& plan,
                                            const AttentionKeys* made_keys) {
  check_inputs(inputs);
  const bool cross = inputs.defined();
  if (made_keys)
    TORCH_CHECK(cross && made_keys->keys.dim() == 4 && made_keys->keys.size(0) == inputs.size(0) &&
                    made_keys->keys.size(2) == inputs.size(1),
                "attention keys ", made_keys->keys.sizes(), " were not made from these inputs ",
                inputs.rows_tensor().sizes());

  const int64_t heads = options_.num_heads;
  torch::Tensor normed;  // layernorm1(hidden_states), where something projects it whole
  torch::Tensor q;
  if (plan.factor_queries) {
    q = factored_projections(hidden_states, layernorm1, {query}, *query_terms_cache_, plan.in_place)[0];
  } else {
    normed = norm(layernorm1, hidden_states.whole());
    q = ops::linear(normed, query);
  }
  q = split_heads(q, heads);
  if (plan.keyless) return attend_without_keys(q, inputs, attention_mask, plan.in_place);
  const auto made = made_keys ? *made_keys : cross ? keys(inputs, plan) : project_keys(normed);

  // HF divides the scores by sqrt(head width); the product applies it as it writes them.
  const auto scores =
      with_mask(ops::matmul(q, made.keys.transpose(-1, -2), 1.0 / std::sqrt(static_cast<double>(q.size(-1)))),
                attention_mask);
  return {dropout(ops::softmax(scores)), made.values, made.projected_values, {}};
}

// Cross-attention to inputs whose shared channels are factored, without their keys and values (two
// (B, M, C) tensors, the largest of such a forward, and their products and passes). With r the
// inverse std of each input row and a its augmented own channels (factor()),
//   k = r (a Gk^T + Ek) + bk  and  v = r (a Gv^T + Ev) + bv,
// so that
//   q k^T = ((q Gk) a^T + q Ek^T) r^T + q bk, whose last term is the same for every key of a query
//           (softmax ignores it), and
//   probs v = ((probs r^T) a) Gv^T + (probs r^T) Ev + bv, as every row of probs sums to one.
// Ek and Ev are the kept terms of the shared channels, the same for every example.
Attended PerceiverSelfAttentionImpl::attend_without_keys(const torch::Tensor& q, const WithSharedChannels& inputs,
                                                         const torch::Tensor& attention_mask, bool in_place) {
  const auto f = factor(inputs, layernorm2, {key, value}, *key_value_terms_cache_, in_place);
  const auto& k_terms = f.terms.projections[0];
  const auto& v_terms = f.terms.projections[1];
  const auto queries = q.select(1, 0);  // (B, N, QK): the one head
  const int64_t batch = queries.size(0), n = queries.size(1), m = f.x_augmented.size(1);
  const auto r = f.inv_std.transpose(1, 2).unsqueeze(1);  // (B, 1, 1, M)

  // The shared term for every example at once, (B N, QK) (QK, M), then the per-example one added to it.
  ops::LinearEpilogue shared_scores;
  shared_scores.residual =
      ops::matmul(queries.reshape({-1, queries.size(-1)}), k_terms.e_projected.select(0, 0).t()).view({batch, n, m});
  auto scores =
      ops::matmul_add(ops::linear(queries, k_terms.weight_x.t()), f.x_augmented.transpose(1, 2), {}, shared_scores)
          .unsqueeze(1);
  scores.mul_(r * (1.0 / std::sqrt(static_cast<double>(queries.size(-1)))));
  const auto probs = ops::softmax(with_mask(std::move(scores), attention_mask));

  const auto weighted = (probs * r).view({batch, n, m});
  ops::LinearEpilogue shared_values;
  shared_values.residual = ops::matmul(weighted.reshape({-1, m}), v_terms.e_projected.select(0, 0)).view({batch, n, -1});
  auto context = ops::linear(ops::matmul(weighted, f.x_augmented), v_terms.weight_x, v_terms.bias, shared_values);
  return {probs, {}, {}, std::move(context)};
}

PerceiverSelfOutputImpl::PerceiverSelfOutputImpl(int64_t input_channels, int64_t output_channels) {
  dense = register_module("dense", torch::nn::Linear(input_channels, output_channels));
}

torch::Tensor PerceiverSelfOutputImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  ops::LinearEpilogue epilogue;
  epilogue.residual = residual;
  return ops::linear(x, dense, epilogue);
}

torch::Tensor PerceiverSelfOutputImpl::forward(const Attended& attended, const torch::Tensor& residual,
                                               const AttentionPlan& plan) {
  if (attended.context.defined()) return forward(context_of(attended), residual);
  const auto& weight = dense->weight;
  TORCH_CHECK(attended.probs.dim() == 4 && attended.values.dim() == 4 &&
                  attended.probs.size(1) * attended.values.size(3) == weight.size(1),
              "attention output: values ", attended.values.sizes(), " do not fit the output projection ",
              weight.sizes());
  if (!plan.fold_output) return forward(context_of(attended), residual);
  const auto projected =
      attended.projected_values.defined() ? attended.projected_values : project_values(attended.values);
  // Every head's weights side by side against every head's projected values stacked: the sum over
  // heads is the product's own sum (a view for one head).
  const auto probs = attended.probs.transpose(1, 2).flatten(2);  // (B, N, H * L)
  ops::LinearEpilogue epilogue;
  epilogue.residual = residual;
  return ops::matmul_add(probs, projected, dense->bias, epilogue);
}

torch::Tensor PerceiverSelfOutputImpl::project_values(const torch::Tensor& values) const {
  const auto& weight = dense->weight;
  const int64_t heads = values.size(1), head_channels = values.size(3);
  TORCH_CHECK(heads * head_channels == weight.size(1), "attention output: values ", values.sizes(),
              " do not fit the output projection ", weight.sizes());
  // Head h's values times the columns of W that its context channels meet: (B, H, L, O).
  torch::Tensor projected;
  if (heads == 1) {
    projected = ops::linear(values, weight);
  } else {
    const auto weight_by_head = weight.unflatten(1, {heads, head_channels}).permute({1, 2, 0});  // (H, V/H, O)
    projected = ops::matmul(values, dynamic::expand(weight_by_head.unsqueeze(0), {DynamicSize::of(values, 0), -1, -1, -1}));
  }
  return projected.flatten(1, 2);  // sizes the tracer keeps free (an export's batch)
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

AttentionKeys PerceiverAttentionImpl::keys(const WithSharedChannels& inputs, int64_t queries) {
  // The plan of the calls that will take these keys, `queries` at a time.
  auto call = self->describe(inputs, inputs.size(0), queries);
  call.keys_made = true;
  call.out_channels = output->out_channels();
  const auto plan = select_attention_plan(call, self->state());
  auto made = self->keys(inputs, plan);
  if (plan.fold_output) made.projected_values = output->project_values(made.values);
  return made;
}

AttentionResult PerceiverAttentionImpl::forward(const WithSharedChannels& hidden_states, const WithSharedChannels& inputs,
                                                const torch::Tensor& attention_mask, bool output_attentions,
                                                const AttentionKeys* made_keys) {
  auto call = self->describe(hidden_states, inputs);
  call.out_channels = output->out_channels();
  call.keys_made = made_keys != nullptr;
  call.values_projected = made_keys && made_keys->projected_values.defined();
  const auto plan = select_attention_plan(call, self->state());
  auto attended = self->attend(hidden_states, inputs, attention_mask, plan, made_keys);
  AttentionResult result;
  if (output_attentions) result.attention_probs = attended.probs;
  result.output =
      output->forward(attended, use_query_residual_ ? hidden_states.whole() : torch::Tensor(), plan);
  return result;
}

PerceiverMLPImpl::PerceiverMLPImpl(const PerceiverConfig& config, int64_t input_size, int64_t widening_factor)
    : activation_(config.hidden_act), fused_activation_(fusable_activation(config.hidden_act)) {
  dense1 = register_module("dense1", torch::nn::Linear(input_size, widening_factor * input_size));
  dense2 = register_module("dense2", torch::nn::Linear(widening_factor * input_size, input_size));
}

torch::Tensor PerceiverMLPImpl::forward(const torch::Tensor& x, const torch::Tensor& residual) {
  torch::Tensor hidden;
  if (fused_activation_) {
    ops::LinearEpilogue activated;
    activated.activation = *fused_activation_;
    hidden = ops::linear(x, dense1, activated);
  } else {
    hidden = apply_activation(activation_, ops::linear(x, dense1));
  }
  ops::LinearEpilogue added;
  added.residual = residual;
  return ops::linear(hidden, dense2, added);
}

PerceiverLayerImpl::PerceiverLayerImpl(const PerceiverConfig& config, const PerceiverLayerOptions& options) {
  attention = register_module("attention", PerceiverAttention(config, options));
  layernorm = register_module("layernorm", layer_norm(options.q_dim));
  mlp = register_module("mlp", PerceiverMLP(config, options.q_dim, options.widening_factor));
}

AttentionResult PerceiverLayerImpl::forward(const WithSharedChannels& hidden_states, const WithSharedChannels& inputs,
                                            const torch::Tensor& attention_mask, bool output_attentions,
                                            const AttentionKeys* made_keys) {
  auto result = attention->forward(hidden_states, inputs, attention_mask, output_attentions, made_keys);
  result.output = mlp->forward(norm(layernorm, result.output), result.output);
  return result;
}

}  // namespace perceiver

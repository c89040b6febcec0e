#include "perceiver/models/decoders.h"

#include "perceiver/ops/dynamic_size.h"
#include "perceiver/ops/matmul.h"

#include <algorithm>
#include <numeric>

namespace perceiver {

PerceiverBasicDecoderImpl::PerceiverBasicDecoderImpl(const PerceiverConfig& config, const BasicDecoderOptions& options)
    : options_(options), attention_dropout_(config.attention_probs_dropout_prob) {
  if (options.position_encoding.type != "none") {
    auto built = build_position_encoding(options.position_encoding);
    output_position_encodings = register_module("output_position_encodings", built.encoding);
    if (built.projection) positions_projection = register_module("positions_projection", built.projection);
  }
  if (!options.position_encoding_only) {
    PerceiverLayerOptions layer;
    layer.is_cross_attention = true;
    layer.qk_channels = options.qk_channels;
    layer.v_channels = options.v_channels;
    layer.num_heads = options.num_heads;
    layer.q_dim = options.num_channels;
    layer.kv_dim = config.d_latents;
    layer.widening_factor = options.widening_factor;
    layer.use_query_residual = options.use_query_residual;
    decoding_cross_attention = register_module("decoding_cross_attention", PerceiverLayer(config, layer));
    if (options.final_project)
      final_layer = register_module("final_layer", torch::nn::Linear(options.num_channels, options.output_num_channels));
  }
}

int64_t PerceiverBasicDecoderImpl::num_query_channels() const {
  TORCH_CHECK(options_.position_encoding.type != "none",
              "cannot compute the number of decoder query channels when position_encoding_type is none");
  if (options_.position_encoding_only) {
    if (options_.position_encoding.project_pos_dim > 0) return options_.position_encoding.project_pos_dim;
    return output_position_encodings->output_size();
  }
  return options_.final_project ? options_.output_num_channels : options_.num_channels;
}

torch::Tensor PerceiverBasicDecoderImpl::project_positions(const torch::Tensor& pos_emb) {
  return positions_projection ? ops::linear(pos_emb, positions_projection) : pos_emb;
}

WithSharedChannels PerceiverBasicDecoderImpl::decoder_query(const WithSharedChannels& inputs,
                                                            const std::optional<ModalitySizes>& /*modality_sizes*/,
                                                            const torch::Tensor& inputs_without_pos,
                                                            const TensorOrDict& subsampled_points) {
  // The queries read only the inputs' batch, dtype, device and sizes: the whole inputs are not made.
  const auto& rows = inputs.rows_tensor();
  std::vector<int64_t> trailing;
  for (int64_t d = 2; d < rows.dim(); ++d) trailing.push_back(inputs.size(d));
  return positions_for(rows, trailing, inputs_without_pos, subsampled_points);
}

torch::Tensor PerceiverBasicDecoderImpl::positions_for(const torch::Tensor& inputs,
                                                       const std::vector<int64_t>& trailing_dims,
                                                       const torch::Tensor& inputs_without_pos,
                                                       const TensorOrDict& subsampled_points) {
  TORCH_CHECK(options_.position_encoding.type != "none",
              "cannot construct decoder queries when position_encoding_type is none");
  const auto batch_size = DynamicSize::of(inputs, 0);
  PositionQuery query;
  query.batch_size = batch_size;
  query.dtype = inputs.scalar_type();
  query.device = inputs.device();
  torch::Tensor pos_emb;
  if (subsampled_points.tensor.defined()) {
    // Flat indices into output_index_dims -> coordinates in [-1, 1) (HF: -1 + 2 * idx / dim).
    const auto& dims = options_.output_index_dims;
    // Computed on the inputs' device, where the queries are used (the points may come from anywhere).
    auto remaining = subsampled_points.tensor.to(inputs.device(), torch::kLong).flatten();
    const int64_t total = std::accumulate(dims.begin(), dims.end(), int64_t{1}, std::multiplies<>());
    if (remaining.numel() > 0) {
      TORCH_CHECK(remaining.min().item<int64_t>() >= 0 && remaining.max().item<int64_t>() < total,
                  "subsampled output points must be in [0, ", total, ")");
    }
    std::vector<torch::Tensor> coords(dims.size());
    for (int64_t d = static_cast<int64_t>(dims.size()) - 1; d >= 0; --d) {
      coords[d] = torch::remainder(remaining, dims[d]);
      remaining = torch::div(remaining, dims[d], "floor");
    }
    auto pos = torch::stack(coords, 1);
    const auto dims_t = torch::tensor(dims, remaining.options()).unsqueeze(0);
    pos = -1 + 2 * pos / dims_t;  // int64 / int64 -> float32 true division, as in HF
    pos = dynamic::expand(pos.unsqueeze(0), {batch_size, -1, -1});
    query.index_dims = dims;
    query.pos = pos;
    pos_emb = project_positions(output_position_encodings->forward(query));
    pos_emb = pos_emb.flatten(1, -2);
  } else {
    query.index_dims = trailing_dims;  // HF: inputs.shape[2:]
    pos_emb = project_positions(output_position_encodings->forward(query));
  }
  if (options_.concat_preprocessed_input) {
    TORCH_CHECK(inputs_without_pos.defined(), "concat_preprocessed_input needs the inputs without positions");
    // Text shorter than the output positions takes the first ones, as the text preprocessor's own
    // position embeddings do (HF's cat refuses it; its callers pad to max_position_embeddings).
    if (pos_emb.dim() == 3 && inputs_without_pos.dim() == 3)
      pos_emb = dynamic::narrow(pos_emb, 1, 0, DynamicSize::of(inputs_without_pos, 1));
    pos_emb = torch::cat({inputs_without_pos, pos_emb}, -1);
  }
  return pos_emb;
}

PerceiverDecoderOutput PerceiverBasicDecoderImpl::forward(const WithSharedChannels& query, const torch::Tensor& z,
                                                          const torch::Tensor& /*query_mask: HF ignores it*/,
                                                          bool output_attentions) {
  TORCH_CHECK(decoding_cross_attention, "this decoder only builds position encodings (position_encoding_only)");
  const auto decode = [&](const WithSharedChannels& q, const AttentionKeys* keys = nullptr) {
    auto layer = decoding_cross_attention->forward(q, z, {}, output_attentions, keys);
    auto logits = final_layer ? ops::linear(layer.output, final_layer) : std::move(layer.output);
    return std::make_pair(std::move(logits), std::move(layer.attention_probs));
  };
  PerceiverDecoderOutput out;
  const int64_t queries = query.size(1);
  const int64_t per_pass = queries_per_pass(z.size(1), z.size(2));
  const auto state = ExecutionState::current(is_training() && attention_dropout_ > 0);
  if (!decode_in_slices(queries, per_pass, output_attentions, state)) {
    auto [logits, probs] = decode(query);
    out.logits = std::move(logits);
    if (output_attentions) out.cross_attentions.push_back(std::move(probs));
    return out;
  }
  // Slices of the queries one after another: the queries never meet, so each
  // slice decodes to what it would as part of the whole, and the decoder's intermediates (several
  // (B, N, C) tensors at once) stay a slice's size.
  const auto keys = decoding_cross_attention->keys(z, per_pass);  // made once for every slice
  torch::Tensor logits;
  for (int64_t start = 0; start < queries; start += per_pass) {
    const int64_t length = std::min(per_pass, queries - start);
    auto part = decode(query.rows(start, length), &keys).first;
    if (!logits.defined()) logits = torch::empty({part.size(0), queries, part.size(2)}, part.options());
    logits.narrow(1, start, length).copy_(part);
  }
  out.logits = std::move(logits);
  return out;
}

int64_t PerceiverBasicDecoderImpl::queries_per_pass(int64_t latents, int64_t latent_channels) const {
  if (options_.queries_per_pass > 0) return options_.queries_per_pass;
  // The widest row of the layer's intermediates: the query channels through the MLP, or every
  // head's scores against the latents, or the queries and keys (unset: the latents' width, HF's
  // default). About 4 MB per intermediate and example, and no fewer than 1,024 rows:
  // smaller slices made every op slower on two cores (measured in docs/performance.md).
  const int64_t widest = std::max({options_.num_channels * options_.widening_factor, options_.num_heads * latents,
                                   options_.qk_channels.value_or(latent_channels),
                                   options_.v_channels.value_or(latent_channels), int64_t{1}});
  return std::max<int64_t>(1024, (int64_t{1} << 20) / widest / 64 * 64);
}

void WrappedBasicDecoderImpl::make_decoder(const PerceiverConfig& config, const BasicDecoderOptions& options) {
  decoder = register_module("decoder", PerceiverBasicDecoder(config, options));
}

WithSharedChannels WrappedBasicDecoderImpl::decoder_query(const WithSharedChannels& inputs,
                                                          const std::optional<ModalitySizes>& modality_sizes,
                                                          const torch::Tensor& inputs_without_pos,
                                                          const TensorOrDict& subsampled_points) {
  return decoder->decoder_query(inputs, modality_sizes, inputs_without_pos, subsampled_points);
}

PerceiverClassificationDecoderImpl::PerceiverClassificationDecoderImpl(const PerceiverConfig& config,
                                                                       BasicDecoderOptions options) {
  options.output_num_channels = config.num_labels();
  options.output_index_dims = {1};
  make_decoder(config, options);
}

PerceiverDecoderOutput PerceiverClassificationDecoderImpl::forward(const WithSharedChannels& query, const torch::Tensor& z,
                                                                   const torch::Tensor& /*query_mask*/,
                                                                   bool output_attentions) {
  auto out = decoder->forward(query, z, {}, output_attentions);
  out.logits = out.logits.tensor.select(1, 0);  // (B, 1, num_labels) -> (B, num_labels)
  return out;
}

PerceiverProjectionDecoderImpl::PerceiverProjectionDecoderImpl(const PerceiverConfig& config) {
  classifier = register_module("classifier", torch::nn::Linear(config.d_latents, config.num_labels()));
}

PerceiverDecoderOutput PerceiverProjectionDecoderImpl::forward(const WithSharedChannels& /*query*/, const torch::Tensor& z,
                                                               const torch::Tensor& /*query_mask*/,
                                                               bool /*output_attentions*/) {
  PerceiverDecoderOutput out;
  out.logits = ops::linear(z.mean(1), classifier);
  return out;
}

PerceiverEmbeddingDecoderImpl::PerceiverEmbeddingDecoderImpl(const PerceiverConfig& config) {
  bias = register_parameter("bias", torch::zeros({config.vocab_size}));
}

torch::Tensor PerceiverEmbeddingDecoderImpl::forward(const torch::Tensor& hidden_states,
                                                     const torch::Tensor& embedding_weight) {
  const auto b = DynamicSize::of(hidden_states, 0), t = DynamicSize::of(hidden_states, 1);
  auto out = ops::linear(hidden_states.reshape({-1, hidden_states.size(2)}), embedding_weight, bias);
  return dynamic::reshape(out, {b, t, bias.size(0)});
}

}  // namespace perceiver

// Decoders: PerceiverBasicDecoder, PerceiverClassificationDecoder, PerceiverProjectionDecoder and
// PerceiverEmbeddingDecoder (the masked-LM output layer tied to the input embeddings).
#pragma once

#include <optional>
#include <vector>

#include "perceiver/models/attention.h"
#include "perceiver/models/components.h"
#include "perceiver/models/config.h"
#include "perceiver/models/position_encoding.h"

namespace perceiver {

// Arguments of HF's PerceiverBasicDecoder (position_encoding carries **position_encoding_kwargs).
struct BasicDecoderOptions {
  int64_t output_num_channels = 0;
  std::vector<int64_t> output_index_dims;
  int64_t num_channels = 128;
  std::optional<int64_t> qk_channels;
  std::optional<int64_t> v_channels;
  int64_t num_heads = 1;
  int64_t widening_factor = 1;
  bool use_query_residual = false;
  bool concat_preprocessed_input = false;
  bool final_project = true;
  bool position_encoding_only = false;
  PositionEncodingOptions position_encoding;  // type "trainable" by default; "none" = queries come from elsewhere
  // Not HF's: without gradients (and without output_attentions) the queries are decoded this many
  // at a time, so that the decoder's intermediates stay that size (the result is the same: queries
  // never meet). 0: from the layer's widths, about 4 MB per intermediate and example.
  int64_t queries_per_pass = 0;
};

class PerceiverBasicDecoderImpl : public DecoderImpl {
 public:
  PerceiverBasicDecoderImpl(const PerceiverConfig& config, const BasicDecoderOptions& options);
  int64_t num_query_channels() const override;
  WithSharedChannels decoder_query(const WithSharedChannels& inputs, const std::optional<ModalitySizes>& modality_sizes,
                                   const torch::Tensor& inputs_without_pos,
                                   const TensorOrDict& subsampled_points) override;
  PerceiverDecoderOutput forward(const WithSharedChannels& query, const torch::Tensor& z, const torch::Tensor& query_mask,
                                 bool output_attentions) override;
  const BasicDecoderOptions& options() const { return options_; }

 private:
  // decoder_query for inputs like `inputs` (batch, dtype, device) whose sizes past the first two are
  // trailing_dims.
  torch::Tensor positions_for(const torch::Tensor& inputs, const std::vector<int64_t>& trailing_dims,
                              const torch::Tensor& inputs_without_pos, const TensorOrDict& subsampled_points);
  torch::Tensor project_positions(const torch::Tensor& pos_emb);
  // How many queries the decoder takes at a time without gradients, for z (B, latents, latent_channels).
  int64_t queries_per_pass(int64_t latents, int64_t latent_channels) const;

  BasicDecoderOptions options_;
  double attention_dropout_ = 0.0;  // config.attention_probs_dropout_prob: a slice would draw its own mask
  std::shared_ptr<PositionEncodingImpl> output_position_encodings;
  torch::nn::Linear positions_projection{nullptr};
  PerceiverLayer decoding_cross_attention{nullptr};
  torch::nn::Linear final_layer{nullptr};
};
TORCH_MODULE(PerceiverBasicDecoder);

// A decoder around a PerceiverBasicDecoder (HF's attribute `decoder`) that builds its queries;
// subclasses shape what it outputs.
class WrappedBasicDecoderImpl : public DecoderImpl {
 public:
  int64_t num_query_channels() const override { return decoder->num_query_channels(); }
  WithSharedChannels decoder_query(const WithSharedChannels& inputs, const std::optional<ModalitySizes>& modality_sizes,
                                   const torch::Tensor& inputs_without_pos,
                                   const TensorOrDict& subsampled_points) override;

  PerceiverBasicDecoder decoder{nullptr};

 protected:
  // Builds and registers `decoder`.
  void make_decoder(const PerceiverConfig& config, const BasicDecoderOptions& options);
};

// Basic decoder with a single query whose output is the (B, num_labels) logits.
class PerceiverClassificationDecoderImpl : public WrappedBasicDecoderImpl {
 public:
  // options.output_num_channels and output_index_dims are set here (num_labels, [1]).
  PerceiverClassificationDecoderImpl(const PerceiverConfig& config, BasicDecoderOptions options);
  PerceiverDecoderOutput forward(const WithSharedChannels& query, const torch::Tensor& z, const torch::Tensor& query_mask,
                                 bool output_attentions) override;
};
TORCH_MODULE(PerceiverClassificationDecoder);

// Baseline without cross-attention: mean over latents, then a linear classifier. (HF's class cannot
// be instantiated because of a missing abstract property; this follows its documentation.)
class PerceiverProjectionDecoderImpl : public DecoderImpl {
 public:
  explicit PerceiverProjectionDecoderImpl(const PerceiverConfig& config);
  int64_t num_query_channels() const override { return 0; }
  WithSharedChannels decoder_query(const WithSharedChannels&, const std::optional<ModalitySizes>&, const torch::Tensor&,
                                   const TensorOrDict&) override {
    return {};
  }
  PerceiverDecoderOutput forward(const WithSharedChannels& query, const torch::Tensor& z, const torch::Tensor& query_mask,
                                 bool output_attentions) override;

 private:
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(PerceiverProjectionDecoder);

class PerceiverEmbeddingDecoderImpl : public torch::nn::Module {
 public:
  explicit PerceiverEmbeddingDecoderImpl(const PerceiverConfig& config);
  // hidden_states (B, T, d_model) x embedding_weight^T (d_model, vocab) + bias -> (B, T, vocab)
  torch::Tensor forward(const torch::Tensor& hidden_states, const torch::Tensor& embedding_weight);

  torch::Tensor bias;
};
TORCH_MODULE(PerceiverEmbeddingDecoder);

}  // namespace perceiver

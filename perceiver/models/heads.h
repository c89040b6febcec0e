// The PerceiverFor* heads of text (the image, flow and multimodal heads are in image_heads.h,
// optical_flow.h and multimodal_autoencoding.h; architectures.h builds any of them by name).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "perceiver/models/decoders.h"
#include "perceiver/models/model.h"
#include "perceiver/models/outputs.h"

namespace perceiver {

// HF's classification loss: infers config.problem_type from labels when unset (and records it),
// then MSE (regression), cross-entropy (single label, ignore_index -100) or BCE-with-logits.
torch::Tensor classification_loss(PerceiverConfig& config, const torch::Tensor& logits, const torch::Tensor& labels);

class PerceiverForMaskedLMImpl : public PerceiverPreTrainedModelImpl {
 public:
  explicit PerceiverForMaskedLMImpl(const PerceiverConfig& config);
  std::string architecture() const override { return "PerceiverForMaskedLM"; }
  PerceiverMaskedLMOutput forward(const torch::Tensor& inputs, const torch::Tensor& attention_mask = {},
                                  const torch::Tensor& labels = {}, const ForwardOptions& options = {});
  NamedTensors forward_named(const NamedTensors& inputs, const ForwardOptions& options) override;
  // (batch, K, vocab) logits at `positions` (batch, K) alone, equal to forward()'s logits there: a
  // training loss needs the ~15 % masked bytes only, and the decoder's 2,048 queries are ~40 % of
  // the forward's FLOPs at HF's sizes.
  torch::Tensor logits_at(const torch::Tensor& inputs, const torch::Tensor& attention_mask,
                          const torch::Tensor& positions);

  PerceiverModel perceiver{nullptr};
  PerceiverEmbeddingDecoder embedding_decoder{nullptr};

 private:
  // The input embeddings, whose matrix the output layer reuses (tied as in HF).
  torch::nn::Embedding input_embeddings_{nullptr};
};
TORCH_MODULE(PerceiverForMaskedLM);

// HF's masked-LM loss (mean cross-entropy over the labelled positions; -100 is ignored), decoding
// only the labelled positions (logits_at). Equal to forward(inputs, attention_mask, labels).loss up
// to float rounding. `positions` (batch, K): each row's labelled positions first, in order, padded
// with unlabelled ones; `labels` and `logits` are at those positions.
struct MaskedLmLoss {
  torch::Tensor loss, logits, labels, positions;
};
MaskedLmLoss masked_lm_loss(PerceiverForMaskedLMImpl& model, const torch::Tensor& inputs,
                            const torch::Tensor& attention_mask, const torch::Tensor& labels);

// The decoder of HF's PerceiverForMaskedLM: one query per input position (a trainable position
// encoding of max_position_embeddings x d_model), 8 heads of 32 query/key channels, d_model value and
// output channels, no query residual, no final projection. PerceiverForTokenClassification builds the
// same one, so that a masked-LM checkpoint's decoder loads into it.
BasicDecoderOptions masked_lm_decoder_options(const PerceiverConfig& config);
// PerceiverForTokenClassification's decoder: the masked LM's, or with config.json's
// concat_preprocessed_input the input bytes concatenated to its queries (see below).
BasicDecoderOptions token_classification_decoder_options(const PerceiverConfig& config);

// Token classification (named-entity recognition, part-of-speech tagging, ...), which HF's Python
// lacks (transformers issue #14971; PR #15103 was closed unmerged): HF's masked-LM model (text
// preprocessor, encoder, the same PerceiverBasicDecoder queried by max_position_embeddings trainable
// positions) with a linear `classifier` from the decoder's d_model channels to config.num_labels in
// place of the tied embedding decoder. Every other parameter has the masked-LM head's name and shape,
// so `model.from` a masked-LM checkpoint (ours, or deepmind/language-perceiver) starts from all of it
// and only `classifier.*` is new. python/perceiver_token_classification.py is the same class on top of
// transformers' modules, with the same parameter names.
//
// With `"concat_preprocessed_input": true` in config.json (not an HF config field; false by default) the
// decoder's query for position i is [byte embedding i, position encoding i], HF's
// concat_preprocessed_input, with a query residual: a byte's label then sees the byte itself and not
// only what the latents keep of it. The decoder's query side and the classifier are then 2 x d_model
// wide, so from a masked-LM checkpoint only the encoder side and the decoder's key/value weights load.
//
// Where it differs from PR #15103, and why:
// - logits are (batch, seq_len, num_labels), one row per input position, as every HF
//   *ForTokenClassification returns; the PR returned all max_position_embeddings rows, so its labels
//   (and hence its inputs) had to be padded to max_position_embeddings (2,048 bytes at HF's size). The
//   decoder's queries never attend to each other, so the first seq_len rows are the PR's values; only
//   those queries are decoded (the decoder is ~40 % of the forward's FLOPs at HF's sizes and a
//   sentence is far shorter than 2,048 bytes), except with output_attentions, which decodes every
//   query so that cross_attentions keep HF's decoder shape (batch, 8, max_position_embeddings, num_latents).
// - the loss is cross-entropy over the positions whose label is not -100, as in HF's current
//   *ForTokenClassification heads; the PR also dropped positions whose attention_mask is 0 (what the
//   older BertForTokenClassification did). A collator labels padding -100, so the two agree on
//   well-formed batches, and ours is a function of logits and labels alone.
class PerceiverForTokenClassificationImpl : public PerceiverPreTrainedModelImpl {
 public:
  explicit PerceiverForTokenClassificationImpl(const PerceiverConfig& config);
  std::string architecture() const override { return "PerceiverForTokenClassification"; }
  // inputs: (batch, seq_len) byte ids, seq_len <= max_position_embeddings; labels: (batch, seq_len)
  // in [0, num_labels) or -100.
  PerceiverTokenClassifierOutput forward(const torch::Tensor& inputs, const torch::Tensor& attention_mask = {},
                                         const torch::Tensor& labels = {}, const ForwardOptions& options = {});
  NamedTensors forward_named(const NamedTensors& inputs, const ForwardOptions& options) override;

  PerceiverModel perceiver{nullptr};
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(PerceiverForTokenClassification);

// The token-classification loss: mean cross-entropy of logits (batch, seq_len, num_labels) over the
// positions whose label (batch, seq_len) is not -100 (NaN when there is none, as in HF).
torch::Tensor token_classification_loss(const torch::Tensor& logits, const torch::Tensor& labels);

// Shared by every head that is PerceiverModel + classifier logits (+ HF's classification loss).
class PerceiverClassifierHeadImpl : public PerceiverPreTrainedModelImpl {
 public:
  PerceiverClassifierHeadImpl(const PerceiverConfig& config, std::string architecture);
  std::string architecture() const override { return architecture_; }
  PerceiverClassifierOutput forward(const TensorOrDict& inputs, const torch::Tensor& attention_mask = {},
                                    const torch::Tensor& labels = {}, const ForwardOptions& options = {});
  NamedTensors forward_named(const NamedTensors& inputs, const ForwardOptions& options) override;

  PerceiverModel perceiver{nullptr};

 protected:
  // Called once by each concrete head's constructor.
  void set_model(PerceiverModel model) { perceiver = register_module("perceiver", std::move(model)); }
  // The name HF's forward also accepts for `inputs` (input_ids or pixel_values).
  virtual std::string input_alias() const = 0;

 private:
  std::string architecture_;
};

class PerceiverForSequenceClassificationImpl : public PerceiverClassifierHeadImpl {
 public:
  explicit PerceiverForSequenceClassificationImpl(const PerceiverConfig& config);

 protected:
  std::string input_alias() const override { return "input_ids"; }
};
TORCH_MODULE(PerceiverForSequenceClassification);

// Decoder options of HF's classification heads: one trainable query of d_latents channels, query residual.
BasicDecoderOptions classification_decoder_options(const PerceiverConfig& config);

}  // namespace perceiver

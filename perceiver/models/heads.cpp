#include "perceiver/models/heads.h"

#include <algorithm>
#include <tuple>

#include "perceiver/ops/dynamic_size.h"
#include "perceiver/models/preprocessors.h"

namespace perceiver {

torch::Tensor classification_loss(PerceiverConfig& config, const torch::Tensor& logits, const torch::Tensor& labels) {
  const int64_t num_labels = config.num_labels();
  if (!config.problem_type) {
    if (num_labels == 1) {
      config.problem_type = "regression";
    } else if (labels.scalar_type() == torch::kLong || labels.scalar_type() == torch::kInt) {
      config.problem_type = "single_label_classification";
    } else {
      config.problem_type = "multi_label_classification";
    }
  }
  const auto y = labels.to(logits.device());
  if (*config.problem_type == "regression") {
    const auto target = y.to(logits.scalar_type());
    return num_labels == 1 ? torch::mse_loss(logits.squeeze(), target.squeeze()) : torch::mse_loss(logits, target);
  }
  if (*config.problem_type == "single_label_classification") {
    TORCH_CHECK(!y.is_floating_point(), "single-label classification needs integer labels, got ", y.scalar_type());
    return torch::nn::functional::cross_entropy(logits.reshape({-1, num_labels}), y.reshape({-1}).to(torch::kLong));
  }
  TORCH_CHECK(y.sizes() == logits.sizes(), "multi-label classification needs labels of shape ", logits.sizes(),
              ", got ", y.sizes());
  return torch::nn::functional::binary_cross_entropy_with_logits(logits, y.to(logits.scalar_type()));
}

BasicDecoderOptions masked_lm_decoder_options(const PerceiverConfig& config) {
  const int64_t channels = config.d_model;  // the text preprocessor's num_channels
  BasicDecoderOptions d;
  d.output_num_channels = config.d_latents;
  d.output_index_dims = {config.max_position_embeddings};
  d.num_channels = channels;
  d.qk_channels = 8 * 32;
  d.v_channels = channels;
  d.num_heads = 8;
  d.use_query_residual = false;
  d.final_project = false;
  d.position_encoding.type = "trainable";
  d.position_encoding.trainable = TrainablePositionEncodingOptions{{config.max_position_embeddings}, channels};
  return d;
}

PerceiverForMaskedLMImpl::PerceiverForMaskedLMImpl(const PerceiverConfig& config)
    : PerceiverPreTrainedModelImpl(config) {
  auto text = std::make_shared<PerceiverTextPreprocessorImpl>(config);
  perceiver = register_module(
      "perceiver",
      PerceiverModel(config, std::make_shared<PerceiverBasicDecoderImpl>(config, masked_lm_decoder_options(config)),
                     text));
  embedding_decoder = register_module("embedding_decoder", PerceiverEmbeddingDecoder(config));
  input_embeddings_ = text->embeddings;
}

PerceiverMaskedLMOutput PerceiverForMaskedLMImpl::forward(const torch::Tensor& inputs,
                                                          const torch::Tensor& attention_mask,
                                                          const torch::Tensor& labels, const ForwardOptions& options) {
  auto out = perceiver->forward(inputs, attention_mask, {}, options);
  PerceiverMaskedLMOutput result;
  result.logits = embedding_decoder->forward(out.logits.tensor, input_embeddings_->weight);
  if (labels.defined()) {
    TORCH_CHECK(labels.numel() == result.logits.size(0) * result.logits.size(1),
                "labels must have shape (batch, max_position_embeddings) = (", result.logits.size(0), ", ",
                result.logits.size(1), ") because the decoder predicts every position; got ", labels.sizes());
    result.loss = torch::nn::functional::cross_entropy(result.logits.reshape({-1, config_.vocab_size}),
                                                       labels.reshape({-1}).to(result.logits.device(), torch::kLong));
  }
  result.hidden_states = std::move(out.hidden_states);
  result.attentions = std::move(out.attentions);
  result.cross_attentions = std::move(out.cross_attentions);
  return result;
}

torch::Tensor PerceiverForMaskedLMImpl::logits_at(const torch::Tensor& inputs, const torch::Tensor& attention_mask,
                                                  const torch::Tensor& positions) {
  const auto out = perceiver->forward(inputs, attention_mask, {}, {}, positions);
  return embedding_decoder->forward(out.logits.tensor, input_embeddings_->weight);
}

MaskedLmLoss masked_lm_loss(PerceiverForMaskedLMImpl& model, const torch::Tensor& inputs,
                            const torch::Tensor& attention_mask, const torch::Tensor& labels) {
  TORCH_CHECK(labels.dim() == 2 && labels.sizes() == inputs.sizes(), "labels must have the inputs' shape ",
              inputs.sizes(), ", got ", labels.sizes());
  const auto labelled = labels.ne(-100);
  const int64_t k = std::max<int64_t>(1, labelled.sum(1).max().item<int64_t>());
  MaskedLmLoss out;
  // A stable sort of "not labelled" puts each row's labelled positions first, in order.
  out.positions = std::get<1>(torch::sort(labelled.logical_not().to(torch::kInt), c10::optional<bool>(true), /*dim=*/1,
                                         /*descending=*/false)).narrow(1, 0, k);
  out.labels = labels.gather(1, out.positions).to(torch::kLong);
  out.logits = model.logits_at(inputs, attention_mask, out.positions);
  out.loss = torch::nn::functional::cross_entropy(out.logits.reshape({-1, out.logits.size(-1)}),
                                                  out.labels.reshape({-1}).to(out.logits.device()));
  return out;
}

NamedTensors PerceiverForMaskedLMImpl::forward_named(const NamedTensors& inputs, const ForwardOptions& options) {
  named::check_known(inputs, {"inputs", "input_ids", "attention_mask", "labels"});
  auto out = forward(single_tensor(named::model_inputs(inputs, {"input_ids"}), "PerceiverForMaskedLM"),
                     named::optional(inputs, "attention_mask"), named::optional(inputs, "labels"), options);
  return named::outputs(out.loss, out.logits, {}, out.hidden_states, out.attentions, out.cross_attentions);
}

BasicDecoderOptions token_classification_decoder_options(const PerceiverConfig& config) {
  auto d = masked_lm_decoder_options(config);
  const auto key = config.extra.find("concat_preprocessed_input");
  if (key == config.extra.end() || key->is_null()) return d;
  if (!key->is_boolean())
    throw ConfigError("config key concat_preprocessed_input: expected true or false, found " + key->dump());
  if (!key->get<bool>()) return d;
  // Query = [byte embedding, position encoding] (both d_model wide). The query residual carries the
  // byte to the output; without it the query would only choose which latents to read.
  d.concat_preprocessed_input = true;
  d.num_channels = 2 * config.d_model;
  d.v_channels = d.num_channels;
  d.use_query_residual = true;
  return d;
}

PerceiverForTokenClassificationImpl::PerceiverForTokenClassificationImpl(const PerceiverConfig& config)
    : PerceiverPreTrainedModelImpl(config) {
  auto decoder = std::make_shared<PerceiverBasicDecoderImpl>(config, token_classification_decoder_options(config));
  perceiver = register_module(
      "perceiver", PerceiverModel(config, decoder, std::make_shared<PerceiverTextPreprocessorImpl>(config)));
  classifier = register_module("classifier", torch::nn::Linear(decoder->num_query_channels(), config.num_labels()));
}

PerceiverTokenClassifierOutput PerceiverForTokenClassificationImpl::forward(const torch::Tensor& inputs,
                                                                            const torch::Tensor& attention_mask,
                                                                            const torch::Tensor& labels,
                                                                            const ForwardOptions& options) {
  TORCH_CHECK(inputs.dim() == 2, "PerceiverForTokenClassification expects inputs of shape (batch, seq_len), got ",
              inputs.sizes());
  // Token i's row is decoder query i (the decoder has one per position up to max_position_embeddings;
  // the text preprocessor refuses longer inputs). Sizes stay free in an export (DynamicSize).
  const auto seq_len = DynamicSize::of(inputs, 1);
  torch::Tensor positions;
  if (!options.output_attentions) {
    const auto first = dynamic::arange(seq_len, torch::dtype(torch::kLong).device(inputs.device()));
    positions = dynamic::expand(first.unsqueeze(0), {DynamicSize::of(inputs, 0), -1});
  }
  auto out = perceiver->forward(inputs, attention_mask, {}, options, positions);
  auto sequence_output = out.logits.tensor;
  if (!positions.defined()) sequence_output = dynamic::narrow(sequence_output, 1, 0, seq_len);
  PerceiverTokenClassifierOutput result;
  result.logits = classifier->forward(sequence_output);
  if (labels.defined()) result.loss = token_classification_loss(result.logits, labels);
  result.hidden_states = std::move(out.hidden_states);
  result.attentions = std::move(out.attentions);
  result.cross_attentions = std::move(out.cross_attentions);
  return result;
}

NamedTensors PerceiverForTokenClassificationImpl::forward_named(const NamedTensors& inputs,
                                                                const ForwardOptions& options) {
  named::check_known(inputs, {"inputs", "input_ids", "attention_mask", "labels"});
  auto out = forward(single_tensor(named::model_inputs(inputs, {"input_ids"}), "PerceiverForTokenClassification"),
                     named::optional(inputs, "attention_mask"), named::optional(inputs, "labels"), options);
  return named::outputs(out.loss, out.logits, {}, out.hidden_states, out.attentions, out.cross_attentions);
}

torch::Tensor token_classification_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  TORCH_CHECK(logits.dim() == 3, "token classification logits must be (batch, seq_len, num_labels), got ",
              logits.sizes());
  TORCH_CHECK(!labels.is_floating_point() && labels.scalar_type() != torch::kBool,
              "token classification needs integer labels (a class index, or -100 for no loss), got ",
              labels.scalar_type());
  TORCH_CHECK(labels.dim() == 2 && labels.size(0) == logits.size(0) && labels.size(1) == logits.size(1),
              "labels must have shape (batch, seq_len) = (", logits.size(0), ", ", logits.size(1),
              "): one label per input position (-100 where there is none); got ", labels.sizes());
  // ignore_index -100 (the default): the mean runs over the labelled positions only.
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                              labels.reshape({-1}).to(logits.device(), torch::kLong));
}

PerceiverClassifierHeadImpl::PerceiverClassifierHeadImpl(const PerceiverConfig& config, std::string architecture)
    : PerceiverPreTrainedModelImpl(config), architecture_(std::move(architecture)) {}

PerceiverClassifierOutput PerceiverClassifierHeadImpl::forward(const TensorOrDict& inputs,
                                                               const torch::Tensor& attention_mask,
                                                               const torch::Tensor& labels,
                                                               const ForwardOptions& options) {
  auto out = perceiver->forward(inputs, attention_mask, {}, options);
  PerceiverClassifierOutput result;
  if (labels.defined()) result.loss = classification_loss(config_, out.logits.tensor, labels);
  result.logits = std::move(out.logits);
  result.hidden_states = std::move(out.hidden_states);
  result.attentions = std::move(out.attentions);
  result.cross_attentions = std::move(out.cross_attentions);
  return result;
}

NamedTensors PerceiverClassifierHeadImpl::forward_named(const NamedTensors& inputs, const ForwardOptions& options) {
  named::check_known(inputs, {"inputs", input_alias(), "attention_mask", "labels"});
  auto out = forward(named::model_inputs(inputs, {input_alias()}), named::optional(inputs, "attention_mask"),
                     named::optional(inputs, "labels"), options);
  return named::outputs(out.loss, out.logits, {}, out.hidden_states, out.attentions, out.cross_attentions);
}

BasicDecoderOptions classification_decoder_options(const PerceiverConfig& config) {
  BasicDecoderOptions d;
  d.num_channels = config.d_latents;
  d.use_query_residual = true;
  d.position_encoding.type = "trainable";
  d.position_encoding.trainable = TrainablePositionEncodingOptions{{1}, config.d_latents};
  return d;
}

PerceiverForSequenceClassificationImpl::PerceiverForSequenceClassificationImpl(const PerceiverConfig& config)
    : PerceiverClassifierHeadImpl(config, "PerceiverForSequenceClassification") {
  set_model(PerceiverModel(
      config, std::make_shared<PerceiverClassificationDecoderImpl>(config, classification_decoder_options(config)),
      std::make_shared<PerceiverTextPreprocessorImpl>(config)));
}

}  // namespace perceiver

#include "perceiver/models/model.h"

#include "perceiver/models/attention.h"
#include "perceiver/ops/dynamic_size.h"
#include "perceiver/models/position_encoding.h"

namespace perceiver {

void PerceiverPreTrainedModelImpl::init_weights() {
  torch::NoGradGuard no_grad;
  const double std = config_.initializer_range;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* linear = module->as<torch::nn::LinearImpl>()) {
      linear->weight.normal_(0.0, std);
      if (linear->bias.defined()) linear->bias.zero_();
    } else if (auto* conv = module->as<torch::nn::Conv2dImpl>()) {
      conv->weight.normal_(0.0, std);
      if (conv->bias.defined()) conv->bias.zero_();
    } else if (auto* emb = module->as<PerceiverEmbeddingsImpl>()) {
      emb->latents.normal_(0.0, std);
    } else if (auto* pos = module->as<PerceiverTrainablePositionEncodingImpl>()) {
      pos->position_embeddings.normal_(0.0, std);
    } else if (auto* dict = module->as<torch::nn::ParameterDictImpl>()) {
      for (auto& value : dict->values()) value.normal_(0.0, std);
    } else if (auto* embedding = module->as<torch::nn::EmbeddingImpl>()) {
      embedding->weight.normal_(0.0, std);
    } else if (auto* norm = module->as<torch::nn::LayerNormImpl>()) {
      norm->weight.fill_(1.0);
      norm->bias.zero_();
    }
  }
}

PerceiverModelImpl::PerceiverModelImpl(const PerceiverConfig& config, Decoder decoder, Preprocessor input_preprocessor,
                                       Postprocessor output_postprocessor)
    : PerceiverPreTrainedModelImpl(config),
      input_preprocessor_(std::move(input_preprocessor)),
      output_postprocessor_(std::move(output_postprocessor)),
      decoder_(std::move(decoder)) {
  // Registration order follows HF's __init__ so that state dicts list keys in the same order.
  if (input_preprocessor_) register_module("input_preprocessor", input_preprocessor_);
  if (output_postprocessor_) register_module("output_postprocessor", output_postprocessor_);
  embeddings = register_module("embeddings", PerceiverEmbeddings(config));
  encoder = register_module(
      "encoder", PerceiverEncoder(config, input_preprocessor_ ? input_preprocessor_->num_channels() : config.d_model));
  if (decoder_) register_module("decoder", decoder_);
}

PerceiverModelOutput PerceiverModelImpl::forward(const TensorOrDict& raw_inputs, const torch::Tensor& attention_mask,
                                                 const TensorOrDict& subsampled_output_points,
                                                 const ForwardOptions& options, const torch::Tensor& decode_positions) {
  PreprocessorOutput pre;
  if (input_preprocessor_) {
    // Concatenated positions stay apart: the layers that can take the parts never make the whole.
    pre = input_preprocessor_->forward(raw_inputs, options.interpolate_pos_encoding);
  } else {
    pre.inputs = single_tensor(raw_inputs, "PerceiverModel");
    TORCH_CHECK(pre.inputs.dim() == 3, "PerceiverModel without a preprocessor expects inputs of shape (batch, seq, ",
                config_.d_model, "), got ", pre.inputs.sizes());
    TORCH_CHECK(pre.inputs.is_floating_point(), "PerceiverModel without a preprocessor expects float inputs, got ",
                pre.inputs.scalar_type());
    TORCH_CHECK(pre.inputs.size(-1) == config_.d_model, "Last dimension of the inputs: ", pre.inputs.size(-1),
                " doesn't correspond to config.d_model: ", config_.d_model);
  }
  const auto inputs = pre.parts();
  const auto& rows = inputs.rows_tensor();  // (B, N, ...) in the inputs' dtype and device
  const int64_t batch_size = rows.size(0), seq_length = rows.size(1);

  torch::Tensor extended_mask;
  if (attention_mask.defined()) {
    TORCH_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == batch_size && attention_mask.size(1) == seq_length,
                "attention_mask must have shape (", batch_size, ", ", seq_length, "), got ", attention_mask.sizes());
    extended_mask = invert_attention_mask(attention_mask).to(rows.device(), rows.scalar_type());
  }  // no mask = all ones, whose additive form is zero: skip the addition

  const auto latents = embeddings->forward(DynamicSize::of(rows, 0));
  auto encoded = encoder->forward(latents, inputs, extended_mask, options.output_attentions, options.output_hidden_states);
  PerceiverModelOutput out;
  out.last_hidden_state = encoded.last_hidden_state;
  out.hidden_states = std::move(encoded.hidden_states);
  out.attentions = std::move(encoded.attentions);
  out.cross_attentions = std::move(encoded.cross_attentions);
  if (!decoder_) return out;

  std::optional<ModalitySizes> output_modality_sizes = pre.modality_sizes;
  if (subsampled_output_points.is_dict()) {
    output_modality_sizes = ModalitySizes{};
    for (const auto& [name, points] : subsampled_output_points.dict)
      (*output_modality_sizes)[name] = DynamicSize::of(points, 0);
    (*output_modality_sizes)["label"] = 1;
  }
  // A decoder whose queries are the encoder's inputs themselves (optical flow) queries with the same
  // shared position channels.
  auto queries = decoder_->decoder_query(inputs, pre.modality_sizes, pre.inputs_without_pos, subsampled_output_points);
  if (decode_positions.defined()) {
    // Decoder queries attend to the latents, never to each other: a subset decodes to the same values.
    TORCH_CHECK(decode_positions.dim() == 2 && decode_positions.size(0) == batch_size,
                "decode_positions must have shape (batch, K), got ", decode_positions.sizes());
    const auto query = queries.whole();
    queries = query.gather(1, decode_positions.to(query.device(), torch::kLong).unsqueeze(-1).expand({-1, -1, query.size(-1)}));
  }
  auto decoded = decoder_->forward(queries, out.last_hidden_state, extended_mask, options.output_attentions);
  for (auto& a : decoded.cross_attentions) out.cross_attentions.push_back(std::move(a));
  out.logits = output_postprocessor_ ? output_postprocessor_->forward(decoded.logits, output_modality_sizes)
                                     : std::move(decoded.logits);
  return out;
}

NamedTensors PerceiverModelImpl::forward_named(const NamedTensors& inputs, const ForwardOptions& options) {
  named::check_known(inputs, {"inputs", "inputs.", "attention_mask", "subsampled_output_points."});
  auto out = forward(named::model_inputs(inputs), named::optional(inputs, "attention_mask"),
                     named::with_prefix(inputs, "subsampled_output_points"), options);
  return named::outputs({}, out.logits, out.last_hidden_state, out.hidden_states, out.attentions, out.cross_attentions);
}

namespace named {

TensorOrDict with_prefix(const NamedTensors& inputs, const std::string& prefix) {
  std::map<std::string, torch::Tensor> dict;
  const std::string p = prefix + ".";
  for (const auto& [name, t] : inputs)
    if (name.rfind(p, 0) == 0) dict[name.substr(p.size())] = t;
  return TensorOrDict(std::move(dict));
}

TensorOrDict model_inputs(const NamedTensors& inputs, const std::vector<std::string>& aliases) {
  std::vector<std::string> names = {"inputs"};
  names.insert(names.end(), aliases.begin(), aliases.end());
  torch::Tensor found;
  std::string found_name;
  for (const auto& n : names) {
    auto it = inputs.find(n);
    if (it == inputs.end()) continue;
    TORCH_CHECK(!found.defined(), "You cannot use both `", found_name, "` and `", n, "`");
    found = it->second;
    found_name = n;
  }
  if (found.defined()) return found;
  auto dict = with_prefix(inputs, "inputs");
  TORCH_CHECK(dict.is_dict(), "no model input: expected a tensor named `inputs`",
              aliases.empty() ? "" : " (or `" + aliases.front() + "`)", " or `inputs.<modality>` tensors");
  return dict;
}

torch::Tensor optional(const NamedTensors& inputs, const std::string& name) {
  auto it = inputs.find(name);
  return it == inputs.end() ? torch::Tensor() : it->second;
}

void check_known(const NamedTensors& inputs, const std::vector<std::string>& accepted) {
  for (const auto& [name, t] : inputs) {
    bool ok = false;
    for (const auto& a : accepted) ok |= a.back() == '.' ? name.rfind(a, 0) == 0 && name.size() > a.size() : name == a;
    if (ok) continue;
    std::string list;
    for (const auto& a : accepted) list += (list.empty() ? "" : ", ") + (a.back() == '.' ? a + "<name>" : a);
    TORCH_CHECK(false, "unexpected input tensor `", name, "` (this model accepts: ", list, ")");
  }
}

NamedTensors outputs(const torch::Tensor& loss, const TensorOrDict& logits, const torch::Tensor& last_hidden_state,
                     const std::vector<torch::Tensor>& hidden_states, const std::vector<torch::Tensor>& attentions,
                     const std::vector<torch::Tensor>& cross_attentions) {
  NamedTensors out;
  if (loss.defined()) out["loss"] = loss;
  if (logits.tensor.defined()) out["logits"] = logits.tensor;
  for (const auto& [m, t] : logits.dict) out["logits." + m] = t;
  if (last_hidden_state.defined()) out["last_hidden_state"] = last_hidden_state;
  auto list = [&out](const char* name, const std::vector<torch::Tensor>& ts) {
    for (size_t i = 0; i < ts.size(); ++i) out[std::string(name) + "." + std::to_string(i)] = ts[i];
  };
  list("hidden_states", hidden_states);
  list("attentions", attentions);
  list("cross_attentions", cross_attentions);
  return out;
}

}  // namespace named
}  // namespace perceiver

#include "perceiver/models/multimodal_autoencoding.h"

#include "perceiver/models/modality_decoders.h"
#include "perceiver/models/modality_preprocessors.h"
#include "perceiver/models/postprocessors.h"

namespace perceiver {

PerceiverForMultimodalAutoencodingImpl::PerceiverForMultimodalAutoencodingImpl(const PerceiverConfig& config)
    : PerceiverPreTrainedModelImpl(config) {
  TORCH_CHECK(config.output_shape.size() == 4, "PerceiverForMultimodalAutoencoding: config.output_shape must be "
              "(batch, frames, height, width), got ", config.output_shape.size(), " values");
  TORCH_CHECK(config.samples_per_patch > 0 &&
                  (config.num_frames * config.audio_samples_per_frame) % config.samples_per_patch == 0,
              "PerceiverForMultimodalAutoencoding: num_frames * audio_samples_per_frame must be a multiple of "
              "samples_per_patch");
  const int64_t n_audio_samples = config.num_frames * config.audio_samples_per_frame;
  const std::vector<int64_t> video_resolution = {config.num_frames, config.image_size, config.image_size};

  AudioPreprocessorOptions audio;
  audio.samples_per_patch = config.samples_per_patch;
  audio.position_encoding = fourier_position_encoding(192, {n_audio_samples});
  audio.position_encoding.out_channels = 64;
  ImagePreprocessorOptions image;
  image.prep_type = "patches";
  image.spatial_downsample = 4;
  image.temporal_downsample = 1;
  image.position_encoding = fourier_position_encoding(32, video_resolution);
  MultimodalPreprocessorOptions mm;
  mm.min_padding_size = 4;
  mm.mask_probs = {{"image", 0.0}, {"audio", 0.0}, {"label", 1.0}};
  auto preprocessor = std::make_shared<PerceiverMultimodalPreprocessorImpl>(
      std::map<std::string, Preprocessor>{{"audio", std::make_shared<PerceiverAudioPreprocessorImpl>(audio)},
                                          {"image", std::make_shared<PerceiverImagePreprocessorImpl>(image)},
                                          {"label", std::make_shared<PerceiverOneHotPreprocessorImpl>(config)}},
      mm);

  // Modality decoders only build queries; one shared cross-attention decodes them all.
  BasicDecoderOptions query_only;
  query_only.output_num_channels = config.output_num_channels;
  query_only.use_query_residual = false;
  query_only.position_encoding_only = true;
  auto image_query = query_only;
  image_query.position_encoding = fourier_position_encoding(32, video_resolution);
  auto audio_query = query_only;
  audio_query.output_index_dims = {n_audio_samples / config.samples_per_patch};
  audio_query.position_encoding = fourier_position_encoding(192, {n_audio_samples});
  BasicDecoderOptions label_query;
  label_query.use_query_residual = false;
  label_query.position_encoding_only = true;
  label_query.position_encoding.type = "trainable";
  label_query.position_encoding.trainable = TrainablePositionEncodingOptions{{1}, config._label_trainable_num_channels};
  MultimodalDecoderOptions md;
  md.output_num_channels = config.output_num_channels;
  md.decoder.use_query_residual = false;
  auto decoder = std::make_shared<PerceiverMultimodalDecoderImpl>(
      config,
      std::map<std::string, Decoder>{
          {"audio", std::make_shared<PerceiverBasicDecoderImpl>(config, audio_query)},
          {"image", std::make_shared<PerceiverBasicVideoAutoencodingDecoderImpl>(config, config.output_shape, image_query)},
          {"label", std::make_shared<PerceiverClassificationDecoderImpl>(config, label_query)}},
      md);

  auto postprocessor = std::make_shared<PerceiverMultimodalPostprocessorImpl>(std::map<std::string, Postprocessor>{
      {"audio", std::make_shared<PerceiverAudioPostprocessorImpl>(config, config.output_num_channels)},
      {"image", std::make_shared<PerceiverProjectionPostprocessorImpl>(config.output_num_channels, 3)},
      {"label", std::make_shared<PerceiverClassificationPostprocessorImpl>(config, config.output_num_channels)}});
  perceiver = register_module("perceiver", PerceiverModel(config, decoder, preprocessor, postprocessor));
}

int64_t PerceiverForMultimodalAutoencodingImpl::audio_patches() const {
  return config_.num_frames * config_.audio_samples_per_frame / config_.samples_per_patch;
}

MultimodalAutoencodingOutput PerceiverForMultimodalAutoencodingImpl::forward(
    const std::map<std::string, torch::Tensor>& inputs, const torch::Tensor& attention_mask,
    const std::map<std::string, torch::Tensor>& subsampled_output_points,
    const std::map<std::string, torch::Tensor>& labels, const ForwardOptions& options) {
  TORCH_CHECK(!inputs.empty(), "PerceiverForMultimodalAutoencoding: expected inputs per modality (audio, image, label)");
  const auto device = inputs.begin()->second.device();
  const auto& os = config_.output_shape;
  const std::map<std::string, int64_t> grid_sizes = {{"audio", audio_patches()}, {"image", os[1] * os[2] * os[3]}};
  // Every grid modality gets explicit points so that the output sizes are known; missing = all.
  std::map<std::string, torch::Tensor> points;
  for (const auto& [name, p] : subsampled_output_points) {
    TORCH_CHECK(grid_sizes.count(name), "PerceiverForMultimodalAutoencoding: subsampled_output_points only apply to "
                "audio and image, got '", name, "'");
    TORCH_CHECK(p.dim() == 1 && !p.is_floating_point(), "PerceiverForMultimodalAutoencoding: subsampled_output_points.",
                name, " must be a 1-D tensor of integer indices, got shape ", p.sizes(), " (", p.scalar_type(), ")");
    points[name] = p.to(torch::kLong);
  }
  for (const auto& [name, size] : grid_sizes)
    if (!points.count(name)) points[name] = torch::arange(size, torch::TensorOptions(torch::kLong).device(device));

  auto out = perceiver->forward(TensorOrDict(inputs), attention_mask, TensorOrDict(points), options);
  MultimodalAutoencodingOutput result;
  result.logits = out.logits.dict;
  if (!labels.empty()) {
    result.losses = reconstruction_losses(result.logits, points, labels);
    for (const auto& [name, loss] : result.losses) {
      auto w = loss_options.weights.find(name);
      const double weight = w == loss_options.weights.end() ? 1.0 : w->second;
      result.loss = result.loss.defined() ? result.loss + weight * loss : weight * loss;
    }
  }
  result.hidden_states = std::move(out.hidden_states);
  result.attentions = std::move(out.attentions);
  result.cross_attentions = std::move(out.cross_attentions);
  return result;
}

std::map<std::string, torch::Tensor> PerceiverForMultimodalAutoencodingImpl::reconstruction_losses(
    const std::map<std::string, torch::Tensor>& logits, const std::map<std::string, torch::Tensor>& points,
    const std::map<std::string, torch::Tensor>& labels) const {
  std::map<std::string, torch::Tensor> losses;
  for (const auto& [name, raw] : labels) {
    TORCH_CHECK(logits.count(name), "PerceiverForMultimodalAutoencoding: labels for unknown modality '", name,
                "' (expected audio, image, label)");
    const auto& pred = logits.at(name);
    const auto y = raw.to(pred.device());
    const int64_t b = pred.size(0);
    if (name == "image") {
      const auto& os = config_.output_shape;
      TORCH_CHECK(y.dim() == 5 && y.size(0) == b && y.size(1) == os[1] && y.size(2) == pred.size(-1) &&
                      y.size(3) == os[2] && y.size(4) == os[3],
                  "PerceiverForMultimodalAutoencoding: labels.image must be the full video of shape (", b, ", ", os[1],
                  ", ", pred.size(-1), ", ", os[2], ", ", os[3], "), got ", y.sizes());
      const auto flat = y.permute({0, 1, 3, 4, 2}).reshape({b, -1, y.size(2)});
      losses[name] = torch::mse_loss(pred, flat.index_select(1, points.at("image").to(y.device())).to(pred.dtype()));
    } else if (name == "audio") {
      const int64_t spp = config_.samples_per_patch, samples = audio_patches() * spp;
      TORCH_CHECK(y.dim() >= 2 && y.size(0) == b && y.numel() == b * samples,
                  "PerceiverForMultimodalAutoencoding: labels.audio must hold the full audio, (", b, ", ", samples,
                  ", 1), got ", y.sizes());
      const auto patches = y.reshape({b, -1, spp}).index_select(1, points.at("audio").to(y.device()));
      losses[name] = torch::mse_loss(pred, patches.reshape({b, -1}).to(pred.dtype()));
    } else {
      if (!y.is_floating_point()) {
        TORCH_CHECK(y.dim() == 1 && y.size(0) == b, "PerceiverForMultimodalAutoencoding: integer labels.label must be "
                    "class indices of shape (", b, "), got ", y.sizes());
        losses[name] = torch::nn::functional::cross_entropy(pred, y.to(torch::kLong));
      } else {
        TORCH_CHECK(y.sizes() == pred.sizes(), "PerceiverForMultimodalAutoencoding: float labels.label must be class "
                    "scores of shape ", pred.sizes(), ", got ", y.sizes());
        losses[name] = torch::nn::functional::cross_entropy(pred, y.to(pred.dtype()));
      }
    }
  }
  return losses;
}

NamedTensors PerceiverForMultimodalAutoencodingImpl::forward_named(const NamedTensors& inputs,
                                                                   const ForwardOptions& options) {
  named::check_known(inputs, {"inputs.", "attention_mask", "subsampled_output_points.", "labels."});
  auto out = forward(named::with_prefix(inputs, "inputs").dict, named::optional(inputs, "attention_mask"),
                     named::with_prefix(inputs, "subsampled_output_points").dict,
                     named::with_prefix(inputs, "labels").dict, options);
  auto named_out = named::outputs(out.loss, TensorOrDict(out.logits), {}, out.hidden_states, out.attentions,
                                  out.cross_attentions);
  for (const auto& [name, loss] : out.losses) named_out["loss." + name] = loss;
  return named_out;
}

}  // namespace perceiver

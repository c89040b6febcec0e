#include "perceiver/models/modality_decoders.h"

#include "perceiver/ops/dynamic_size.h"
#include "perceiver/models/postprocessors.h"

#include <numeric>

namespace perceiver {
namespace {

int64_t product(const std::vector<int64_t>& dims) {
  return std::accumulate(dims.begin(), dims.end(), int64_t{1}, std::multiplies<>());
}

}  // namespace

PerceiverOpticalFlowDecoderImpl::PerceiverOpticalFlowDecoderImpl(const PerceiverConfig& config,
                                                                 OpticalFlowDecoderOptions options)
    : options_(std::move(options)) {
  TORCH_CHECK(!options_.output_image_shape.empty() && product(options_.output_image_shape) > 0,
              "PerceiverOpticalFlowDecoder: output_image_shape must be positive");
  TORCH_CHECK(options_.rescale_factor != 0.0, "PerceiverOpticalFlowDecoder: rescale_factor must not be 0");
  options_.decoder.output_num_channels = options_.output_num_channels;
  make_decoder(config, options_.decoder);
}

WithSharedChannels PerceiverOpticalFlowDecoderImpl::decoder_query(const WithSharedChannels& inputs,
                                                                  const std::optional<ModalitySizes>& /*modality_sizes*/,
                                                                  const torch::Tensor& /*inputs_without_pos*/,
                                                                  const TensorOrDict& subsampled_points) {
  if (!subsampled_points.defined()) return inputs;
  // The chosen rows of each part, held apart: the queries keep their shared channels.
  const auto rows = pixels(subsampled_points, inputs.rows_tensor().device());
  if (!inputs.shared.defined()) return inputs.rows_tensor().index_select(1, rows);
  TORCH_CHECK(!inputs.sliced && inputs.shared_offset == 0,
              "PerceiverOpticalFlowDecoder: subsampled queries need the whole sequence, not a slice of it");
  return WithSharedChannels::apart(inputs.own_channels().index_select(1, rows), inputs.shared.index_select(1, rows));
}

torch::Tensor PerceiverOpticalFlowDecoderImpl::pixels(const TensorOrDict& subsampled_points,
                                                      const torch::Device& device) const {
  // Unlike HF, training may decode a subset of the pixels: the queries are independent, so the loss
  // on a random subset is an unbiased estimate at a fraction of the decoder's cost.
  TORCH_CHECK(!subsampled_points.is_dict(), "PerceiverOpticalFlowDecoder: subsampled points must be one tensor");
  const auto points = subsampled_points.tensor.to(device, torch::kLong).flatten();
  const int64_t pixels = product(options_.output_image_shape);
  TORCH_CHECK(points.numel() > 0 && points.numel() < pixels, "PerceiverOpticalFlowDecoder: subsample between 1 and ",
              pixels - 1, " of the ", pixels, " pixels (or pass none for the full grid), got ", points.numel());
  TORCH_CHECK(points.min().item<int64_t>() >= 0 && points.max().item<int64_t>() < pixels,
              "PerceiverOpticalFlowDecoder: subsampled points must be flat pixel indices in [0, ", pixels, ")");
  return points;
}

PerceiverDecoderOutput PerceiverOpticalFlowDecoderImpl::forward(const WithSharedChannels& query, const torch::Tensor& z,
                                                                const torch::Tensor& /*query_mask*/,
                                                                bool output_attentions) {
  auto out = decoder->forward(query, z, {}, output_attentions);
  auto preds = out.logits.tensor / options_.rescale_factor;
  const int64_t pixels = product(options_.output_image_shape);
  TORCH_CHECK(preds.size(1) <= pixels, "PerceiverOpticalFlowDecoder: got ", preds.size(1),
              " query positions but output_image_shape has only ", pixels, " (the input must be train_size)");
  if (preds.size(1) < pixels) {  // subsampled queries stay (B, N, C)
    out.logits = preds;
    return out;
  }
  out.logits = preds.unflatten(1, options_.output_image_shape);  // (B, H, W, C), the batch free for export
  return out;
}

PerceiverBasicVideoAutoencodingDecoderImpl::PerceiverBasicVideoAutoencodingDecoderImpl(
    const PerceiverConfig& config, const std::vector<int64_t>& output_shape, BasicDecoderOptions options)
    : output_shape_(output_shape) {
  TORCH_CHECK(output_shape.size() == 4, "Expected rank 4 output_shape, got ", output_shape.size(), " dims");
  options.output_index_dims = {output_shape[1], output_shape[2], output_shape[3]};
  make_decoder(config, options);
}

PerceiverDecoderOutput PerceiverBasicVideoAutoencodingDecoderImpl::forward(const WithSharedChannels& query,
                                                                           const torch::Tensor& z,
                                                                           const torch::Tensor& /*query_mask*/,
                                                                           bool output_attentions) {
  auto out = decoder->forward(query, z, {}, output_attentions);
  const auto& logits = out.logits.tensor;
  if (logits.size(1) == output_shape_[1] * output_shape_[2] * output_shape_[3])
    out.logits = logits.unflatten(1, {output_shape_[1], output_shape_[2], output_shape_[3]});
  return out;
}

PerceiverMultimodalDecoderImpl::PerceiverMultimodalDecoderImpl(const PerceiverConfig& config,
                                                               std::map<std::string, Decoder> modalities,
                                                               MultimodalDecoderOptions options)
    : modalities_(std::move(modalities)), options_(std::move(options)) {
  TORCH_CHECK(!modalities_.empty(), "PerceiverMultimodalDecoder needs at least one modality");
  register_module("modalities", modality_dict(modalities_));
  auto d = options_.decoder;
  d.output_index_dims = {options_.num_outputs.value_or(0)};
  d.output_num_channels = options_.output_num_channels;
  d.position_encoding = PositionEncodingOptions{};
  d.position_encoding.type = "none";
  d.num_channels = num_query_channels();
  decoder = register_module("decoder", PerceiverBasicDecoder(config, d));
  padding = register_module("padding", torch::nn::ParameterDict());
  for (const auto& [name, dec] : modalities_)  // requires_grad: ParameterDict keeps the tensor's flag
    padding->insert(name, torch::randn({1, num_query_channels() - dec->num_query_channels()}).requires_grad_());
}

int64_t PerceiverMultimodalDecoderImpl::num_query_channels() const {
  int64_t max_channels = 0;
  for (const auto& [name, dec] : modalities_) max_channels = std::max(max_channels, dec->num_query_channels());
  return max_channels + options_.min_padding_size;
}

WithSharedChannels PerceiverMultimodalDecoderImpl::decoder_query(const WithSharedChannels& inputs,
                                                                 const std::optional<ModalitySizes>& modality_sizes,
                                                                 const torch::Tensor& /*inputs_without_pos*/,
                                                                 const TensorOrDict& subsampled_points) {
  TORCH_CHECK(modality_sizes.has_value(), "PerceiverMultimodalDecoder needs the modality sizes of its inputs "
              "(use it with PerceiverMultimodalPreprocessor)");
  TORCH_CHECK(!subsampled_points.tensor.defined(),
              "PerceiverMultimodalDecoder: subsampled_output_points must be given per modality");
  for (const auto& [name, points] : subsampled_points.dict)
    TORCH_CHECK(modalities_.count(name), "PerceiverMultimodalDecoder: subsampled_output_points for unknown modality '",
                name, "'");
  auto per_modality = restructure(*modality_sizes, inputs.whole());
  const int64_t common = num_query_channels();
  std::vector<torch::Tensor> queries;
  for (const auto& [name, dec] : modalities_) {
    auto it = per_modality.find(name);
    TORCH_CHECK(it != per_modality.end(), "PerceiverMultimodalDecoder: no input positions for modality '", name, "'");
    auto points = subsampled_points.dict.find(name);
    auto query = dec->decoder_query(it->second, std::nullopt, {},
                                    points == subsampled_points.dict.end() ? TensorOrDict() : TensorOrDict(points->second))
                     .whole()
                     .flatten(1, -2);
    const auto batch = DynamicSize::of(query, 0), positions = DynamicSize::of(query, 1);
    auto pad = dynamic::expand(padding->get(name), {batch, positions, common - query.size(2)});
    queries.push_back(torch::cat({query, pad.to(query.scalar_type())}, 2));
  }
  return torch::cat(queries, 1);
}

PerceiverDecoderOutput PerceiverMultimodalDecoderImpl::forward(const WithSharedChannels& query, const torch::Tensor& z,
                                                               const torch::Tensor& /*query_mask*/,
                                                               bool output_attentions) {
  return decoder->forward(query, z, {}, output_attentions);
}

}  // namespace perceiver

#include "perceiver/models/optical_flow.h"

#include "perceiver/models/modality_decoders.h"
#include "perceiver/models/modality_preprocessors.h"

namespace perceiver {

torch::Tensor valid_flow_mask(const torch::Tensor& labels) {
  constexpr double kUnknownFlow = 1e9;  // the Middlebury reference code's UNKNOWN_FLOW_THRESH
  return labels.abs().lt(kUnknownFlow).all(-1);  // NaN compares false: invalid too
}

torch::Tensor end_point_error(const torch::Tensor& flow, const torch::Tensor& target, const torch::Tensor& valid) {
  // vector_norm's gradient is 0 (not NaN) where prediction and label coincide.
  if (valid.all().item<bool>()) return torch::linalg_vector_norm(flow - target, 2, {-1}, false, c10::nullopt).mean();
  const auto invalid = valid.logical_not().unsqueeze(-1);
  const auto diff = (flow - target.masked_fill(invalid, 0)).masked_fill(invalid, 0);
  return torch::linalg_vector_norm(diff, 2, {-1}, false, c10::nullopt).sum() / valid.sum().clamp_min(1);
}

OpticalFlowLoss optical_flow_loss(const torch::Tensor& flow, const torch::Tensor& labels,
                                  const OpticalFlowLossOptions& options) {
  TORCH_CHECK((flow.dim() == 4 || flow.dim() == 3) && flow.size(-1) == 2,
              "optical_flow_loss: predictions must be (batch, height, width, 2) or (batch, points, 2), got ", flow.sizes());
  TORCH_CHECK(labels.sizes() == flow.sizes(), "optical_flow_loss: labels must have the shape of the predicted flow ",
              flow.sizes(), ", got ", labels.sizes());
  TORCH_CHECK(labels.is_floating_point(), "optical_flow_loss: labels must be float flow vectors, got ",
              labels.scalar_type());
  TORCH_CHECK(options.flow_scale > 0.0, "optical_flow_loss: flow_scale must be positive, got ", options.flow_scale);
  const auto on_device = labels.to(flow.device(), flow.scalar_type());
  OpticalFlowLoss out;
  out.loss = end_point_error(flow, on_device / options.flow_scale, valid_flow_mask(on_device));
  out.epe = out.loss.detach() * options.flow_scale;
  return out;
}

PerceiverForOpticalFlowImpl::PerceiverForOpticalFlowImpl(const PerceiverConfig& config)
    : PerceiverPreTrainedModelImpl(config) {
  TORCH_CHECK(config.train_size.size() == 2, "PerceiverForOpticalFlow: config.train_size must be (height, width), got ",
              config.train_size.size(), " values");
  ImagePreprocessorOptions p;
  p.prep_type = "patches";
  p.spatial_downsample = 1;
  p.conv_after_patching = true;
  p.conv_after_patching_in_channels = 54;
  p.temporal_downsample = 2;
  p.position_encoding = fourier_position_encoding(64, config.train_size);
  auto preprocessor = std::make_shared<PerceiverImagePreprocessorImpl>(p);

  OpticalFlowDecoderOptions d;
  d.output_image_shape = config.train_size;
  d.output_num_channels = 2;
  d.rescale_factor = 100.0;
  d.decoder.num_channels = preprocessor->num_channels();
  d.decoder.use_query_residual = false;
  d.decoder.position_encoding = fourier_position_encoding(64, config.train_size);
  perceiver = register_module(
      "perceiver", PerceiverModel(config, std::make_shared<PerceiverOpticalFlowDecoderImpl>(config, d), preprocessor));
}

OpticalFlowOutput PerceiverForOpticalFlowImpl::forward(const torch::Tensor& inputs, const torch::Tensor& attention_mask,
                                                       const torch::Tensor& labels, const ForwardOptions& options,
                                                       const torch::Tensor& subsampled_output_points) {
  const auto& size = config_.train_size;
  TORCH_CHECK(inputs.defined() && inputs.dim() == 5 && inputs.size(1) == 2 && inputs.size(2) == 27 &&
                  inputs.size(3) == size[0] && inputs.size(4) == size[1],
              "PerceiverForOpticalFlow: expected inputs of shape (batch, 2, 27, ", size[0], ", ", size[1],
              ") (two frames of 3x3 RGB patches at config.train_size), got ",
              inputs.defined() ? inputs.sizes() : torch::IntArrayRef{});
  auto out = perceiver->forward(inputs, attention_mask, subsampled_output_points, options);
  OpticalFlowOutput result;
  result.logits = out.logits.tensor;
  if (labels.defined()) {
    // Full-grid labels are gathered at the subsampled pixels; labels already (B, N, 2) are used as given.
    const bool gather = subsampled_output_points.defined() && labels.dim() == 4;
    const auto points = gather ? subsampled_output_points.to(labels.device(), torch::kLong).flatten() : torch::Tensor();
    auto loss = optical_flow_loss(result.logits, gather ? labels.flatten(1, 2).index_select(1, points) : labels,
                                  loss_options);
    result.loss = loss.loss;
    result.epe = loss.epe;
  }
  result.hidden_states = std::move(out.hidden_states);
  result.attentions = std::move(out.attentions);
  result.cross_attentions = std::move(out.cross_attentions);
  return result;
}

NamedTensors PerceiverForOpticalFlowImpl::forward_named(const NamedTensors& inputs, const ForwardOptions& options) {
  named::check_known(inputs, {"inputs", "attention_mask", "labels", "subsampled_output_points"});
  auto out = forward(single_tensor(named::model_inputs(inputs), "PerceiverForOpticalFlow"),
                     named::optional(inputs, "attention_mask"), named::optional(inputs, "labels"), options,
                     named::optional(inputs, "subsampled_output_points"));
  auto named_out = named::outputs(out.loss, out.logits, {}, out.hidden_states, out.attentions, out.cross_attentions);
  if (out.epe.defined()) named_out["epe"] = out.epe;
  return named_out;
}

}  // namespace perceiver

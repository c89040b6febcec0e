// PerceiverForOpticalFlow and its training objective (end-point error), which HF does not implement.
//
// Optical-flow scale convention. HF's PerceiverOpticalFlowDecoder divides the network output by
// rescale_factor = 100, and `logits` are that value. DeepMind trained the model on flow / 20 (and
// multiplies predictions by 20 at evaluation). OpticalFlowLossOptions::flow_scale says how many
// label units one logit unit is: the loss compares logits with labels / flow_scale, and `epe` is
// reported in label units (= flow_scale * loss). With the default flow_scale = 1 labels are in the
// logits' own units; pass pixel flow with flow_scale = 20 to follow DeepMind's convention.
#pragma once

#include <string>
#include <vector>

#include "perceiver/models/model.h"

namespace perceiver {

struct OpticalFlowLossOptions {
  double flow_scale = 1.0;  // label units per logit unit (see the header comment)
};

struct OpticalFlowLoss {
  torch::Tensor loss;  // mean over the valid pixels of ||logits - labels / flow_scale||_2
  torch::Tensor epe;   // the same end-point error in label units (flow_scale * loss), detached
};

// Middlebury's "unknown flow": a component above 1e9 in magnitude (or NaN) marks a pixel without
// ground truth, as Sintel and KITTI ship occluded or invalid pixels. (..., 2) -> (...) bool.
torch::Tensor valid_flow_mask(const torch::Tensor& labels);
// Mean end-point error ||flow - target||_2 over the pixels where `valid`; 0 when none is. Invalid
// pixels contribute neither value nor gradient.
torch::Tensor end_point_error(const torch::Tensor& flow, const torch::Tensor& target, const torch::Tensor& valid);

// flow and labels: (B, H, W, 2), or (B, N, 2) for subsampled pixels; unknown-flow labels are ignored.
OpticalFlowLoss optical_flow_loss(const torch::Tensor& flow, const torch::Tensor& labels,
                                  const OpticalFlowLossOptions& options = {});

struct OpticalFlowOutput {
  torch::Tensor loss;
  torch::Tensor epe;
  torch::Tensor logits;  // (B, H, W, 2), or (B, N, 2) when subsampled
  std::vector<torch::Tensor> hidden_states;
  std::vector<torch::Tensor> attentions;
  std::vector<torch::Tensor> cross_attentions;
};

class PerceiverForOpticalFlowImpl : public PerceiverPreTrainedModelImpl {
 public:
  explicit PerceiverForOpticalFlowImpl(const PerceiverConfig& config);
  std::string architecture() const override { return "PerceiverForOpticalFlow"; }
  // inputs: (B, 2, 27, H, W) with (H, W) = config.train_size; labels: optional (B, H, W, 2).
  // subsampled_output_points (not in HF): flat pixel indices (N < H*W) to decode; logits are then
  // (B, N, 2) and full-grid labels are gathered at those pixels (labels (B, N, 2) are taken as given).
  OpticalFlowOutput forward(const torch::Tensor& inputs, const torch::Tensor& attention_mask = {},
                            const torch::Tensor& labels = {}, const ForwardOptions& options = {},
                            const torch::Tensor& subsampled_output_points = {});
  // Outputs as HF plus `loss` and `epe` when `labels` is given.
  NamedTensors forward_named(const NamedTensors& inputs, const ForwardOptions& options) override;

  OpticalFlowLossOptions loss_options;
  PerceiverModel perceiver{nullptr};
};
TORCH_MODULE(PerceiverForOpticalFlow);

}  // namespace perceiver

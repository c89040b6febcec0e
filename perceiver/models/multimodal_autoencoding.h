// PerceiverForMultimodalAutoencoding (video + audio + label) and its reconstruction losses, which
// HF does not implement.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "perceiver/models/model.h"

namespace perceiver {

struct MultimodalLossOptions {
  // Weight of each modality's reconstruction loss in `loss` (MSE for image and audio, cross-entropy
  // for the label); a modality without labels contributes nothing.
  std::map<std::string, double> weights = {{"audio", 1.0}, {"image", 1.0}, {"label", 1.0}};
};

struct MultimodalAutoencodingOutput {
  torch::Tensor loss;
  std::map<std::string, torch::Tensor> losses;  // per modality, unweighted
  std::map<std::string, torch::Tensor> logits;  // audio (B, N*samples_per_patch), image (B, N, 3), label (B, num_labels)
  std::vector<torch::Tensor> hidden_states;
  std::vector<torch::Tensor> attentions;
  std::vector<torch::Tensor> cross_attentions;
};

class PerceiverForMultimodalAutoencodingImpl : public PerceiverPreTrainedModelImpl {
 public:
  explicit PerceiverForMultimodalAutoencodingImpl(const PerceiverConfig& config);
  std::string architecture() const override { return "PerceiverForMultimodalAutoencoding"; }
  // inputs: audio (B, num_frames * audio_samples_per_frame, 1), image (B, num_frames, 3, H, W),
  // label (B, num_labels). subsampled_output_points: flat indices into the audio patches / the
  // (T, H, W) output grid; a modality left out is decoded in full (HF fails there).
  // labels (full targets, gathered at the subsampled points): audio like inputs.audio, image like
  // inputs.image at output_shape's (T, H, W), label as class indices (B,) or scores (B, num_labels).
  MultimodalAutoencodingOutput forward(const std::map<std::string, torch::Tensor>& inputs,
                                       const torch::Tensor& attention_mask = {},
                                       const std::map<std::string, torch::Tensor>& subsampled_output_points = {},
                                       const std::map<std::string, torch::Tensor>& labels = {},
                                       const ForwardOptions& options = {});
  // Inputs `inputs.<m>`, `subsampled_output_points.<m>`, `labels.<m>`; outputs `logits.<m>`, and
  // with labels `loss` and `loss.<m>`.
  NamedTensors forward_named(const NamedTensors& inputs, const ForwardOptions& options) override;

  MultimodalLossOptions loss_options;
  PerceiverModel perceiver{nullptr};

 private:
  std::map<std::string, torch::Tensor> reconstruction_losses(const std::map<std::string, torch::Tensor>& logits,
                                                             const std::map<std::string, torch::Tensor>& points,
                                                             const std::map<std::string, torch::Tensor>& labels) const;
  int64_t audio_patches() const;
};
TORCH_MODULE(PerceiverForMultimodalAutoencoding);

}  // namespace perceiver

// Multimodal autoencoding (PerceiverForMultimodalAutoencoding) of one clip, as HF's example and
// DeepMind's colab run it: the label input is masked, and the video and audio are decoded in chunks
// of output points (each chunk a forward pass with subsampled_output_points), then put back together.
#pragma once

#include <cstdint>
#include <vector>

#include "perceiver/pipelines/pipeline_common.h"
#include "perceiver/models/runner.h"

namespace perceiver {

struct ReconstructionOptions {
  // Chunks of output points (HF's example: 128), fewer when a modality has fewer points than that.
  int64_t chunks = 128;
  int64_t top_k = 5;
};

struct Reconstruction {
  torch::Tensor image;            // (T, 3, H, W) as the model decodes it (inputs are in [0, 1]; not clipped)
  torch::Tensor audio;            // (samples, 1)
  std::vector<LabelScore> top_k;  // the predicted label: the k best scores, best first
  NamedTensors logits;            // logits.image (T*H*W, 3), logits.audio (samples), logits.label (num_labels)
};

// image: (num_frames, 3, H, W) in [0, 1] with (H, W) = config.output_shape's; audio: (num_frames *
// audio_samples_per_frame, 1) in [-1, 1]. Other shapes are errors that say which is expected.
Reconstruction reconstruct_clip(ModelRunner& runner, const torch::Tensor& image, const torch::Tensor& audio,
                                const ReconstructionOptions& options = {});

}  // namespace perceiver

// The input PerceiverForOpticalFlow consumes: two frames as 3x3 patches, (B, 2, 27, H, W), prepared
// as DeepMind's and HF's examples prepare them. Training (datasets/flow.h) and the flow pipeline use it.
#pragma once

#include <torch/types.h>

namespace perceiver {

// (B, C, H, W) -> (B, 9C, H, W): channel (dy * 3 + dx) * C + c holds channel c of the neighbour at
// offset (dy - 1, dx - 1), zero beyond the border (TF extract_patches / the HF colab's extract_image_patches order).
torch::Tensor extract_patches_3x3(const torch::Tensor& images);

// Frames (H, W, 3) or (B, H, W, 3) in [0, 255] -> (B, 2, 27, H, W) float32 for PerceiverForOpticalFlow,
// scaled to [-1, 1] first (as the DeepMind/HF examples do) when `normalize`.
torch::Tensor flow_model_input(const torch::Tensor& frame1, const torch::Tensor& frame2, bool normalize = true);

}  // namespace perceiver

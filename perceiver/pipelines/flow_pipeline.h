// Optical flow for frames of any size (PerceiverForOpticalFlow), as DeepMind's optical-flow colab
// computes it: the frames are cut into tiles of the model's train_size that overlap by at least
// `min_overlap` pixels (at most half a tile), the last tile of a row or column flush with the border;
// each tile is normalised and turned into 3x3 patches on its own (perceiver/processing/flow_input.h), and the
// tiles' flows are blended with tent weights (tent_weights). Frames smaller than a tile are padded by
// repeating their border pixels and the flow is cropped back.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "perceiver/models/runner.h"

namespace perceiver {

struct FlowOptions {
  // Pixels per logit unit. DeepMind trained on flow / 20 (and `perceiver train`'s optical_flow task
  // defaults to task.flow_scale 20); flow_options_for reads a checkpoint's own value.
  double flow_scale = 20.0;
  int64_t min_overlap = 20;  // pixels shared by neighbouring tiles (capped at half a tile)
  int64_t batch_size = 8;    // tiles per forward pass
};
// FlowOptions with the checkpoint's task.flow_scale when its run file sets one.
FlowOptions flow_options_for(const ModelRunner& runner);

struct FlowTile {
  int64_t y = 0, x = 0;  // top-left corner
};
// Tile corners covering height x width (each at least the tile's size) with `tile` = {h, w}, in
// row-major order without repeats.
std::vector<FlowTile> flow_tiles(int64_t height, int64_t width, const std::array<int64_t, 2>& tile, int64_t min_overlap);
// Which sides of a tile face a neighbouring tile (and so taper), not the frame's border.
struct TaperedSides {
  bool top = true, bottom = true, left = true, right = true;
};
// A tile's blending weights, (h, w) float32: the colab's tent min(y + 1, h - y, x + 1, w - x), where a
// side on the frame's border does not taper. (The colab's tent is 1 all along the frame's border, so
// there its seams stay steps; elsewhere the two agree.)
torch::Tensor tent_weights(int64_t h, int64_t w, const TaperedSides& sides = {});

struct FlowPrediction {
  torch::Tensor flow;    // (H, W, 2) float32 pixels: x then y displacement from frame 1 to frame 2
  torch::Tensor logits;  // (H, W, 2) the blended model outputs (flow / flow_scale)
};
// frame1, frame2: (H, W, 3) RGB in [0, 255], the same size.
FlowPrediction predict_flow(ModelRunner& runner, const torch::Tensor& frame1, const torch::Tensor& frame2,
                            const FlowOptions& options = {});

}  // namespace perceiver

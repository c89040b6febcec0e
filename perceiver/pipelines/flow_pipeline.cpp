#include "perceiver/pipelines/flow_pipeline.h"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>

#include "perceiver/processing/flow_input.h"
#include "perceiver/export/input_settings.h"
#include "perceiver/pipelines/pipeline_common.h"

namespace perceiver {
namespace {

// Tile starts along one axis: the colab's range(0, size, tile - overlap) with the last start moved
// flush with the border (any start past that point too); repeats dropped.
std::vector<int64_t> tile_starts(int64_t size, int64_t tile, int64_t min_overlap) {
  const int64_t step = tile - std::min(min_overlap, tile / 2);
  std::vector<int64_t> starts;
  for (int64_t s = 0; s < size; s += step) starts.push_back(std::min(s, size - tile));
  starts.back() = size - tile;
  starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
  return starts;
}

}  // namespace

FlowOptions flow_options_for(const ModelRunner& runner) {
  FlowOptions options;
  const auto scale = training_task_setting(runner.source(), "flow_scale");
  try {
    if (scale) options.flow_scale = scale->as<double>();
  } catch (const YAML::Exception& e) {
    throw std::runtime_error((runner.source() / "run.yaml").string() + ": task.flow_scale must be a number (" +
                             e.what() + ")");
  }
  return options;
}

std::vector<FlowTile> flow_tiles(int64_t height, int64_t width, const std::array<int64_t, 2>& tile, int64_t min_overlap) {
  if (tile[0] < 1 || tile[1] < 1 || height < tile[0] || width < tile[1] || min_overlap < 0)
    throw std::invalid_argument("flow_tiles: need a frame of at least the tile's size and min_overlap >= 0; got " +
                                std::to_string(height) + "x" + std::to_string(width) + " frames, " +
                                std::to_string(tile[0]) + "x" + std::to_string(tile[1]) + " tiles, overlap " +
                                std::to_string(min_overlap));
  std::vector<FlowTile> tiles;
  for (const int64_t y : tile_starts(height, tile[0], min_overlap))
    for (const int64_t x : tile_starts(width, tile[1], min_overlap)) tiles.push_back({y, x});
  return tiles;
}

torch::Tensor tent_weights(int64_t h, int64_t w, const TaperedSides& sides) {
  // Per axis: distance to the nearer tapered end, plus one; a side that does not taper is as far as
  // the longer side of the tile.
  const int64_t flat = std::max(h, w);
  auto ramp = [&](int64_t n, bool low, bool high) {
    const auto i = torch::arange(n, torch::kFloat);
    const auto up = low ? i + 1 : torch::full({n}, static_cast<float>(flat));
    const auto down = high ? n - i : torch::full({n}, static_cast<float>(flat));
    return torch::minimum(up, down);
  };
  return torch::minimum(ramp(h, sides.top, sides.bottom).view({-1, 1}), ramp(w, sides.left, sides.right).view({1, -1}));
}

FlowPrediction predict_flow(ModelRunner& runner, const torch::Tensor& frame1, const torch::Tensor& frame2,
                            const FlowOptions& options) {
  expect_architecture(runner, {"PerceiverForOpticalFlow"}, "optical flow");
  if (frame1.dim() != 3 || frame1.size(2) != 3 || frame1.sizes() != frame2.sizes())
    throw std::invalid_argument("optical flow: the frames must be (H, W, 3) RGB of the same size; got " +
                                c10::str(frame1.sizes()) + " and " + c10::str(frame2.sizes()));
  const auto& train_size = runner.config().train_size;
  if (train_size.size() != 2) throw std::invalid_argument("optical flow: config.json's train_size needs [height, width]");
  const std::array<int64_t, 2> tile = {train_size[0], train_size[1]};
  const int64_t height = frame1.size(0), width = frame1.size(1);
  // Small frames: repeat the border up to one tile (the model's positions fix its input size).
  auto pad = [&](const torch::Tensor& f) {
    const int64_t dh = std::max<int64_t>(0, tile[0] - height), dw = std::max<int64_t>(0, tile[1] - width);
    const auto x = f.to(torch::kFloat).permute({2, 0, 1}).unsqueeze(0);
    const auto padded = dh + dw > 0 ? torch::replication_pad2d(x, {0, dw, 0, dh}) : x;
    return padded.squeeze(0).permute({1, 2, 0}).contiguous();
  };
  const auto f1 = pad(frame1), f2 = pad(frame2);
  const int64_t h = f1.size(0), w = f1.size(1);
  const auto tiles = flow_tiles(h, w, tile, options.min_overlap);
  auto sum = torch::zeros({h, w, 2}, torch::kFloat);
  auto total = torch::zeros({h, w, 1}, torch::kFloat);
  for (const auto& [begin, end] : batch_ranges(tiles.size(), options.batch_size)) {
    std::vector<torch::Tensor> a, b;
    for (size_t i = begin; i < end; ++i) {
      a.push_back(f1.narrow(0, tiles[i].y, tile[0]).narrow(1, tiles[i].x, tile[1]));
      b.push_back(f2.narrow(0, tiles[i].y, tile[0]).narrow(1, tiles[i].x, tile[1]));
    }
    const auto logits =
        runner.forward({{"inputs", flow_model_input(torch::stack(a), torch::stack(b))}}).at("logits").to(torch::kFloat);
    for (size_t i = begin; i < end; ++i) {
      const auto& t = tiles[i];
      const auto weights =
          tent_weights(tile[0], tile[1], {t.y > 0, t.y + tile[0] < h, t.x > 0, t.x + tile[1] < w}).unsqueeze(-1);
      sum.narrow(0, tiles[i].y, tile[0]).narrow(1, tiles[i].x, tile[1]).add_(weights * logits[static_cast<int64_t>(i - begin)]);
      total.narrow(0, tiles[i].y, tile[0]).narrow(1, tiles[i].x, tile[1]).add_(weights);
    }
  }
  const auto blended = (sum / total).narrow(0, 0, height).narrow(1, 0, width).contiguous();
  return {blended * static_cast<float>(options.flow_scale), blended};
}

}  // namespace perceiver

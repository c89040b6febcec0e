#include "perceiver/processing/flow_colour.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#if PERCEIVER_WITH_OPENCV
#include "perceiver/processing/image_writer.h"
#endif

namespace perceiver {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Middlebury's makeColorwheel: (55, 3) RGB in [0, 255].
torch::Tensor colour_wheel() {
  const int segments[6] = {15, 6, 4, 11, 13, 6};  // RY, YG, GC, CB, BM, MR
  std::vector<float> rgb;
  for (int s = 0; s < 6; ++s)
    for (int i = 0; i < segments[s]; ++i) {
      const float up = std::floor(255.0f * static_cast<float>(i) / static_cast<float>(segments[s]));
      const float down = 255.0f - up;
      const float colours[6][3] = {{255, up, 0}, {down, 255, 0}, {0, 255, up}, {0, down, 255}, {up, 0, 255}, {255, 0, down}};
      rgb.insert(rgb.end(), colours[s], colours[s] + 3);
    }
  return torch::tensor(rgb, torch::kFloat).view({-1, 3});
}

}  // namespace

torch::Tensor flow_to_colour(const torch::Tensor& flow, double max_radius) {
  if (flow.dim() != 3 || flow.size(2) != 2)
    throw std::invalid_argument("flow_to_colour: flow must be (H, W, 2), got " + c10::str(flow.sizes()));
  const auto f = flow.to(torch::kFloat);
  const auto unknown = f.isnan().any(-1).logical_or(f.abs().gt(1e9).any(-1));
  const auto known = torch::where(unknown.unsqueeze(-1), torch::zeros_like(f), f);
  auto u = known.select(2, 0), v = known.select(2, 1);
  auto radius = torch::sqrt(u * u + v * v);
  const double scale = max_radius > 0 ? max_radius : std::max(radius.numel() ? radius.max().item<double>() : 0.0, 0.0);
  const float eps = std::numeric_limits<float>::epsilon();
  u = u / static_cast<float>(scale + eps);
  v = v / static_cast<float>(scale + eps);
  radius = torch::sqrt(u * u + v * v);

  const auto wheel = colour_wheel();
  const int64_t n = wheel.size(0);
  const auto angle = torch::atan2(-v, -u) / static_cast<float>(kPi);
  const auto fk = (angle + 1) / 2 * static_cast<float>(n - 1);
  const auto k0 = fk.floor().to(torch::kLong).clamp(0, n - 1);
  const auto k1 = (k0 + 1).remainder(n);
  const auto frac = (fk - k0.to(torch::kFloat)).unsqueeze(-1);
  const auto c0 = wheel.index_select(0, k0.flatten()).view({u.size(0), u.size(1), 3}) / 255.0f;
  const auto c1 = wheel.index_select(0, k1.flatten()).view({u.size(0), u.size(1), 3}) / 255.0f;
  auto col = (1 - frac) * c0 + frac * c1;
  const auto r = radius.unsqueeze(-1);
  col = torch::where(r.le(1), 1 - r * (1 - col), col * 0.75f);  // saturate with the radius; darken beyond it
  col = torch::where(unknown.unsqueeze(-1), torch::zeros_like(col), col);
  return (255.0f * col).floor().clamp(0, 255).to(torch::kUInt8).contiguous();
}

#if PERCEIVER_WITH_OPENCV
void write_flow_png(const std::filesystem::path& path, const torch::Tensor& flow, double max_radius) {
  write_image_rgb(path, flow_to_colour(flow, max_radius));
}
#endif

}  // namespace perceiver

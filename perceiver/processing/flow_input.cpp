#include "perceiver/processing/flow_input.h"

#include <torch/torch.h>

#include <stdexcept>
#include <vector>

namespace perceiver {

torch::Tensor extract_patches_3x3(const torch::Tensor& images) {
  if (images.dim() != 4) throw std::invalid_argument("extract_patches_3x3: expected (B, C, H, W), got " + c10::str(images.sizes()));
  const int64_t h = images.size(2), w = images.size(3);
  const auto padded = torch::constant_pad_nd(images, {1, 1, 1, 1}, 0);
  std::vector<torch::Tensor> parts;
  for (int64_t dy = 0; dy < 3; ++dy)
    for (int64_t dx = 0; dx < 3; ++dx) parts.push_back(padded.slice(2, dy, dy + h).slice(3, dx, dx + w));
  return torch::cat(parts, 1);
}

torch::Tensor flow_model_input(const torch::Tensor& frame1, const torch::Tensor& frame2, bool normalize) {
  if (frame1.sizes() != frame2.sizes() || (frame1.dim() != 3 && frame1.dim() != 4) || frame1.size(-1) != 3)
    throw std::invalid_argument("flow_model_input: frames must both be (H, W, 3) or (B, H, W, 3); got " +
                                c10::str(frame1.sizes()) + " and " + c10::str(frame2.sizes()));
  auto prep = [&](const torch::Tensor& f) {
    auto x = (f.dim() == 3 ? f.unsqueeze(0) : f).to(torch::kFloat).permute({0, 3, 1, 2});
    if (normalize) x = x / 255.0f * 2.0f - 1.0f;
    return extract_patches_3x3(x);
  };
  return torch::stack({prep(frame1), prep(frame2)}, 1).contiguous();
}

}  // namespace perceiver

#include "perceiver/pipelines/multimodal_pipeline.h"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>

#include "perceiver/models/problem_type.h"

namespace perceiver {
namespace {

std::string shape_text(const std::vector<int64_t>& dims) { return c10::str(c10::IntArrayRef(dims)); }

}  // namespace

Reconstruction reconstruct_clip(ModelRunner& runner, const torch::Tensor& image, const torch::Tensor& audio,
                                const ReconstructionOptions& options) {
  expect_architecture(runner, {"PerceiverForMultimodalAutoencoding"}, "multimodal autoencoding");
  const auto& config = runner.config();
  if (config.output_shape.size() != 4) throw std::invalid_argument("config.json: output_shape needs 4 values");
  const int64_t frames = config.num_frames, height = config.output_shape[2], width = config.output_shape[3];
  const std::vector<int64_t> image_shape = {frames, 3, height, width};
  const std::vector<int64_t> audio_shape = {frames * config.audio_samples_per_frame, 1};
  if (image.sizes() != c10::IntArrayRef(image_shape))
    throw std::invalid_argument("multimodal autoencoding: the video must be " + shape_text(image_shape) +
                                " (frames, RGB, height, width); got " + c10::str(image.sizes()));
  if (audio.sizes() != c10::IntArrayRef(audio_shape))
    throw std::invalid_argument("multimodal autoencoding: the audio must be " + shape_text(audio_shape) +
                                " (samples, one channel); got " + c10::str(audio.sizes()));
  if (options.chunks < 1) throw std::invalid_argument("multimodal autoencoding: chunks must be >= 1");

  const int64_t image_points = frames * height * width;
  const int64_t audio_points = audio_shape[0] / config.samples_per_patch;
  const int64_t chunks = std::min({options.chunks, image_points, audio_points});
  const NamedTensors inputs = {{"inputs.image", image.unsqueeze(0).to(torch::kFloat)},
                               {"inputs.audio", audio.unsqueeze(0).to(torch::kFloat)},
                               {"inputs.label", torch::zeros({1, config.num_labels()})}};  // masked by the model
  std::vector<torch::Tensor> image_parts, audio_parts;
  torch::Tensor label;
  for (int64_t c = 0; c < chunks; ++c) {
    auto in = inputs;
    auto range = [&](int64_t points) { return torch::arange(c * points / chunks, (c + 1) * points / chunks, torch::kLong); };
    in["subsampled_output_points.image"] = range(image_points);
    in["subsampled_output_points.audio"] = range(audio_points);
    const auto out = runner.forward(in);
    image_parts.push_back(out.at("logits.image")[0]);
    audio_parts.push_back(out.at("logits.audio")[0]);
    label = out.at("logits.label")[0];
  }
  Reconstruction r;
  r.logits = {{"logits.image", torch::cat(image_parts)}, {"logits.audio", torch::cat(audio_parts)}, {"logits.label", label}};
  r.image = r.logits.at("logits.image").view({frames, height, width, 3}).permute({0, 3, 1, 2}).contiguous();
  r.audio = r.logits.at("logits.audio").view({-1, 1});
  r.top_k = top_k_labels(config, ProblemType::of(config.problem_type, config.num_labels()).scores(label), options.top_k);
  return r;
}

}  // namespace perceiver

// Input preprocessors for images, video, audio, labels and their multimodal combination:
// PerceiverImagePreprocessor (prep_type conv | conv1x1 | pixels | patches), Conv2DDownsample,
// PerceiverOneHotPreprocessor, PerceiverAudioPreprocessor and PerceiverMultimodalPreprocessor.
// Module and parameter names follow HF's attribute names.
#pragma once

#include <map>
#include <string>

#include "perceiver/models/components.h"
#include "perceiver/models/config.h"
#include "perceiver/models/position_encoding.h"

namespace perceiver {

// HF's space_to_depth: (B, C, H, W) -> (B, H/s, W/s, s*s*C) or (B, T, C, H, W) -> (B, T/t, H/s, W/s, t*s*s*C).
torch::Tensor space_to_depth(const torch::Tensor& frames, int64_t temporal_block_size, int64_t spatial_block_size);

// conv 7x7 stride 2 (padding 3, no bias) -> BatchNorm -> ReLU -> max-pool 3x3 stride 2 (no padding).
class Conv2DDownsampleImpl : public torch::nn::Module {
 public:
  Conv2DDownsampleImpl(int64_t in_channels, int64_t out_channels, bool use_batchnorm);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d batchnorm{nullptr};  // null = identity
};
TORCH_MODULE(Conv2DDownsample);

// Arguments of HF's PerceiverImagePreprocessor (position_encoding carries **position_encoding_kwargs).
struct ImagePreprocessorOptions {
  std::string prep_type = "conv";  // conv | conv1x1 | pixels | patches
  int64_t spatial_downsample = 4;
  int64_t temporal_downsample = 1;
  int64_t in_channels = 3;
  int64_t out_channels = 64;
  bool conv_after_patching = false;
  int64_t conv_after_patching_in_channels = 54;
  bool conv2d_use_batchnorm = true;
  std::string concat_or_add_pos = "concat";  // concat | add
  PositionEncodingOptions position_encoding;  // type "fourier" by default (HF's default)
  ImagePreprocessorOptions() { position_encoding.type = "fourier"; }
};

class PerceiverImagePreprocessorImpl : public PreprocessorImpl {
 public:
  explicit PerceiverImagePreprocessorImpl(const ImagePreprocessorOptions& options);
  int64_t num_channels() const override;
  // (B, C, H, W) images or (B, T, C, H, W) video, channels first. With a trainable position
  // encoding, interpolate_pos_encoding resamples the learned grid to the input's size; a Fourier
  // encoding is always computed on the input's own grid (frequencies from max_resolution).
  // Concatenated positions are left apart (PreprocessorOutput::parts()).
  PreprocessorOutput forward(const TensorOrDict& inputs, bool interpolate_pos_encoding) override;
  const ImagePreprocessorOptions& options() const { return options_; }

  Conv2DDownsample convnet{nullptr};
  torch::nn::Conv2d convnet_1x1{nullptr};
  std::shared_ptr<PositionEncodingImpl> position_embeddings;
  torch::nn::Linear positions_projection{nullptr};
  torch::nn::Linear conv_after_patches{nullptr};

 private:
  void check_input(const torch::Tensor& x) const;
  ImagePreprocessorOptions options_;
};
TORCH_MODULE(PerceiverImagePreprocessor);

// Adds a dummy index dimension: (B, num_labels) -> (B, 1, num_labels).
class PerceiverOneHotPreprocessorImpl : public PreprocessorImpl {
 public:
  explicit PerceiverOneHotPreprocessorImpl(const PerceiverConfig& config) : num_labels_(config.num_labels()) {}
  int64_t num_channels() const override { return num_labels_; }
  PreprocessorOutput forward(const TensorOrDict& inputs, bool interpolate_pos_encoding) override;

 private:
  int64_t num_labels_;
};
TORCH_MODULE(PerceiverOneHotPreprocessor);

struct AudioPreprocessorOptions {
  int64_t samples_per_patch = 96;
  std::string concat_or_add_pos = "concat";
  PositionEncodingOptions position_encoding;  // out_channels defaults to 64 as in HF
  AudioPreprocessorOptions() {
    position_encoding.type = "fourier";
    position_encoding.out_channels = 64;
  }
};

// (B, samples, ...) audio -> (B, samples / samples_per_patch, samples_per_patch) patches + positions.
class PerceiverAudioPreprocessorImpl : public PreprocessorImpl {
 public:
  explicit PerceiverAudioPreprocessorImpl(const AudioPreprocessorOptions& options);
  int64_t num_channels() const override;
  PreprocessorOutput forward(const TensorOrDict& inputs, bool interpolate_pos_encoding) override;

  std::shared_ptr<PositionEncodingImpl> position_embeddings;
  torch::nn::Linear positions_projection{nullptr};

 private:
  AudioPreprocessorOptions options_;
};
TORCH_MODULE(PerceiverAudioPreprocessor);

struct MultimodalPreprocessorOptions {
  std::map<std::string, double> mask_probs;
  int64_t min_padding_size = 2;
};

// Preprocesses each modality, pads all to max channels + min_padding_size with a trainable
// per-modality vector (`padding.<m>`), replaces positions by the mask token (`mask.<m>`) with
// probability mask_probs[m] (a Bernoulli draw on the global generator, as HF), then concatenates
// the modalities in sorted order along the sequence.
class PerceiverMultimodalPreprocessorImpl : public PreprocessorImpl {
 public:
  PerceiverMultimodalPreprocessorImpl(std::map<std::string, Preprocessor> modalities,
                                      const MultimodalPreprocessorOptions& options);
  int64_t num_channels() const override;
  PreprocessorOutput forward(const TensorOrDict& inputs, bool interpolate_pos_encoding) override;
  const std::map<std::string, Preprocessor>& modalities() const { return modalities_; }

  torch::nn::ParameterDict padding{nullptr};
  torch::nn::ParameterDict mask{nullptr};

 private:
  std::map<std::string, Preprocessor> modalities_;
  MultimodalPreprocessorOptions options_;
};
TORCH_MODULE(PerceiverMultimodalPreprocessor);

}  // namespace perceiver

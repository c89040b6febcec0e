// Decoders of the optical-flow and multimodal models: PerceiverOpticalFlowDecoder,
// PerceiverBasicVideoAutoencodingDecoder and PerceiverMultimodalDecoder. Module and parameter names
// follow HF's attribute names.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "perceiver/models/components.h"
#include "perceiver/models/config.h"
#include "perceiver/models/decoders.h"

namespace perceiver {

struct OpticalFlowDecoderOptions {
  std::vector<int64_t> output_image_shape;  // (H, W): the decoder outputs one flow vector per pixel
  int64_t output_num_channels = 2;
  double rescale_factor = 100.0;
  BasicDecoderOptions decoder;  // output_num_channels is taken from above
};

// The queries are the preprocessed inputs themselves; the output is divided by rescale_factor and
// reshaped to (B, H, W, output_num_channels). Subsampled points (flat pixel indices, fewer than H*W;
// HF has none) select query rows, and those outputs stay (B, N, output_num_channels).
class PerceiverOpticalFlowDecoderImpl : public WrappedBasicDecoderImpl {
 public:
  PerceiverOpticalFlowDecoderImpl(const PerceiverConfig& config, OpticalFlowDecoderOptions options);
  // The inputs themselves (or their subsampled rows), shared channels included: never made whole.
  WithSharedChannels decoder_query(const WithSharedChannels& inputs, const std::optional<ModalitySizes>& modality_sizes,
                                   const torch::Tensor& inputs_without_pos,
                                   const TensorOrDict& subsampled_points) override;
  PerceiverDecoderOutput forward(const WithSharedChannels& query, const torch::Tensor& z, const torch::Tensor& query_mask,
                                 bool output_attentions) override;
  const OpticalFlowDecoderOptions& options() const { return options_; }

 private:
  // The subsampled points as checked flat pixel indices on `device`.
  torch::Tensor pixels(const TensorOrDict& subsampled_points, const torch::Device& device) const;
  OpticalFlowDecoderOptions options_;
};
TORCH_MODULE(PerceiverOpticalFlowDecoder);

// A basic decoder over a (T, H, W) output grid; output_shape is (B, T, H, W).
class PerceiverBasicVideoAutoencodingDecoderImpl : public WrappedBasicDecoderImpl {
 public:
  PerceiverBasicVideoAutoencodingDecoderImpl(const PerceiverConfig& config, const std::vector<int64_t>& output_shape,
                                             BasicDecoderOptions options);
  // Full-grid outputs become (B, T, H, W, C); subsampled ones stay (B, N, C).
  PerceiverDecoderOutput forward(const WithSharedChannels& query, const torch::Tensor& z, const torch::Tensor& query_mask,
                                 bool output_attentions) override;
  const std::vector<int64_t>& output_shape() const { return output_shape_; }
  const std::vector<int64_t>& output_index_dims() const { return decoder->options().output_index_dims; }

 private:
  std::vector<int64_t> output_shape_;
};
TORCH_MODULE(PerceiverBasicVideoAutoencodingDecoder);

struct MultimodalDecoderOptions {
  std::optional<int64_t> num_outputs;  // informational, as in HF
  int64_t output_num_channels = 0;
  int64_t min_padding_size = 2;
  BasicDecoderOptions decoder;  // kwargs of the shared cross-attention decoder (qk/v channels, heads, ...)
};

// Each modality's decoder builds that modality's queries (from subsampled_points.<m> when given);
// they are padded with a trainable vector per modality (`padding.<m>`) to a common width,
// concatenated in sorted modality order and decoded by one shared cross-attention (`decoder`).
class PerceiverMultimodalDecoderImpl : public DecoderImpl {
 public:
  PerceiverMultimodalDecoderImpl(const PerceiverConfig& config, std::map<std::string, Decoder> modalities,
                                 MultimodalDecoderOptions options);
  int64_t num_query_channels() const override;
  WithSharedChannels decoder_query(const WithSharedChannels& inputs, const std::optional<ModalitySizes>& modality_sizes,
                                   const torch::Tensor& inputs_without_pos,
                                   const TensorOrDict& subsampled_points) override;
  PerceiverDecoderOutput forward(const WithSharedChannels& query, const torch::Tensor& z, const torch::Tensor& query_mask,
                                 bool output_attentions) override;
  const std::map<std::string, Decoder>& modalities() const { return modalities_; }

  PerceiverBasicDecoder decoder{nullptr};
  torch::nn::ParameterDict padding{nullptr};

 private:
  std::map<std::string, Decoder> modalities_;
  MultimodalDecoderOptions options_;
};
TORCH_MODULE(PerceiverMultimodalDecoder);

}  // namespace perceiver

// Position encodings: PerceiverTrainablePositionEncoding, PerceiverFourierPositionEncoding and
// HF's build_position_encoding (encoding + optional `positions_projection`).
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "perceiver/ops/dynamic_size.h"

namespace perceiver {

// What a position encoding is asked for; `pos` (B, N, D) overrides the regular grid (Fourier only).
struct PositionQuery {
  DynamicSize batch_size = 1;
  std::vector<int64_t> index_dims;
  torch::Tensor pos;
  bool interpolate = false;  // trainable: resample the learned grid to index_dims
  torch::Dtype dtype = torch::kFloat32;
  torch::Device device = torch::kCPU;
};

class PositionEncodingImpl : public torch::nn::Module {
 public:
  virtual int64_t output_size() const = 0;
  virtual torch::Tensor forward(const PositionQuery& query) = 0;  // (B, N, output_size)
};

struct TrainablePositionEncodingOptions {
  std::vector<int64_t> index_dims;
  int64_t num_channels = 128;
};

class PerceiverTrainablePositionEncodingImpl : public PositionEncodingImpl {
 public:
  explicit PerceiverTrainablePositionEncodingImpl(const TrainablePositionEncodingOptions& options);
  int64_t output_size() const override { return options_.num_channels; }
  torch::Tensor forward(const PositionQuery& query) override;
  // Bicubic resampling of a square (or index_dims-shaped 2-D) grid to height x width.
  torch::Tensor interpolate_pos_encoding(const torch::Tensor& embeddings, int64_t height, int64_t width) const;

  torch::Tensor position_embeddings;

 private:
  TrainablePositionEncodingOptions options_;
};

struct FourierPositionEncodingOptions {
  int64_t num_bands = 0;
  std::vector<int64_t> max_resolution;
  bool concat_pos = true;
  bool sine_only = false;
};

class PerceiverFourierPositionEncodingImpl : public PositionEncodingImpl {
 public:
  explicit PerceiverFourierPositionEncodingImpl(const FourierPositionEncodingOptions& options);
  int64_t output_size() const override;
  torch::Tensor forward(const PositionQuery& query) override;
  const FourierPositionEncodingOptions& options() const { return options_; }

 private:
  torch::Tensor features(const PositionQuery& query) const;

  FourierPositionEncodingOptions options_;
  struct GridCache;
  std::shared_ptr<GridCache> grid_cache_;
};

// linspace(-1, 1, n) per axis, "ij" grid: (prod(index_dims), D), float32 on options' device.
torch::Tensor build_linear_positions(const std::vector<int64_t>& index_dims, const torch::TensorOptions& options = {});
// HF's generate_fourier_features: [pos, sin(pi f pos), cos(pi f pos)] from batch 0's positions,
// computed on pos's device.
torch::Tensor generate_fourier_features(const torch::Tensor& pos, const FourierPositionEncodingOptions& options);

// Arguments of HF's build_position_encoding.
struct PositionEncodingOptions {
  std::string type = "trainable";  // trainable | fourier | none
  std::optional<TrainablePositionEncodingOptions> trainable;
  std::optional<FourierPositionEncodingOptions> fourier;
  int64_t out_channels = -1;     // input width of the projection
  int64_t project_pos_dim = -1;  // > 0: project the encoding to this width
};

// HF's Fourier position encoding as the vision, flow and multimodal heads configure it: num_bands
// frequencies up to max_resolution per axis, positions concatenated, sine and cosine.
PositionEncodingOptions fourier_position_encoding(int64_t num_bands, std::vector<int64_t> max_resolution);

struct BuiltPositionEncoding {
  std::shared_ptr<PositionEncodingImpl> encoding;
  torch::nn::Linear projection{nullptr};  // null = identity
};

BuiltPositionEncoding build_position_encoding(const PositionEncodingOptions& options);

}  // namespace perceiver

#include "perceiver/models/preprocessors.h"

#include "perceiver/ops/dynamic_size.h"

namespace perceiver {

const torch::Tensor& single_tensor(const TensorOrDict& value, const char* who) {
  TORCH_CHECK(!value.is_dict(), who, " expects a single tensor, got a dict of modalities");
  TORCH_CHECK(value.tensor.defined(), who, " got no inputs");
  return value.tensor;
}

PerceiverTextPreprocessorImpl::PerceiverTextPreprocessorImpl(const PerceiverConfig& config) : d_model_(config.d_model) {
  embeddings = register_module("embeddings", torch::nn::Embedding(config.vocab_size, config.d_model));
  position_embeddings =
      register_module("position_embeddings", torch::nn::Embedding(config.max_position_embeddings, config.d_model));
}

PreprocessorOutput PerceiverTextPreprocessorImpl::forward(const TensorOrDict& in, bool /*interpolate_pos_encoding*/) {
  const auto& ids = single_tensor(in, "PerceiverTextPreprocessor");
  TORCH_CHECK(!ids.is_floating_point() && !ids.is_complex() && ids.scalar_type() != torch::kBool,
              "PerceiverTextPreprocessor: inputs must be integer token ids, got dtype ", ids.scalar_type());
  TORCH_CHECK(ids.dim() == 2, "PerceiverTextPreprocessor: inputs must have shape (batch, seq_len), got ", ids.sizes());
  const int64_t seq_len = ids.size(1);
  const int64_t max_len = position_embeddings->weight.size(0);
  TORCH_CHECK(seq_len <= max_len, "PerceiverTextPreprocessor: sequence length ", seq_len,
              " exceeds max_position_embeddings (", max_len, ")");
  const int64_t vocab = embeddings->weight.size(0);
  if (ids.numel() > 0) {
    const auto lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < vocab, "PerceiverTextPreprocessor: token ids must be in [0, ", vocab, "), found ",
                lo < 0 ? lo : hi);
  }
  auto without_pos = embeddings(ids.to(torch::kLong));
  auto positions =
      dynamic::arange(DynamicSize::of(ids, 1), torch::TensorOptions().dtype(torch::kLong).device(ids.device()));
  return {without_pos + position_embeddings(positions), std::nullopt, without_pos};
}

}  // namespace perceiver

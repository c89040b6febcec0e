// Dynamic masking for byte-level masked language modelling (BERT recipe on PerceiverTokenizer ids).
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace perceiver::datasets {

struct MlmOptions {
  double mask_probability = 0.15;   // fraction of eligible (non-special) positions chosen per row
  double mask_token_fraction = 0.8; // of the chosen: replaced by [MASK]
  double random_token_fraction = 0.1; // of the chosen: replaced by a random byte id (the rest keep their id)
  bool whole_word = false;          // choose whole whitespace-delimited words (whitespace itself is never chosen)
  double whole_word_fraction = 0;   // else: this fraction of the rows (drawn per row) masks whole words
  // else: this fraction of the rows masks spans of consecutive whole words, whitespace between them included
  // (SpanBERT's: a span's length in words is geometric with p = span_p, truncated at span_max_words)
  double span_fraction = 0;
  double span_p = 0.2;
  int64_t span_max_words = 10;
  int64_t ignore_index = -100;      // label of positions not chosen
};

struct MlmBatch {
  torch::Tensor input_ids;  // (B, L) int64, masked copy of the input
  torch::Tensor labels;     // (B, L) int64: original id where chosen, ignore_index elsewhere
};

// Chooses round(p * eligible) positions per row (at least one when a row has any eligible position).
// Deterministic for a given generator state (a CPU generator); the input is not modified. The input
// may live on any device; the returned tensors are on the CPU.
MlmBatch mask_tokens(const torch::Tensor& input_ids, const MlmOptions& options, at::Generator& generator);
MlmBatch mask_tokens(const torch::Tensor& input_ids, const MlmOptions& options, uint64_t seed);
// Row b drawn from rows[b] alone (one generator per example, e.g. datasets::example_generators).
MlmBatch mask_tokens(const torch::Tensor& input_ids, const MlmOptions& options, std::vector<at::Generator>& rows);

// A CPU generator seeded with `seed` (helper for callers without one).
at::Generator make_generator(uint64_t seed);

}  // namespace perceiver::datasets

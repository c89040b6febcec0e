// What the task pipelines share: the architecture check, label scores ranked as HF's pipelines rank
// them, batches of inputs, and texts encoded for the text heads.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "perceiver/models/config.h"
#include "perceiver/models/runner.h"
#include "perceiver/processing/tokenizer.h"

namespace perceiver {

struct LabelScore {
  std::string label;
  double score = 0;
};

// Throws std::invalid_argument naming `task`, the accepted architectures and the model's.
void expect_architecture(const ModelRunner& runner, const std::vector<std::string>& accepted, const std::string& task);

// The k best entries of a score row (ties: lower id first), named by config.id2label (else the id).
std::vector<LabelScore> top_k_labels(const PerceiverConfig& config, const torch::Tensor& scores, int64_t k);

// [begin, end) ranges of at most batch_size (>= 1) items covering n items in order.
std::vector<std::pair<size_t, size_t>> batch_ranges(size_t n, int64_t batch_size);

// Texts -> padded (B, L) ids and attention mask, truncated to config.max_position_embeddings.
ModelInputs encode_texts(const PerceiverConfig& config, const std::vector<std::string>& texts);

}  // namespace perceiver

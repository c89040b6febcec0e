#include "perceiver/pipelines/pipeline_common.h"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace perceiver {

void expect_architecture(const ModelRunner& runner, const std::vector<std::string>& accepted, const std::string& task) {
  const auto arch = runner.architecture();
  if (std::find(accepted.begin(), accepted.end(), arch) != accepted.end()) return;
  std::string list;
  for (const auto& a : accepted) list += (list.empty() ? "" : ", ") + a;
  throw std::invalid_argument(task + " needs " + list + "; " + runner.source().string() + " is a " + arch);
}

std::vector<LabelScore> top_k_labels(const PerceiverConfig& config, const torch::Tensor& scores, int64_t k) {
  const auto row = scores.to(torch::kCPU, torch::kDouble).contiguous();
  const double* s = row.data_ptr<double>();
  std::vector<int64_t> ids(static_cast<size_t>(row.numel()));
  std::iota(ids.begin(), ids.end(), 0);
  const auto keep = static_cast<size_t>(std::clamp<int64_t>(k, 0, row.numel()));
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep), ids.end(),
                    [&](int64_t a, int64_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
  std::vector<LabelScore> out;
  for (size_t i = 0; i < keep; ++i) {
    const auto it = config.id2label.find(ids[i]);
    out.push_back({it != config.id2label.end() ? it->second : std::to_string(ids[i]), s[ids[i]]});
  }
  return out;
}

std::vector<std::pair<size_t, size_t>> batch_ranges(size_t n, int64_t batch_size) {
  if (batch_size < 1) throw std::invalid_argument("batch size must be >= 1, got " + std::to_string(batch_size));
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t begin = 0; begin < n; begin += static_cast<size_t>(batch_size))
    out.emplace_back(begin, std::min(n, begin + static_cast<size_t>(batch_size)));
  return out;
}

ModelInputs encode_texts(const PerceiverConfig& config, const std::vector<std::string>& texts) {
  EncodeOptions o;
  o.padding = Padding::Longest;
  o.truncation = Truncation::LongestFirst;
  o.max_length = config.max_position_embeddings;
  return to_model_inputs(PerceiverTokenizer().batch_encode(texts, o));
}

}  // namespace perceiver

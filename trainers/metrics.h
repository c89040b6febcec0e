// Metrics of the training objectives: sums merged over batches, the classification losses with
// their metrics (single-label, multi-label, regression) and the confusion matrix.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>
#include <utility>

namespace perceiver::trainers {

// Sums of (value * weight) and weights per metric, merged over batches; mean = sum / weight.
class MetricSums {
 public:
  void add(const std::string& name, double sum, double weight);
  void merge(const MetricSums& other);
  std::map<std::string, double> means() const;
  bool empty() const { return sums_.empty(); }
  // name -> (sum, weight), e.g. to add them up over ranks.
  const std::map<std::string, std::pair<double, double>>& entries() const { return sums_; }

 private:
  std::map<std::string, std::pair<double, double>> sums_;
};

// Cross-entropy (with label smoothing); accuracy and top-k accuracy.
torch::Tensor loss_metrics(const torch::Tensor& logits, const torch::Tensor& labels, double label_smoothing,
                           MetricSums& metrics, int64_t top_k);
// HF's multi_label_classification: binary cross-entropy per label; exact_match, label_accuracy, f1_micro.
torch::Tensor multi_label_loss_metrics(const torch::Tensor& logits, const torch::Tensor& targets, MetricSums& metrics);
// HF's regression with one label: mean squared error; mse and mae.
torch::Tensor regression_loss_metrics(const torch::Tensor& logits, const torch::Tensor& targets, MetricSums& metrics);

// Confusion matrix gathered during evaluation and written as CSV (rows: true label).
class Confusion {
 public:
  void reset(int64_t n) { counts_ = torch::zeros({n, n}, torch::kLong); }
  void add(const torch::Tensor& logits, const torch::Tensor& labels);
  void write(const std::filesystem::path& file, const std::map<int64_t, std::string>& names) const;
  // The (n, n) counts, shared (e.g. to add them up over ranks in place); undefined before reset().
  torch::Tensor counts() const { return counts_; }

 private:
  torch::Tensor counts_;
};

}  // namespace perceiver::trainers

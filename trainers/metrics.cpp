#include "trainers/metrics.h"

#include <fstream>

namespace perceiver::trainers {

void MetricSums::add(const std::string& name, double sum, double weight) {
  auto& slot = sums_[name];
  slot.first += sum;
  slot.second += weight;
}

void MetricSums::merge(const MetricSums& other) {
  for (const auto& [name, v] : other.sums_) add(name, v.first, v.second);
}

std::map<std::string, double> MetricSums::means() const {
  std::map<std::string, double> out;
  for (const auto& [name, v] : sums_)
    if (v.second > 0) out[name] = v.first / v.second;
  return out;
}

torch::Tensor loss_metrics(const torch::Tensor& logits, const torch::Tensor& labels, double label_smoothing,
                           MetricSums& metrics, int64_t top_k) {
  namespace F = torch::nn::functional;
  const auto loss = F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().label_smoothing(label_smoothing));
  torch::NoGradGuard no_grad;
  const auto n = static_cast<double>(labels.size(0));
  const auto pred = logits.argmax(-1);
  metrics.add("loss", loss.item<double>() * n, n);
  metrics.add("accuracy", pred.eq(labels).sum().item<double>(), n);
  if (logits.size(-1) > top_k) {
    const auto top = std::get<1>(logits.topk(top_k, -1));
    metrics.add("top" + std::to_string(top_k) + "_accuracy", top.eq(labels.unsqueeze(-1)).any(-1).sum().item<double>(), n);
  }
  return loss;
}

// HF's multi_label_classification: binary cross-entropy per label. A label is predicted when its
// logit is positive; exact_match needs every label of a text right, f1_micro pools all labels.
torch::Tensor multi_label_loss_metrics(const torch::Tensor& logits, const torch::Tensor& targets, MetricSums& metrics) {
  const auto target = targets.to(logits.scalar_type());
  const auto loss = torch::binary_cross_entropy_with_logits(logits, target);
  torch::NoGradGuard no_grad;
  const auto n = static_cast<double>(targets.size(0));
  const auto pred = logits.gt(0);
  const auto truth = target.gt(0.5);
  metrics.add("loss", loss.item<double>() * n, n);
  metrics.add("exact_match", pred.eq(truth).all(-1).sum().item<double>(), n);
  metrics.add("label_accuracy", pred.eq(truth).to(torch::kDouble).mean(-1).sum().item<double>(), n);
  // F1 = 2TP / (2TP + FP + FN), pooled over the evaluation by summing numerator and denominator.
  const double tp = (pred & truth).sum().item<double>();
  const double wrong = pred.ne(truth).sum().item<double>();
  metrics.add("f1_micro", 2 * tp, 2 * tp + wrong);
  return loss;
}

// HF's regression with one label: mean squared error between the squeezed logits and the targets.
torch::Tensor regression_loss_metrics(const torch::Tensor& logits, const torch::Tensor& targets, MetricSums& metrics) {
  const auto pred = logits.squeeze(-1);
  const auto loss = torch::mse_loss(pred, targets.to(pred.scalar_type()));
  torch::NoGradGuard no_grad;
  const auto n = static_cast<double>(targets.size(0));
  metrics.add("loss", loss.item<double>() * n, n);
  metrics.add("mse", loss.item<double>() * n, n);
  metrics.add("mae", (pred - targets.to(pred.scalar_type())).abs().sum().item<double>(), n);
  return loss;
}

void Confusion::add(const torch::Tensor& logits, const torch::Tensor& labels) {
  if (!counts_.defined()) return;
  const auto n = counts_.size(0);
  const auto flat = labels.to(torch::kCPU) * n + logits.argmax(-1).to(torch::kCPU);
  counts_ += torch::bincount(flat, {}, n * n).reshape({n, n});
}

void Confusion::write(const std::filesystem::path& file, const std::map<int64_t, std::string>& names) const {
  if (!counts_.defined()) return;
  std::ofstream out(file);
  out << "true\\predicted";
  for (const auto& [id, name] : names) out << "," << name;
  out << "\n";
  for (int64_t i = 0; i < counts_.size(0); ++i) {
    out << (names.count(i) ? names.at(i) : std::to_string(i));
    for (int64_t j = 0; j < counts_.size(1); ++j) out << "," << counts_[i][j].item<int64_t>();
    out << "\n";
  }
}

}  // namespace perceiver::trainers

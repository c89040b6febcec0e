// What the classification tasks (text and image) share: HF's problem types through
// ClassificationObjective, the metric that picks the best checkpoint, and the confusion matrix that
// single-label evaluations write.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "trainers/classification_objective.h"
#include "trainers/metrics.h"
#include "trainers/tasks.h"

namespace perceiver::trainers {

class ClassificationTask : public Task {
 public:
  explicit ClassificationTask(TaskSection& s) : problem_(s) {}
  std::string best_metric() const override { return problem_.best_metric(); }
  std::string best_mode() const override { return problem_.best_mode(); }
  void begin_eval() override;
  std::map<std::string, double> end_eval(const std::filesystem::path& out_dir, ModelRunner& model) override;
  std::vector<torch::Tensor> eval_counts() override { return {confusion_.counts()}; }

 protected:
  // The batch's loss with its metrics; evaluation batches of single-label runs also fill the confusion matrix.
  torch::Tensor score(const torch::Tensor& logits, const torch::Tensor& labels, bool training, MetricSums& metrics);
  // The label names of the config that load_data settled (rows and columns of the confusion matrix).
  void set_label_names(std::map<int64_t, std::string> names) { names_ = std::move(names); }

  ClassificationObjective problem_;

 private:
  std::map<int64_t, std::string> names_;
  Confusion confusion_;
};

}  // namespace perceiver::trainers

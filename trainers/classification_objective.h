// What training a classification head under one of HF's problem types (perceiver/models/problem_type.h)
// needs: the task options, targets from raw label fields, the loss with its metrics, and the metric
// that picks the best checkpoint.
#pragma once

#include <string>
#include <vector>

#include "perceiver/models/config.h"
#include "perceiver/models/problem_type.h"
#include "trainers/metrics.h"
#include "trainers/task_options.h"

namespace perceiver::trainers {

// task.problem_type, task.label_smoothing and task.label_separator: both classification tasks' keys.
const datasets::OptionSpecs& classification_options();

class ClassificationObjective {
 public:
  // Reads task.problem_type, task.label_smoothing and task.label_separator.
  explicit ClassificationObjective(TaskSection& s);
  const ProblemType& type() const { return type_; }
  const std::string& name() const { return type_.name(); }
  const std::string& separator() const { return separator_; }
  bool single() const { return type_.single(); }
  std::string best_metric() const;
  std::string best_mode() const { return type_.regression() ? "min" : "max"; }

  struct Targets {
    torch::Tensor train, eval;
    std::vector<std::string> id2label;
  };
  // Multi-label or regression targets from the raw label fields (single-label ids come from the sources).
  Targets targets(const std::vector<std::string>& train, const std::vector<std::string>& eval,
                  const std::string& source) const;
  torch::Tensor loss(const torch::Tensor& logits, const torch::Tensor& labels, MetricSums& metrics) const;

 private:
  ProblemType type_{"single_label_classification"};
  std::string separator_ = "|";
  double label_smoothing_ = 0.0;
};

// The saved config names the labels: id i -> names[i].
void set_id2label(PerceiverConfig& config, const std::vector<std::string>& names);

}  // namespace perceiver::trainers

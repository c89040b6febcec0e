#include "trainers/classification_objective.h"

#include "datasets/labelled_text.h"

namespace perceiver::trainers {

const datasets::OptionSpecs& classification_options() {
  static const datasets::OptionSpecs options = {
      {"problem_type", "enum[" + join(ProblemType::names(), ", ") + "]", "single_label_classification",
       "HF's problem type: single-label (softmax, cross-entropy), multi-label (sigmoid, binary cross-entropy) or "
       "regression (mean squared error)"},
      {"label_smoothing", "float", "0.0", "label smoothing of the cross-entropy (single_label_classification only)"},
      // Quoted: a bare | is YAML's block-scalar mark.
      {"label_separator", "string", "'|'",
       "splits a multi-label field into its labels (JSONL label lists are joined with it); not empty"},
  };
  return options;
}

ClassificationObjective::ClassificationObjective(TaskSection& s) {
  label_smoothing_ = s.get<double>("label_smoothing");
  const auto name = s.get<std::string>("problem_type");
  if (!ProblemType::known(name)) s.fail("problem_type", ProblemType::expected(name));
  type_ = ProblemType(name);
  if (label_smoothing_ != 0.0 && !single()) s.fail("label_smoothing", "applies to single_label_classification only");
  separator_ = s.get<std::string>("label_separator");
  if (separator_.empty()) s.fail("label_separator", "must not be empty");
}

std::string ClassificationObjective::best_metric() const {
  return type_.regression() ? "eval/mse" : type_.multi_label() ? "eval/f1_micro" : "eval/accuracy";
}

ClassificationObjective::Targets ClassificationObjective::targets(const std::vector<std::string>& train,
                                                                  const std::vector<std::string>& eval,
                                                                  const std::string& source) const {
  Targets t;
  if (type_.multi_label()) {
    auto tr = datasets::multi_label_targets(train, separator_, source + ": data.train");
    t.eval = datasets::multi_label_targets(eval, separator_, source + ": data.eval", tr.id2label).targets;
    t.train = tr.targets;
    t.id2label = tr.id2label;
  } else {
    t.train = datasets::regression_targets(train, source + ": data.train");
    t.eval = datasets::regression_targets(eval, source + ": data.eval");
    t.id2label = {"LABEL_0"};  // HF: one output, mean squared error
  }
  return t;
}

torch::Tensor ClassificationObjective::loss(const torch::Tensor& logits, const torch::Tensor& labels,
                                            MetricSums& metrics) const {
  if (type_.multi_label()) return multi_label_loss_metrics(logits, labels, metrics);
  if (type_.regression()) return regression_loss_metrics(logits, labels, metrics);
  return loss_metrics(logits, labels, label_smoothing_, metrics, 5);
}

void set_id2label(PerceiverConfig& config, const std::vector<std::string>& names) {
  config.id2label.clear();
  for (size_t i = 0; i < names.size(); ++i) config.id2label[static_cast<int64_t>(i)] = names[i];
}

}  // namespace perceiver::trainers

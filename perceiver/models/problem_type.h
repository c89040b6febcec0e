// HF's problem types of the classification heads (config.problem_type): single_label_classification,
// multi_label_classification and regression. The one place that knows their names and how each turns
// logits into scores; the trainers (losses, targets) and the pipelines (answers) both use it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

namespace perceiver {

class ProblemType {
 public:
  enum class Kind { single_label, multi_label, regression };

  // Every name config.problem_type may hold, in HF's spelling.
  static const std::vector<std::string>& names();
  // Throws std::invalid_argument naming `where` and listing names() for an unknown name.
  explicit ProblemType(const std::string& name, const std::string& where = "problem_type");
  static bool known(const std::string& name);
  // "must be <names>; found '<name>'": the message for an unknown name.
  static std::string expected(const std::string& found);
  // config.problem_type when set, else what HF's classification pipelines assume: multi-label
  // (sigmoid) for a single output (config.num_labels()), single-label (softmax) otherwise.
  static ProblemType of(const std::optional<std::string>& problem_type, int64_t num_labels);

  const std::string& name() const { return name_; }
  Kind kind() const { return kind_; }
  bool single() const { return kind_ == Kind::single_label; }
  bool multi_label() const { return kind_ == Kind::multi_label; }
  bool regression() const { return kind_ == Kind::regression; }
  // Scores as HF's pipelines give them: softmax over the last dimension (single label), sigmoid
  // (multi-label) or the raw values (regression). Computed in float64.
  torch::Tensor scores(const torch::Tensor& logits) const;
  // The score above which a multi-label answer includes a label (HF's pipelines: 0.5).
  static constexpr double multi_label_threshold = 0.5;

 private:
  std::string name_;
  Kind kind_ = Kind::single_label;
};

}  // namespace perceiver

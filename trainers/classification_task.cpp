#include "trainers/classification_task.h"

#if PERCEIVER_WITH_OPENCV
#include "trainers/plot.h"
#endif

namespace perceiver::trainers {

void ClassificationTask::begin_eval() {
  if (problem_.single()) confusion_.reset(static_cast<int64_t>(names_.size()));
}

std::map<std::string, double> ClassificationTask::end_eval(const std::filesystem::path& out_dir, ModelRunner&) {
  confusion_.write(out_dir / "confusion_matrix.csv", names_);
#if PERCEIVER_WITH_OPENCV
  if (confusion_.counts().defined()) write_confusion_png(out_dir / "confusion_matrix.png", confusion_.counts(), names_);
#endif
  return {};
}

torch::Tensor ClassificationTask::score(const torch::Tensor& logits, const torch::Tensor& labels, bool training,
                                        MetricSums& metrics) {
  auto loss = problem_.loss(logits, labels, metrics);
  if (!training && problem_.single()) confusion_.add(logits, labels);
  return loss;
}

}  // namespace perceiver::trainers

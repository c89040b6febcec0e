// The classification losses and metrics on small cases worked by hand: each expected value is derived in
// a comment, never read off the code's output. Logits are chosen so that the hand arithmetic is exact:
// log-probabilities that are multiples of ln 2 (softmax) and +-ln 3 (sigmoid(ln 3) = 3/4).
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include <cmath>

#include "perceiver/models/problem_type.h"
#include "tests/test_support.h"
#include "trainers/classification_objective.h"
#include "trainers/metrics.h"
#include "trainers/task_options.h"

namespace perceiver::testing {
namespace {

using trainers::MetricSums;

const double kLn2 = std::log(2.0);
const double kLn3 = std::log(3.0);

// Four examples over four classes, each row the log of a distribution of halves, quarters and eighths:
//   row  probabilities               label  -log p(label)  argmax  top-2
//   0    (1/2, 1/4, 1/8, 1/8)        0      1 ln2          0 ok    {0,1} ok
//   1    (1/4, 1/2, 1/8, 1/8)        0      2 ln2          1 x     {1,0} ok
//   2    (1/2, 1/4, 1/8, 1/8)        3      3 ln2          0 x     {0,1} x
//   3    (1/8, 1/8, 1/4, 1/2)        3      1 ln2          3 ok    {3,2} ok
torch::Tensor four_class_logits() {
  return torch::log(torch::tensor({{0.5, 0.25, 0.125, 0.125},
                                   {0.25, 0.5, 0.125, 0.125},
                                   {0.5, 0.25, 0.125, 0.125},
                                   {0.125, 0.125, 0.25, 0.5}},
                                  torch::kFloat));
}
torch::Tensor four_class_labels() { return torch::tensor({0, 0, 3, 3}, torch::kLong); }

TEST(ClassificationMetrics, CrossEntropyAccuracyAndTopK) {
  MetricSums sums;
  const auto loss = trainers::loss_metrics(four_class_logits(), four_class_labels(), 0.0, sums, 2);
  // Mean of (1 + 2 + 3 + 1) ln2 over 4 rows.
  EXPECT_NEAR(loss.item<double>(), 7.0 / 4.0 * kLn2, 1e-6);
  const auto m = sums.means();
  EXPECT_NEAR(m.at("loss"), 7.0 / 4.0 * kLn2, 1e-6);
  EXPECT_DOUBLE_EQ(m.at("accuracy"), 2.0 / 4.0);       // rows 0 and 3
  EXPECT_DOUBLE_EQ(m.at("top2_accuracy"), 3.0 / 4.0);  // rows 0, 1 and 3
  EXPECT_EQ(m.size(), 3u);
  // Top-k needs more than k classes: with k = 4 of 4 classes it would always be 1, so it is not reported.
  MetricSums all;
  trainers::loss_metrics(four_class_logits(), four_class_labels(), 0.0, all, 4);
  EXPECT_FALSE(all.means().count("top4_accuracy"));
}

// Batches are weighed by their size: the mean over a 4-row and a 2-row batch is over the 6 rows.
TEST(ClassificationMetrics, BatchesAreWeighedByTheirSize) {
  MetricSums sums;
  trainers::loss_metrics(four_class_logits(), four_class_labels(), 0.0, sums, 2);
  // Two more rows, both right at probability 1/2: loss ln2 each.
  MetricSums second;
  trainers::loss_metrics(torch::log(torch::tensor({{0.5, 0.25, 0.125, 0.125}, {0.125, 0.5, 0.25, 0.125}})),
                         torch::tensor({0, 1}, torch::kLong), 0.0, second, 2);
  sums.merge(second);
  const auto m = sums.means();
  EXPECT_DOUBLE_EQ(m.at("accuracy"), (2.0 + 2.0) / 6.0);  // not the mean of 1/2 and 1
  EXPECT_NEAR(m.at("loss"), (7.0 + 2.0) / 6.0 * kLn2, 1e-6);
  EXPECT_EQ(sums.entries().at("accuracy"), std::make_pair(4.0, 6.0));
}

// Label smoothing eps over K classes trains towards q = (1 - eps) one_hot(y) + eps / K, so the loss is
//   (1 - eps) (-log p_y) + (eps / K) sum_k (-log p_k).
// With eps = 0.2, K = 4 every row above has sum_k -log p_k = (1 + 2 + 3 + 3) ln2 = 9 ln2, so
//   row 0: 0.8 * 1 + 0.05 * 9 = 1.25,  row 1: 0.8 * 2 + 0.45 = 2.05,
//   row 2: 0.8 * 3 + 0.45 = 2.85,      row 3: 0.8 * 1 + 0.45 = 1.25   (times ln2),
// a mean of 7.4 / 4 = 1.85 ln2. Accuracy does not change.
TEST(ClassificationMetrics, LabelSmoothingFollowsItsFormula) {
  MetricSums sums;
  const auto loss = trainers::loss_metrics(four_class_logits(), four_class_labels(), 0.2, sums, 2);
  EXPECT_NEAR(loss.item<double>(), 1.85 * kLn2, 1e-6);
  EXPECT_NEAR(sums.means().at("loss"), 1.85 * kLn2, 1e-6);
  EXPECT_DOUBLE_EQ(sums.means().at("accuracy"), 0.5);

  // The objective reads task.label_smoothing and applies it to single-label classification.
  const auto task = YAML::Load("{label_smoothing: 0.2}");
  trainers::TaskSection section(task, "t.yaml", "task", trainers::classification_options());
  const trainers::ClassificationObjective objective(section);
  MetricSums via_objective;
  EXPECT_NEAR(objective.loss(four_class_logits(), four_class_labels(), via_objective).item<double>(), 1.85 * kLn2, 1e-6);
  EXPECT_EQ(objective.best_metric(), "eval/accuracy");
  EXPECT_EQ(objective.best_mode(), "max");
}

// Three labels; a label is predicted when its logit is positive. Logits are +-ln 3, so sigmoid gives
// 3/4 for the predicted side: binary cross-entropy is ln(4/3) for a right label and ln 4 for a wrong one.
//   example  truth    predicted  all right  labels right  TP  FP  FN
//   0        1 0 1    1 0 1      yes        3/3           2   0   0
//   1        1 1 0    1 0 0      no         2/3           1   0   1
//   2        0 0 1    1 0 0      no         1/3           0   1   1
//   3        0 0 0    0 0 0      yes        3/3           0   0   0
// exact_match 2/4; label_accuracy (1 + 2/3 + 1/3 + 1) / 4 = 3/4; f1_micro 2TP / (2TP + FP + FN)
// = 6 / (6 + 1 + 2) = 2/3 (true negatives do not count); loss (9 ln(4/3) + 3 ln 4) / 12.
struct MultiLabelCase {
  torch::Tensor truth = torch::tensor({{1, 0, 1}, {1, 1, 0}, {0, 0, 1}, {0, 0, 0}}, torch::kFloat);
  torch::Tensor logits = torch::tensor({{1, -1, 1}, {1, -1, -1}, {1, -1, -1}, {-1, -1, -1}}, torch::kFloat) * kLn3;
};

TEST(ClassificationMetrics, MultiLabelExactMatchLabelAccuracyAndF1Micro) {
  const MultiLabelCase c;
  MetricSums sums;
  const auto loss = trainers::multi_label_loss_metrics(c.logits, c.truth, sums);
  const double expected_loss = (9 * std::log(4.0 / 3.0) + 3 * std::log(4.0)) / 12;
  EXPECT_NEAR(loss.item<double>(), expected_loss, 1e-6);
  const auto m = sums.means();
  EXPECT_NEAR(m.at("loss"), expected_loss, 1e-6);
  EXPECT_DOUBLE_EQ(m.at("exact_match"), 0.5);
  EXPECT_DOUBLE_EQ(m.at("label_accuracy"), 0.75);
  EXPECT_DOUBLE_EQ(m.at("f1_micro"), 2.0 / 3.0);
  EXPECT_EQ(m.size(), 4u);
}

// F1 is pooled over the evaluation, not averaged over batches: examples {0, 3} alone score F1 4/4 = 1
// and {1, 2} alone 2 / (2 + 3) = 2/5 (a mean of 0.7), but together they score 2/3 as above.
TEST(ClassificationMetrics, MultiLabelF1IsPooledOverBatches) {
  const MultiLabelCase c;
  const auto rows = [](const torch::Tensor& t, std::vector<int64_t> index) {
    return t.index_select(0, torch::tensor(index, torch::kLong));
  };
  MetricSums sums, second;
  trainers::multi_label_loss_metrics(rows(c.logits, {0, 3}), rows(c.truth, {0, 3}), sums);
  EXPECT_DOUBLE_EQ(sums.means().at("f1_micro"), 1.0);
  trainers::multi_label_loss_metrics(rows(c.logits, {1, 2}), rows(c.truth, {1, 2}), second);
  EXPECT_DOUBLE_EQ(second.means().at("f1_micro"), 2.0 / 5.0);
  sums.merge(second);
  EXPECT_DOUBLE_EQ(sums.means().at("f1_micro"), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(sums.means().at("exact_match"), 0.5);
  EXPECT_DOUBLE_EQ(sums.means().at("label_accuracy"), 0.75);
}

// Predictions (0.5, 2, -1, 3) for targets (1, 2, 1, 0): errors -0.5, 0, -2, 3, so
// MAE = (0.5 + 0 + 2 + 3) / 4 = 1.375 and MSE = (0.25 + 0 + 4 + 9) / 4 = 3.3125 (the loss).
TEST(ClassificationMetrics, RegressionMseAndMae) {
  const auto logits = torch::tensor({{0.5}, {2.0}, {-1.0}, {3.0}}, torch::kFloat);
  const auto targets = torch::tensor({1.0, 2.0, 1.0, 0.0}, torch::kFloat);
  MetricSums sums;
  const auto loss = trainers::regression_loss_metrics(logits, targets, sums);
  EXPECT_DOUBLE_EQ(loss.item<double>(), 3.3125);
  const auto m = sums.means();
  EXPECT_DOUBLE_EQ(m.at("mse"), 3.3125);
  EXPECT_DOUBLE_EQ(m.at("loss"), 3.3125);
  EXPECT_DOUBLE_EQ(m.at("mae"), 1.375);
}

// The objective sends each problem type to its loss, and picks the metric that chooses the best checkpoint.
TEST(ClassificationMetrics, ObjectiveDispatchesOnTheProblemType) {
  const auto objective = [](const std::string& yaml) {
    const auto node = YAML::Load(yaml);
    trainers::TaskSection section(node, "t.yaml", "task", trainers::classification_options());
    return trainers::ClassificationObjective(section);
  };
  const MultiLabelCase c;
  const auto multi = objective("{problem_type: multi_label_classification}");
  MetricSums m;
  multi.loss(c.logits, c.truth, m);
  EXPECT_DOUBLE_EQ(m.means().at("f1_micro"), 2.0 / 3.0);
  EXPECT_EQ(multi.best_metric(), "eval/f1_micro");
  EXPECT_EQ(multi.best_mode(), "max");

  const auto reg = objective("{problem_type: regression}");
  MetricSums r;
  reg.loss(torch::tensor({{0.5}, {2.0}, {-1.0}, {3.0}}), torch::tensor({1.0, 2.0, 1.0, 0.0}), r);
  EXPECT_DOUBLE_EQ(r.means().at("mae"), 1.375);
  EXPECT_EQ(reg.best_metric(), "eval/mse");
  EXPECT_EQ(reg.best_mode(), "min");
}

// Scores as the pipelines give them, for logits (0, ln 3): softmax e^0 / (1 + 3) = 1/4 and 3/4;
// sigmoid 1/2 and 1 / (1 + 1/3) = 3/4; regression the raw values.
TEST(ClassificationMetrics, ProblemTypeScores) {
  const auto logits = torch::tensor({0.0, kLn3}, torch::kDouble);
  const auto expect = [&](const std::string& type, std::vector<double> values) {
    const auto scores = ProblemType(type).scores(logits);
    EXPECT_EQ(scores.scalar_type(), torch::kDouble);
    EXPECT_EQ(tensor_mismatch(scores, torch::tensor(values, torch::kDouble), 1e-12, 1e-12), "") << type;
  };
  expect("single_label_classification", {0.25, 0.75});
  expect("multi_label_classification", {0.5, 0.75});
  expect("regression", {0.0, kLn3});
}

// Rows are the true label, columns the prediction (the argmax):
//   true   0 0 1 2 2 2
//   pred   0 1 1 2 0 2
// gives row 0: (1 1 0), row 1: (0 1 0), row 2: (1 0 2). Not symmetric, so a transposed matrix fails.
TEST(ClassificationMetrics, ConfusionMatrixCountsAndCsv) {
  const auto one_hot = [](std::vector<int64_t> pred) {
    return torch::one_hot(torch::tensor(pred, torch::kLong), 3).to(torch::kFloat);
  };
  const auto logits = one_hot({0, 1, 1, 2, 0, 2});
  const auto labels = torch::tensor({0, 0, 1, 2, 2, 2}, torch::kLong);
  trainers::Confusion confusion;
  confusion.add(logits, labels);  // before reset(): nothing to count into
  EXPECT_FALSE(confusion.counts().defined());
  confusion.reset(3);
  confusion.add(logits, labels);
  const auto expected = torch::tensor({{1, 1, 0}, {0, 1, 0}, {1, 0, 2}}, torch::kLong);
  EXPECT_TRUE(torch::equal(confusion.counts(), expected)) << confusion.counts();
  confusion.add(logits, labels);  // counts add up over batches
  EXPECT_TRUE(torch::equal(confusion.counts(), expected * 2)) << confusion.counts();

  TempDir tmp;
  const auto file = tmp.path() / "confusion_matrix.csv";
  confusion.write(file, {{0, "cat"}, {1, "dog"}, {2, "fish"}});
  EXPECT_EQ(slurp(file), "true\\predicted,cat,dog,fish\n"
                         "cat,2,2,0\n"
                         "dog,0,2,0\n"
                         "fish,2,0,4\n");
  confusion.reset(3);
  EXPECT_EQ(confusion.counts().sum().item<int64_t>(), 0);
}

}  // namespace
}  // namespace perceiver::testing

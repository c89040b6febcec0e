// The encoder's cross-attention projects the position channels a preprocessor concatenated once per
// batch (CrossInputs::shared): a batch must give what its examples give one at a time (one example
// takes HF's path unchanged), outputs and parameter gradients alike, for every head whose
// preprocessor concatenates positions.
#include <gtest/gtest.h>

#include "perceiver/io/model_dir.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

void expect_batch_equals_examples(const std::string& fixture, const torch::Tensor& inputs) {
  SCOPED_TRACE(fixture);
  auto model = io::load_pretrained(hf_fixtures_dir() / fixture);
  model->eval();  // no dropout, so that both passes draw nothing
  auto logits = [&](const torch::Tensor& x) { return model->forward_named({{"inputs", x}}, {}).at("logits"); };

  model->zero_grad();
  const auto batched = logits(inputs);
  batched.square().sum().backward();
  const auto batched_grads = parameter_gradients(*model);

  model->zero_grad();
  std::vector<torch::Tensor> rows;
  for (int64_t i = 0; i < inputs.size(0); ++i) {
    rows.push_back(logits(inputs.narrow(0, i, 1)));
    rows.back().square().sum().backward();  // gradients add up over the examples
  }
  EXPECT_EQ(tensor_mismatch(batched.detach(), torch::cat(rows, 0).detach(), 1e-5, 1e-4), "");
  for (const auto& [name, grad] : parameter_gradients(*model)) {
    const double scale = std::max(grad.abs().max().item<double>(), 1.0);
    EXPECT_EQ(tensor_mismatch(batched_grads.at(name), grad, 1e-5 * scale, 1e-4), "") << name;
  }
}

TEST(SharedChannels, ImageHeadsGiveABatchWhatItsExamplesGiveOneAtATime) {
  torch::manual_seed(21);
  expect_batch_equals_examples("PerceiverForImageClassificationFourier", torch::randn({3, 3, 16, 16}));
  expect_batch_equals_examples("PerceiverForImageClassificationLearned", torch::randn({3, 3, 8, 8}));
  expect_batch_equals_examples("PerceiverForImageClassificationConvProcessing", torch::randn({3, 3, 32, 32}));
}

TEST(SharedChannels, OpticalFlowGivesABatchWhatItsExamplesGiveOneAtATime) {
  torch::manual_seed(22);
  expect_batch_equals_examples("PerceiverForOpticalFlow", torch::randn({3, 2, 27, 8, 12}));
}

}  // namespace
}  // namespace perceiver::testing

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

// Without gradients, a cross-attention keeps the shared channels' terms between calls: it must give
// what HF's path (one example, gradients on) gives, on new inputs, after the weights change in place,
// and when the positions change.
TEST(SharedChannels, InferenceReusesThePositionTermsOnlyWhileWeightsAndPositionsStayTheSame) {
  torch::manual_seed(23);
  auto model = io::load_pretrained(hf_fixtures_dir() / "PerceiverForImageClassificationFourier");
  model->eval();
  auto logits = [&](const torch::Tensor& x) { return model->forward_named({{"inputs", x}}, {}).at("logits"); };
  auto expect_hf_path = [&](const torch::Tensor& x, const char* what) {
    SCOPED_TRACE(what);
    const auto reference = logits(x).detach();  // gradients on: HF's path, no cache
    torch::NoGradGuard no_grad;
    EXPECT_EQ(tensor_mismatch(logits(x), reference, 1e-5, 1e-4), "");
    return reference;
  };
  const auto a = torch::randn({1, 3, 16, 16}), b = torch::randn({1, 3, 16, 16});
  expect_hf_path(a, "first call");
  const auto before = expect_hf_path(b, "new input, same positions");
  {
    torch::NoGradGuard no_grad;
    for (auto& item : model->named_parameters()) {
      const auto& name = item.key();
      if (name.find("cross_attention.attention.self.") != std::string::npos &&
          (name.find("key.") != std::string::npos || name.find("layernorm2.") != std::string::npos))
        item.value().add_(0.05);
    }
  }
  const auto after = expect_hf_path(b, "weights changed in place");
  EXPECT_GT((after - before).abs().max().item<double>(), 1e-3);  // the change mattered
  expect_hf_path(torch::randn({1, 3, 12, 12}), "other positions");
}

}  // namespace
}  // namespace perceiver::testing

// The encoder's cross-attention projects the position channels a preprocessor concatenated once per
// batch (WithSharedChannels::shared): whole heads whose preprocessor concatenates positions must give
// what the reference (ReferenceMode, HF's maths) gives, outputs and parameter gradients alike; and
// the terms kept between inference calls must follow every change of the weights and positions.
#include <gtest/gtest.h>

#include <algorithm>

#include "perceiver/models/attention.h"
#include "perceiver/runtime/device.h"
#include "perceiver/models/model_dir.h"
#include "perceiver/models/position_encoding.h"
#include "perceiver/ops/reference_mode.h"
#include "trainers/fused_adamw.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

// A fixture's model in eval mode (no dropout, so that every pass draws nothing) and its logits.
struct EvalModel {
  explicit EvalModel(const std::string& fixture) : model(io::load_pretrained(hf_fixtures_dir() / fixture)) {
    model->eval();
  }
  torch::Tensor logits(const torch::Tensor& x) const { return model->forward_named({{"inputs", x}}, {}).at("logits"); }
  PerceiverPreTrainedModel model;
};

void expect_batch_matches_reference(const std::string& fixture, const torch::Tensor& inputs) {
  SCOPED_TRACE(fixture);
  const EvalModel evaluated(fixture);
  const auto& model = evaluated.model;
  const auto run = [&](bool reference) {
    const ReferenceMode mode(reference);
    model->zero_grad();
    const auto logits = evaluated.logits(inputs);
    logits.square().sum().backward();
    return std::make_pair(logits.detach(), parameter_gradients(*model));
  };
  const auto [logits, grads] = run(false);
  const auto [reference_logits, reference_grads] = run(true);
  EXPECT_EQ(tensor_mismatch(logits, reference_logits, 1e-5, 1e-4), "");
  for (const auto& [name, grad] : reference_grads) {
    const double scale = std::max(grad.abs().max().item<double>(), 1.0);
    EXPECT_EQ(tensor_mismatch(grads.at(name), grad, 1e-5 * scale, 1e-4), "") << name;
  }
}

TEST(SharedChannels, ImageHeadsGiveABatchWhatTheReferenceGives) {
  torch::manual_seed(21);
  expect_batch_matches_reference("PerceiverForImageClassificationFourier", torch::randn({3, 3, 16, 16}));
  expect_batch_matches_reference("PerceiverForImageClassificationLearned", torch::randn({3, 3, 8, 8}));
  expect_batch_matches_reference("PerceiverForImageClassificationConvProcessing", torch::randn({3, 3, 32, 32}));
}

TEST(SharedChannels, OpticalFlowGivesABatchWhatTheReferenceGives) {
  torch::manual_seed(22);
  expect_batch_matches_reference("PerceiverForOpticalFlow", torch::randn({3, 2, 27, 8, 12}));
}

// Without gradients, an attention layer keeps the shared channels' terms between calls: it must give
// what the reference gives, on new inputs, after each group of the weights
// that the terms come from changes in place (the parameters whose names contain all the strings of a
// group of `changed`), and when the positions change.
void expect_cached_terms_follow_weights_and_positions(const std::string& fixture, const std::vector<int64_t>& shape,
                                                      const std::vector<int64_t>& other_shape,
                                                      const std::vector<std::vector<std::string>>& changed) {
  SCOPED_TRACE(fixture);
  torch::manual_seed(23);
  const EvalModel evaluated(fixture);
  const auto& model = evaluated.model;
  auto expect_hf_path = [&](const torch::Tensor& x, const char* what) {
    SCOPED_TRACE(what);
    torch::NoGradGuard no_grad;
    const auto reference = [&] {
      const ReferenceMode hf;
      return evaluated.logits(x);
    }();
    EXPECT_EQ(tensor_mismatch(evaluated.logits(x), reference, 1e-5, 1e-4), "");
    return reference;
  };
  const auto a = torch::randn(shape), b = torch::randn(shape);
  expect_hf_path(a, "first call");
  auto before = expect_hf_path(b, "new input, same positions");
  for (const auto& parts : changed) {  // one group of parameters at a time
    SCOPED_TRACE("changed: " + parts.front());
    {
      torch::NoGradGuard no_grad;
      int64_t count = 0;
      for (auto& item : model->named_parameters()) {
        const auto& name = item.key();
        if (std::all_of(parts.begin(), parts.end(), [&](const std::string& p) { return name.find(p) != std::string::npos; })) {
          item.value().add_(0.05);
          ++count;
        }
      }
      ASSERT_GT(count, 0) << "no parameter matched";
    }
    const auto after = expect_hf_path(b, "weights changed in place");
    EXPECT_GT((after - before).abs().max().item<double>(), 1e-4);  // the change mattered (10x the tolerance)
    before = after;
  }
  expect_hf_path(torch::randn(other_shape), "other positions");
}

TEST(SharedChannels, InferenceReusesThePositionTermsOnlyWhileWeightsAndPositionsStayTheSame) {
  // The encoder's cross-attention inputs.
  expect_cached_terms_follow_weights_and_positions(
      "PerceiverForImageClassificationFourier", {1, 3, 16, 16}, {1, 3, 12, 12},
      {{"cross_attention.attention.self.key."}, {"cross_attention.attention.self.layernorm2."}});
  // The optical-flow decoder's queries (the encoder's inputs): its query projection and layernorm1.
  expect_cached_terms_follow_weights_and_positions(
      "PerceiverForOpticalFlow", {1, 2, 27, 8, 12}, {1, 2, 27, 8, 12},
      {{"decoding_cross_attention.attention.self.query."}, {"decoding_cross_attention.attention.self.layernorm1."}});
}

// The kept terms must notice an optimizer step between two inferences, including FusedAdamW's, which
// writes the weights through raw pointers (as `perceiver train` evaluates between steps).
TEST(SharedChannels, AnOptimizerStepBetweenInferencesIsSeen) {
  torch::manual_seed(26);
  const EvalModel evaluated("PerceiverForImageClassificationFourier");
  const auto& model = evaluated.model;
  const auto x = torch::randn({1, 3, 16, 16});
  torch::Tensor before;
  {
    torch::NoGradGuard no_grad;
    before = evaluated.logits(x);  // the terms are kept from here on
  }
  trainers::FusedAdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-2));
  evaluated.logits(torch::randn({2, 3, 16, 16})).square().sum().backward();
  optimizer.step();
  const auto reference = [&] {  // HF's maths, no kept terms
    const ReferenceMode hf;
    torch::NoGradGuard no_grad;
    return evaluated.logits(x);
  }();
  torch::NoGradGuard no_grad;
  EXPECT_EQ(tensor_mismatch(evaluated.logits(x), reference, 1e-5, 1e-4), "");
  EXPECT_GT((reference - before).abs().max().item<double>(), 1e-4);  // the step mattered
}

// Terms projected under bf16 autocast are bf16-rounded: a float32 inference afterwards must project
// them again.
TEST(SharedChannels, TermsProjectedUnderAutocastAreNotReusedInFloat32) {
  torch::manual_seed(27);
  const EvalModel evaluated("PerceiverForImageClassificationFourier");
  const auto x = torch::randn({1, 3, 16, 16});
  const auto reference = [&] {  // HF's maths, no kept terms
    const ReferenceMode hf;
    torch::NoGradGuard no_grad;
    return evaluated.logits(x);
  }();
  torch::NoGradGuard no_grad;
  {
    const device::AutocastGuard autocast(torch::kCPU, device::Precision::bf16);
    const auto rounded = evaluated.logits(x).to(torch::kFloat32);
    EXPECT_GT((rounded - reference).abs().max().item<double>(), 1e-4);  // bf16 is far from float32 here
  }
  EXPECT_EQ(tensor_mismatch(evaluated.logits(x), reference, 1e-5, 1e-4), "");
}

// The cache holds one tensor per position grid, so a second call's shared channels are the first's
// memory: the terms must still be made again when those positions are changed in place.
TEST(SharedChannels, APositionTensorChangedInPlaceIsProjectedAgain) {
  torch::manual_seed(24);
  PerceiverSelfAttentionOptions o;
  o.is_cross_attention = true;
  o.q_dim = 8;
  o.kv_dim = 10;
  o.qk_channels = o.v_channels = 8;
  PerceiverSelfAttention attention(o);
  const auto latents = torch::randn({1, 4, 8}), x = torch::randn({1, 6, 4});
  auto e = torch::randn({1, 6, 6});
  auto run = [&](bool cached) {
    const ReferenceMode hf(!cached);  // HF's maths, no kept terms
    torch::NoGradGuard no_grad;
    return attention->forward(latents, WithSharedChannels(torch::cat({x, e}, -1), e), {}, false).output.detach();
  };
  EXPECT_EQ(tensor_mismatch(run(true), run(false), 1e-5, 1e-5), "");
  EXPECT_EQ(tensor_mismatch(run(true), run(false), 1e-5, 1e-5), "") << "second call";
  const auto before = run(true);
  {
    torch::NoGradGuard no_grad;
    e.mul_(-2.0);
  }
  const auto after = run(true);
  EXPECT_EQ(tensor_mismatch(after, run(false), 1e-5, 1e-5), "") << "after an in-place change";
  EXPECT_GT((after - before).abs().max().item<double>(), 1e-3);
}

// Under InferenceMode (as `perceiver predict` runs) tensors keep no version: both caches must still
// work there, and a training step after it must be able to save the kept positions for backward.
TEST(SharedChannels, InferenceModeCallsThenATrainingStepWork) {
  torch::manual_seed(25);
  const EvalModel evaluated("PerceiverForImageClassificationFourier");
  const auto x = torch::randn({2, 3, 16, 16});
  torch::Tensor inferred;
  {
    const c10::InferenceMode inference;
    evaluated.logits(x);
    inferred = evaluated.logits(x);
  }
  const auto trained = evaluated.logits(x);
  trained.square().sum().backward();
  EXPECT_EQ(tensor_mismatch(inferred, trained.detach(), 1e-5, 1e-4), "");
}

// The Fourier encoding of the default grid is computed once and handed out again (the same memory,
// so that the cross-attention's cache recognises it) with the values HF's formula gives, for any batch.
TEST(SharedChannels, FourierGridFeaturesAreKeptAndStayRight) {
  FourierPositionEncodingOptions f;
  f.num_bands = 5;
  f.max_resolution = {6, 7};
  f.concat_pos = true;
  const auto encoding = std::make_shared<PerceiverFourierPositionEncodingImpl>(f);
  PositionQuery query;
  query.index_dims = {6, 7};
  query.batch_size = 3;
  const auto first = encoding->forward(query), second = encoding->forward(query);
  EXPECT_TRUE(first.is_alias_of(second));
  const auto pos = build_linear_positions({6, 7}).unsqueeze(0).expand({3, -1, -1});
  EXPECT_TRUE(torch::equal(second, generate_fourier_features(pos, f)));
  query.index_dims = {7, 6};  // another grid: new features
  const auto other = encoding->forward(query);
  EXPECT_FALSE(other.is_alias_of(first));
  EXPECT_TRUE(torch::equal(other, generate_fourier_features(build_linear_positions({7, 6}).unsqueeze(0).expand({3, -1, -1}), f)));
  query.batch_size = 1;
  EXPECT_EQ(encoding->forward(query).sizes(), (std::vector<int64_t>{1, 42, encoding->output_size()}));

  // Kept under InferenceMode, the features can still be saved for backward afterwards (as a
  // projection of the positions does).
  query.index_dims = {5, 5};
  {
    const c10::InferenceMode inference;
    encoding->forward(query);
  }
  const auto projection = torch::randn({3, encoding->output_size()}, torch::requires_grad());
  EXPECT_NO_THROW(torch::nn::functional::linear(encoding->forward(query), projection).sum().backward());
  EXPECT_TRUE(projection.grad().defined());
}

}  // namespace
}  // namespace perceiver::testing

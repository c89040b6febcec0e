// Activation checkpointing must not change what is learned: same loss and gradients, dropout included.
#include <gtest/gtest.h>

#include "perceiver/models/architectures.h"
#include "perceiver/models/encoder.h"
#include "perceiver/models/heads.h"

namespace perceiver::testing {
namespace {

// The text heads that train with a per-position loss: masked LM and token classification.
std::map<std::string, torch::Tensor> loss_and_grads(const std::string& architecture, bool checkpointing,
                                                    double dropout) {
  auto config = PerceiverConfig::from_json({{"d_model", 32},
                                            {"d_latents", 32},
                                            {"num_latents", 8},
                                            {"num_blocks", 2},
                                            {"num_self_attends_per_block", 3},
                                            {"num_self_attention_heads", 4},
                                            {"num_cross_attention_heads", 4},
                                            {"max_position_embeddings", 16},
                                            {"attention_probs_dropout_prob", dropout},
                                            {"id2label", {{"0", "O"}, {"1", "B-X"}, {"2", "I-X"}}},
                                            {"architectures", {architecture}}});
  torch::manual_seed(0);
  auto model = build_model(config);
  set_activation_checkpointing(*model, checkpointing);
  model->train();
  torch::manual_seed(1);
  const auto ids = torch::randint(6, 262, {3, 16}, torch::kLong);
  const auto targets = architecture == "PerceiverForMaskedLM" ? ids : torch::randint(0, 3, {3, 16}, torch::kLong);
  const auto labels = torch::where(torch::rand({3, 16}) < 0.3, targets, torch::full_like(ids, -100));
  torch::manual_seed(2);  // same dropout draws in both runs
  auto out = model->forward_named({{"inputs", ids}, {"labels", labels}}, {});
  out.at("loss").backward();
  std::map<std::string, torch::Tensor> result{{"loss", out.at("loss").detach()}};
  for (const auto& p : model->named_parameters()) result[p.key()] = p.value().grad().clone();
  return result;
}

void expect_same(double dropout) {
  for (const std::string architecture : {"PerceiverForMaskedLM", "PerceiverForTokenClassification"}) {
    SCOPED_TRACE(architecture);
    const auto plain = loss_and_grads(architecture, false, dropout);
    const auto checkpointed = loss_and_grads(architecture, true, dropout);
    ASSERT_EQ(plain.size(), checkpointed.size());
    for (const auto& [name, t] : plain) {
      ASSERT_TRUE(checkpointed.at(name).defined()) << name;
      EXPECT_TRUE(torch::allclose(t, checkpointed.at(name), 1e-5, 1e-6)) << name;
    }
    // The self-attention stack's gradients really are produced (not zero).
    EXPECT_GT(checkpointed.at("perceiver.encoder.self_attends.0.mlp.dense1.weight").abs().sum().item<double>(), 0);
  }
}

TEST(ActivationCheckpointing, SameLossAndGradientsWithoutDropout) { expect_same(0.0); }
TEST(ActivationCheckpointing, SameLossAndGradientsWithDropoutReplayed) { expect_same(0.3); }

}  // namespace
}  // namespace perceiver::testing

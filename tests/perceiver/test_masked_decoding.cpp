// Masked-only decoding (masked_lm_loss / logits_at): the training loss and its gradients equal
// HF's full decode of every position, while the decoder runs on the labelled positions alone.
#include <gtest/gtest.h>

#include "perceiver/models/heads.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

PerceiverForMaskedLM small_mlm() {
  PerceiverConfig c;
  c.d_model = 32;
  c.d_latents = 48;
  c.num_latents = 8;
  c.num_self_attends_per_block = 2;
  c.num_self_attention_heads = 2;
  c.num_cross_attention_heads = 2;
  c.max_position_embeddings = 40;
  c.attention_probs_dropout_prob = 0.0;
  torch::manual_seed(3);
  PerceiverForMaskedLM model(c);
  model->init_weights();
  return model;
}

TEST(MaskedDecoding, LossGradientsAndLogitsEqualTheFullDecode) {
  auto model = small_mlm();
  // Shorter than max_position_embeddings, with padding in one row and rows of different mask counts.
  const int64_t batch = 3, length = 30;
  torch::manual_seed(11);
  const auto ids = torch::randint(6, 262, {batch, length}, torch::kLong);
  auto mask = torch::ones({batch, length}, torch::kLong);
  mask[2].narrow(0, 24, 6).zero_();
  auto labels = torch::where(torch::rand({batch, length}) < 0.2, ids, torch::full_like(ids, -100));
  labels[1].fill_(-100);
  labels[1][5] = ids[1][5];  // one labelled byte in this row

  // The reference: HF's decode of all max_position_embeddings queries, scored on the input's positions.
  model->zero_grad();
  auto full = model->forward(ids, mask);
  full.logits = full.logits.narrow(1, 0, length);
  full.loss = torch::nn::functional::cross_entropy(full.logits.reshape({-1, full.logits.size(-1)}), labels.reshape({-1}));
  full.loss.backward();
  const auto full_grads = parameter_gradients(*model);

  model->zero_grad();
  const auto part = masked_lm_loss(*model, ids, mask, labels);
  part.loss.backward();
  const auto part_grads = parameter_gradients(*model);

  EXPECT_LT(part.logits.size(1), length) << "the decoder should run on fewer queries than positions";
  EXPECT_NEAR(part.loss.item<double>(), full.loss.item<double>(), 1e-6);
  for (const auto& [name, g] : full_grads) EXPECT_EQ(tensor_mismatch(part_grads.at(name), g, 1e-6, 1e-5), "") << name;

  // Every labelled position is decoded once, in order, with the full decode's logits.
  const auto at_positions = full.logits.detach().gather(
      1, part.positions.unsqueeze(-1).expand({-1, -1, full.logits.size(-1)}));
  EXPECT_EQ(tensor_mismatch(part.logits.detach(), at_positions, 1e-6, 1e-5), "");
  EXPECT_TRUE(torch::equal(part.labels, labels.gather(1, part.positions)));
  EXPECT_EQ(part.labels.ne(-100).sum().item<int64_t>(), labels.ne(-100).sum().item<int64_t>());
}

TEST(MaskedDecoding, LabelsOfAnotherShapeAreRefused) {
  auto model = small_mlm();
  const auto ids = torch::randint(6, 262, {2, 10}, torch::kLong);
  const auto msg = error_of([&] { masked_lm_loss(*model, ids, {}, torch::full({2, 9}, -100, torch::kLong)); });
  EXPECT_NE(msg.find("labels must have the inputs' shape"), std::string::npos) << msg;
}

}  // namespace
}  // namespace perceiver::testing

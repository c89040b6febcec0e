// PerceiverForTokenClassification (perceiver/models/heads.h), the head transformers lacks: one row of logits
// per input position, the loss over labelled positions only, both file formats, and a masked-LM
// checkpoint giving it every tensor but the classifier. Its parity with the Python class on
// transformers' modules, export (TorchScript, Triton), `perceiver infer` and bf16 run over the fixture
// tests/fixtures/hf_modules/PerceiverForTokenClassification with every other head's fixture (test_parity,
// test_export, test_export_triton, test_bf16_heads); activation checkpointing in
// test_activation_checkpointing.
#include <gtest/gtest.h>

#include <set>

#include "perceiver/models/architectures.h"
#include "perceiver/models/heads.h"
#include "perceiver/models/model_dir.h"
#include "perceiver/io/safetensors.h"
#include "tests/perceiver/parity_support.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMaxPositions = 32, kLabels = 5;

PerceiverConfig small_config() {
  return PerceiverConfig::from_json({{"d_model", 32},
                                     {"d_latents", 48},
                                     {"num_latents", 8},
                                     {"num_self_attends_per_block", 2},
                                     {"num_self_attention_heads", 4},
                                     {"num_cross_attention_heads", 4},
                                     {"max_position_embeddings", kMaxPositions},
                                     {"id2label",
                                      {{"0", "O"}, {"1", "B-PER"}, {"2", "I-PER"}, {"3", "B-LOC"}, {"4", "I-LOC"}}},
                                     {"architectures", {"PerceiverForTokenClassification"}}});
}

std::shared_ptr<PerceiverForTokenClassificationImpl> small_model(uint64_t seed = 0) {
  torch::manual_seed(seed);
  auto model = std::dynamic_pointer_cast<PerceiverForTokenClassificationImpl>(build_model(small_config()));
  EXPECT_TRUE(model) << "the registry built another class";
  // Seeded noise, so that no weight is the initialiser's 0 or 1.
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.05);
  model->eval();
  return model;
}

struct Batch {
  torch::Tensor ids, mask, labels;
};

// Byte ids with the second row padded from `padded_from`; labels in [0, kLabels) with -100 at the
// first position, about a fifth of the others and the padding.
Batch batch(int64_t rows, int64_t seq_len, int64_t padded_from, uint64_t seed) {
  torch::manual_seed(seed);
  Batch b;
  b.ids = torch::randint(6, 262, {rows, seq_len}, torch::kLong);
  b.mask = torch::ones({rows, seq_len}, torch::kLong);
  b.labels = torch::randint(0, kLabels, {rows, seq_len}, torch::kLong);
  b.labels.masked_fill_(torch::rand({rows, seq_len}) < 0.2, -100);
  b.labels.select(1, 0).fill_(-100);
  if (rows > 1 && padded_from < seq_len) {
    b.ids[1].narrow(0, padded_from, seq_len - padded_from).fill_(0);
    b.mask[1].narrow(0, padded_from, seq_len - padded_from).fill_(0);
    b.labels[1].narrow(0, padded_from, seq_len - padded_from).fill_(-100);
  }
  return b;
}

TEST(TokenClassification, LogitsHaveOneRowPerInputPositionEqualToTheFullDecoding) {
  auto model = small_model();
  torch::NoGradGuard no_grad;
  for (const int64_t seq_len : {int64_t{1}, int64_t{20}, kMaxPositions}) {
    SCOPED_TRACE("seq_len " + std::to_string(seq_len));
    const auto b = batch(2, seq_len, seq_len / 2, 1);
    const auto out = model->forward(b.ids, b.mask);
    ASSERT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, seq_len, kLabels}));
    EXPECT_FALSE(out.loss.defined());
    // What PR #15103's head computes: every decoder query, then the classifier; its first seq_len rows.
    const auto all = model->perceiver->forward(b.ids, b.mask).logits.tensor;
    ASSERT_EQ(all.sizes(), (std::vector<int64_t>{2, kMaxPositions, 32}));
    const auto want = model->classifier->forward(all).narrow(1, 0, seq_len);
    EXPECT_EQ(tensor_mismatch(out.logits, want, 1e-6, 1e-5), "");
    // output_attentions decodes every query, so that the decoder's cross-attention keeps HF's shape.
    ForwardOptions options;
    options.output_attentions = options.output_hidden_states = true;
    const auto with = model->forward(b.ids, b.mask, {}, options);
    EXPECT_EQ(tensor_mismatch(with.logits, out.logits, 1e-6, 1e-5), "");
    ASSERT_EQ(with.cross_attentions.size(), 2u);
    EXPECT_EQ(with.cross_attentions[1].sizes(), (std::vector<int64_t>{2, 8, kMaxPositions, 8}));
    EXPECT_EQ(with.hidden_states.size(), 3u);
  }
  // HF's names: `input_ids` is `inputs`; the outputs are loss and logits.
  const auto b = batch(2, 9, 5, 2);
  const auto named = model->forward_named({{"input_ids", b.ids}, {"attention_mask", b.mask}, {"labels", b.labels}}, {});
  EXPECT_EQ(named.size(), 2u);
  EXPECT_EQ(named.at("logits").sizes(), (std::vector<int64_t>{2, 9, kLabels}));
  EXPECT_EQ(named.at("loss").dim(), 0);
  const auto unknown = error_of([&] { model->forward_named({{"inputs", b.ids}, {"pixel_values", b.ids}}, {}); });
  EXPECT_NE(unknown.find("pixel_values"), std::string::npos) << unknown;
  EXPECT_NE(error_of([&] { model->forward(torch::zeros({2, kMaxPositions + 1}, torch::kLong)); })
                .find("max_position_embeddings"),
            std::string::npos);
}

// The loss computed here without cross_entropy's ignore_index: -log_softmax at the label, averaged over
// the positions whose label is not -100.
TEST(TokenClassification, LossIsTheMeanCrossEntropyOverLabelledPositions) {
  auto model = small_model(3);
  const auto b = batch(3, 24, 15, 4);
  torch::NoGradGuard no_grad;
  const auto out = model->forward(b.ids, b.mask, b.labels);
  ASSERT_TRUE(out.loss.defined());
  const auto labelled = b.labels.ne(-100);
  ASSERT_GT(labelled.sum().item<int64_t>(), 10);
  ASSERT_GT(labelled.logical_not().sum().item<int64_t>(), 10);
  const auto log_probs = torch::log_softmax(out.logits.to(torch::kDouble), -1);
  const auto picked = log_probs.gather(-1, b.labels.clamp_min(0).unsqueeze(-1)).squeeze(-1);
  const double want = -picked.masked_select(labelled).mean().item<double>();
  EXPECT_NEAR(out.loss.item<double>(), want, 1e-6 * std::max(1.0, std::abs(want)));
  // torch's cross_entropy over the labelled rows alone agrees.
  const auto rows = labelled.reshape({-1}).nonzero().squeeze(1);
  const auto selected = torch::nn::functional::cross_entropy(out.logits.reshape({-1, kLabels}).index_select(0, rows),
                                                             b.labels.reshape({-1}).index_select(0, rows));
  EXPECT_NEAR(out.loss.item<double>(), selected.item<double>(), 1e-6);
  // The attention mask plays no part (PR #15103's head also dropped attention_mask == 0 positions).
  auto labelled_padding = b.labels.clone();
  labelled_padding[1].narrow(0, 15, 9).fill_(2);
  const auto with_padding = model->forward(b.ids, b.mask, labelled_padding).loss;
  const auto rows2 = labelled_padding.ne(-100).reshape({-1}).nonzero().squeeze(1);
  EXPECT_NEAR(with_padding.item<double>(),
              torch::nn::functional::cross_entropy(out.logits.reshape({-1, kLabels}).index_select(0, rows2),
                                                   labelled_padding.reshape({-1}).index_select(0, rows2))
                  .item<double>(),
              1e-6);
}

TEST(TokenClassification, UnlabelledPositionsNeitherChangeTheLossNorGetGradients) {
  const auto b = batch(2, 16, 10, 5);
  const auto unlabelled = b.labels.eq(-100).unsqueeze(-1).expand({-1, -1, kLabels});
  // The loss function: logits at -100 positions changed, by a lot, give the very same loss.
  const auto logits = torch::randn({2, 16, kLabels});
  const auto changed = torch::where(unlabelled, logits * 100 + 7, logits);
  EXPECT_EQ(token_classification_loss(logits, b.labels).item<float>(),
            token_classification_loss(changed, b.labels).item<float>());
  // Through the model: the loss's gradient with respect to the logits is zero exactly there, not elsewhere.
  auto model = small_model(6);
  model->train();
  auto out = model->forward(b.ids, b.mask, b.labels);
  out.logits.retain_grad();
  out.loss.backward();
  const auto grad = out.logits.grad();
  ASSERT_TRUE(grad.defined());
  EXPECT_EQ(grad.masked_select(unlabelled).abs().max().item<float>(), 0.0f);
  EXPECT_GT(grad.masked_select(unlabelled.logical_not()).abs().min().item<float>(), 0.0f);
  EXPECT_GT(model->classifier->weight.grad().abs().sum().item<float>(), 0.0f);
}

TEST(TokenClassification, LabelsOfAnotherShapeOrTypeAreClearErrors) {
  auto model = small_model();
  const auto b = batch(2, 20, 20, 7);
  const auto padded = torch::zeros({2, kMaxPositions}, torch::kLong);  // PR #15103's layout
  const auto message = error_of([&] { model->forward(b.ids, b.mask, padded); });
  EXPECT_NE(message.find("labels must have shape (batch, seq_len) = (2, 20)"), std::string::npos) << message;
  EXPECT_NE(message.find("[2, 32]"), std::string::npos) << message;
  const auto floats = error_of([&] { model->forward(b.ids, b.mask, b.labels.to(torch::kFloat)); });
  EXPECT_NE(floats.find("integer labels"), std::string::npos) << floats;
}

// save_pretrained's model.safetensors, and a pytorch_model.bin written by Python's torch.save (as
// transformers' save_pretrained(safe_serialization=False) writes it): the same tensors, label names
// and outputs.
TEST(TokenClassification, SavedModelLoadsBackFromSafetensorsAndPytorchBin) {
  auto model = small_model(8);
  TempDir tmp;
  const auto saved = tmp.path() / "saved";
  io::save_pretrained(*model, saved);
  const auto b = batch(2, 12, 7, 9);
  NamedTensors inputs{{"inputs", b.ids}, {"attention_mask", b.mask}, {"labels", b.labels}};
  NamedTensors want;
  {
    torch::NoGradGuard no_grad;
    want = model->forward_named(inputs, {});
  }
  const auto config = nlohmann::json::parse(slurp(saved / "config.json"));
  EXPECT_EQ(config.at("architectures"), nlohmann::json({"PerceiverForTokenClassification"}));
  EXPECT_EQ(config.at("id2label").at("3"), "B-LOC");
  EXPECT_EQ(config.at("label2id").at("I-PER"), 2);

  const auto bin = tmp.path() / "bin";
  fs::create_directories(bin);
  fs::copy_file(saved / "config.json", bin / "config.json");
  const auto script = "import sys, torch; sys.path.insert(0, sys.argv[1]); from export_check import read_safetensors; "
                      "torch.save(read_safetensors(sys.argv[2]), sys.argv[3])";
  const auto r = run_command("/usr/bin/python3 -B -c '" + std::string(script) + "' '" + PERCEIVER_SOURCE_DIR +
                             "/tests/perceiver' '" + (saved / "model.safetensors").string() + "' '" +
                             (bin / "pytorch_model.bin").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_FALSE(fs::exists(bin / "model.safetensors"));

  const auto original = io::state_dict(*model);
  for (const auto& dir : {saved, bin}) {
    SCOPED_TRACE(io::weights_file(dir).filename().string());
    auto reloaded = io::load_pretrained(dir);  // strict: every name and shape
    EXPECT_EQ(reloaded->architecture(), "PerceiverForTokenClassification");
    EXPECT_EQ(reloaded->config().id2label, model->config().id2label);
    const auto tensors = io::state_dict(*reloaded);
    ASSERT_EQ(tensors.size(), original.size());
    for (const auto& [name, t] : original) EXPECT_TRUE(torch::equal(tensors.at(name), t)) << name;
    reloaded->eval();
    torch::NoGradGuard no_grad;
    EXPECT_EQ(compare_outputs(want, reloaded->forward_named(inputs, {}), 0, 0), "");
  }
}

std::set<std::string> keys_of(const std::map<std::string, torch::Tensor>& tensors) {
  std::set<std::string> out;
  for (const auto& [name, t] : tensors) out.insert(name);
  return out;
}

// Fine-tuning from a masked-LM checkpoint: every tensor of the token classifier but `classifier.*` is
// the masked-LM head's, by name and shape, and is taken; only the MLM's output bias is left over.
void expect_takes_every_shared_tensor(const std::map<std::string, torch::Tensor>& mlm, PerceiverConfig config) {
  config.architectures = {"PerceiverForTokenClassification"};
  config.set_num_labels(9);
  torch::manual_seed(11);
  auto model = build_model(config);
  const auto report = io::load_weights(*model, mlm, /*strict=*/false, "masked-LM weights");
  EXPECT_EQ(report.missing, (std::vector<std::string>{"classifier.bias", "classifier.weight"}));
  EXPECT_EQ(report.unexpected, std::vector<std::string>{"embedding_decoder.bias"});
  EXPECT_TRUE(report.mismatched.empty()) << report.summary();
  EXPECT_EQ(report.loaded.size(), mlm.size() - 1);
  const auto tensors = io::state_dict(*model);
  auto expected_keys = keys_of(mlm);
  expected_keys.erase("embedding_decoder.bias");
  expected_keys.insert({"classifier.weight", "classifier.bias"});
  EXPECT_EQ(keys_of(tensors), expected_keys);
  for (const auto& name : report.loaded) EXPECT_TRUE(torch::equal(tensors.at(name), mlm.at(name))) << name;
  EXPECT_EQ(tensors.at("classifier.weight").sizes(), (std::vector<int64_t>{9, config.d_model}));
  EXPECT_EQ(tensors.at("classifier.bias").abs().max().item<float>(), 0.0f);  // HF's initialisation
  EXPECT_GT(tensors.at("classifier.weight").std().item<float>(), 0.5 * config.initializer_range);
}

TEST(TokenClassification, MaskedLmCheckpointGivesEveryTensorButTheClassifier) {
  {
    SCOPED_TRACE("HF's PerceiverForMaskedLM fixture (deepmind/language-perceiver's names)");
    const auto dir = hf_fixtures_dir() / "PerceiverForMaskedLM";
    expect_takes_every_shared_tensor(io::load_safetensors(dir / "model.safetensors"),
                                     PerceiverConfig::from_json_file(dir / "config.json"));
  }
  {
    SCOPED_TRACE("a masked LM built and saved here");
    auto config = small_config();
    config.architectures = {"PerceiverForMaskedLM"};
    const auto mlm = build_model(config);
    TempDir tmp;
    io::save_pretrained(*mlm, tmp.path());
    expect_takes_every_shared_tensor(io::load_safetensors(tmp.path() / "model.safetensors"), mlm->config());
  }
}

// config.json's concat_preprocessed_input: the decoder queries are [byte embedding, position encoding],
// 2 x d_model wide, with a query residual. A text shorter than max_position_embeddings decodes as the
// first rows of the same text padded to that length (what the Python twin computes), and the key must
// be a boolean. Parity with the Python class: the fixture PerceiverForTokenClassificationConcatInput.
TEST(TokenClassification, ConcatenatedInputQueriesAreTwiceAsWideAndShortTextsDecodeAsPaddedOnes) {
  auto config = small_config();
  config.extra["concat_preprocessed_input"] = true;
  torch::manual_seed(5);
  auto model = std::dynamic_pointer_cast<PerceiverForTokenClassificationImpl>(build_model(config));
  ASSERT_TRUE(model);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.05);
  }
  model->eval();
  const auto tensors = io::state_dict(*model);
  const std::string cross = "perceiver.decoder.decoding_cross_attention.";
  EXPECT_EQ(tensors.at(cross + "attention.self.query.weight").sizes(), (std::vector<int64_t>{256, 64}));
  EXPECT_EQ(tensors.at(cross + "attention.self.value.weight").sizes(), (std::vector<int64_t>{64, 48}));
  EXPECT_EQ(tensors.at(cross + "attention.output.dense.weight").sizes(), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(tensors.at("classifier.weight").sizes(), (std::vector<int64_t>{kLabels, 64}));
  EXPECT_EQ(keys_of(tensors), keys_of(io::state_dict(*small_model())));  // the same names, other widths
  EXPECT_TRUE(model->perceiver->decoder()->as<PerceiverBasicDecoderImpl>()->options().use_query_residual);

  torch::NoGradGuard no_grad;
  const int64_t seq_len = 20;
  const auto b = batch(2, seq_len, 12, 3);
  const auto pad = kMaxPositions - seq_len;
  namespace F = torch::nn::functional;
  const auto padded_ids = F::pad(b.ids, F::PadFuncOptions({0, pad}));
  const auto padded_mask = F::pad(b.mask, F::PadFuncOptions({0, pad}));
  const auto short_out = model->forward(b.ids, b.mask, b.labels);
  const auto long_out = model->forward(padded_ids, padded_mask);
  ASSERT_EQ(short_out.logits.sizes(), (std::vector<int64_t>{2, seq_len, kLabels}));
  EXPECT_EQ(tensor_mismatch(short_out.logits, long_out.logits.narrow(1, 0, seq_len), 1e-5, 1e-5), "");
  EXPECT_TRUE(short_out.loss.defined());
  // The byte at a position reaches its own row through the query, not only through the latents: with
  // the latents' view of the text unchanged (the byte masked out of the encoder), its row still moves.
  auto other_ids = b.ids.clone(), mask = b.mask.clone();
  mask[0][7] = 0;
  other_ids[0][7] = b.ids[0][7].item<int64_t>() == 100 ? 101 : 100;
  const auto before = model->forward(b.ids, mask).logits, after = model->forward(other_ids, mask).logits;
  EXPECT_GT((before[0][7] - after[0][7]).abs().max().item<float>(), 1e-4);
  EXPECT_EQ(tensor_mismatch(before.narrow(1, 8, seq_len - 8), after.narrow(1, 8, seq_len - 8), 1e-6, 1e-6), "");

  auto bad = small_config();
  bad.extra["concat_preprocessed_input"] = "yes";
  const auto error = error_of([&] { build_model(bad); });
  EXPECT_NE(error.find("concat_preprocessed_input"), std::string::npos) << error;
  auto off = small_config();
  off.extra["concat_preprocessed_input"] = false;
  torch::manual_seed(0);
  const auto plain = io::state_dict(*build_model(off));
  EXPECT_EQ(plain.at("classifier.weight").sizes(), (std::vector<int64_t>{kLabels, 32}));
}

// The fixture the parity, export, Triton and bf16 tests share is in the list they iterate over.
TEST(TokenClassification, FixtureJoinsTheHeadsEveryPerHeadTestRuns) {
  bool found = false;
  for (const auto& fixture : model_fixtures()) found |= fixture.name == "PerceiverForTokenClassification";
  EXPECT_TRUE(found) << "no PerceiverForTokenClassification fixture under " << hf_modules_fixtures_dir();
  const auto inputs = io::load_safetensors(hf_modules_fixtures_dir() / "PerceiverForTokenClassification" /
                                           "inputs.safetensors");
  // Shorter than max_position_embeddings (32), with padding and -100 labels: the cases that differ
  // from PR #15103's head.
  EXPECT_LT(inputs.at("inputs").size(1), 32);
  EXPECT_GT(inputs.at("attention_mask").eq(0).sum().item<int64_t>(), 0);
  EXPECT_GT(inputs.at("labels").eq(-100).sum().item<int64_t>(), 0);
}

}  // namespace
}  // namespace perceiver::testing

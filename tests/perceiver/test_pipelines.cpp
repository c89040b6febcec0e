// The library's pipelines (fill-mask, text and image classification) and `perceiver predict` on
// image files, checked against the model run directly.
#include <gtest/gtest.h>

#include "perceiver/io/model_dir.h"
#include "perceiver/pipelines.h"
#include "perceiver/tokenizer.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

TEST(Pipelines, FillMaskTakesTheArgmaxAtEveryMaskedPosition) {
  const auto dir = hf_fixtures_dir() / "PerceiverForMaskedLM";
  auto model = io::load_pretrained(dir);
  const std::string text = "a [MASK]b[MASK]";
  const auto fills = fill_mask(*model, {text});
  ASSERT_EQ(fills.size(), 1u);
  // Independent: the model's logits at the two [MASK] ids of the encoded text.
  const PerceiverTokenizer tok;
  const auto enc = to_model_inputs(tok.batch_encode({text}));
  torch::NoGradGuard no_grad;
  model->eval();
  const auto logits = model->forward_named({{"inputs", enc.input_ids}, {"attention_mask", enc.attention_mask}}, {}).at("logits");
  std::vector<int64_t> predicted;
  for (int64_t i = 0; i < enc.input_ids.size(1); ++i)
    if (enc.input_ids[0][i].item<int64_t>() == PerceiverTokenizer::mask_token_id)
      predicted.push_back(logits[0][i].argmax().item<int64_t>());
  ASSERT_EQ(predicted.size(), 2u);
  EXPECT_EQ(fills[0].predicted, tok.decode(predicted, false));
  EXPECT_EQ(fills[0].text, text);
  const auto wrong = error_of([&] { classify_texts(*model, {"x"}); });
  EXPECT_NE(wrong.find("PerceiverForSequenceClassification"), std::string::npos) << wrong;
}

#if PERCEIVER_WITH_OPENCV
TEST(Pipelines, ImageClassificationMatchesTheModelAndPredictPrintsIt) {
  const auto dir = hf_fixtures_dir() / "PerceiverForImageClassificationLearned";
  auto model = io::load_pretrained(dir);
  const std::vector<fs::path> images = {hf_fixtures_dir() / "image_processor" / "gradient_300x400.png",
                                        hf_fixtures_dir() / "image_processor" / "checker_256x256.png"};
  const auto processor = image_processor_for(*model, dir);
  // The learned head's positions fix its input size: the processor resizes to config.image_size.
  EXPECT_EQ(processor.options().size.height, model->config().image_size);
  const auto answers = classify_images(*model, processor, images);
  ASSERT_EQ(answers.size(), images.size());
  torch::NoGradGuard no_grad;
  const auto probs =
      torch::softmax(model->forward_named({{"inputs", processor.preprocess_files(images)}}, {}).at("logits"), -1);
  for (size_t i = 0; i < images.size(); ++i) {
    ASSERT_EQ(answers[i].scores.size(), static_cast<size_t>(probs.size(1)));
    for (int64_t j = 0; j < probs.size(1); ++j)
      EXPECT_NEAR(answers[i].scores[static_cast<size_t>(j)].score, probs[static_cast<int64_t>(i)][j].item<double>(), 1e-6);
    EXPECT_EQ(answers[i].labels,
              std::vector<std::string>{model->config().id2label.at(probs[static_cast<int64_t>(i)].argmax().item<int64_t>())});
  }

  const auto r = run_cli("predict --model '" + dir.string() + "' '" + images[0].string() + "' '" + images[1].string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto printed = nlohmann::json::parse(r.out);
  ASSERT_EQ(printed.size(), images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    EXPECT_EQ(printed[i].at("image"), images[i].string());
    EXPECT_EQ(printed[i].at("label"), answers[i].labels.front());
    EXPECT_NEAR(printed[i].at("scores").at(answers[i].labels.front()).get<double>(),
                answers[i].scores[static_cast<size_t>(probs[static_cast<int64_t>(i)].argmax().item<int64_t>())].score, 1e-9);
  }
}

TEST(Pipelines, PredictOnAnUnreadableImageFailsWithOneLineNamingIt) {
  TempDir tmp;
  write_file(tmp.path() / "not_an_image.png", "plain text");
  const auto dir = hf_fixtures_dir() / "PerceiverForImageClassificationLearned";
  const auto r = run_cli("predict --model '" + dir.string() + "' '" + (tmp.path() / "not_an_image.png").string() + "'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("not_an_image.png"), std::string::npos) << r.err;
}

#endif  // PERCEIVER_WITH_OPENCV

}  // namespace
}  // namespace perceiver::testing

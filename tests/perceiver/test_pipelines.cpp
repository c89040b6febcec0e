// The library's pipelines (fill-mask, text and image classification, tiled optical flow, the flow
// colour wheel, multimodal reconstruction) on ModelRunners of the HF fixtures, checked against the
// model run directly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <set>

#include "perceiver/pipelines/open_model.h"
#include "perceiver/processing/flow_input.h"
#include "perceiver/models/model_dir.h"
#include "perceiver/pipelines/pipelines.h"
#include "perceiver/processing/tokenizer.h"
#include "tests/test_support.h"

#if PERCEIVER_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#endif

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

// The fixture's model directory copied to `dir`, its config.json changed by `edit`.
fs::path copy_fixture(const std::string& name, const fs::path& dir,
                      const std::function<void(nlohmann::json&)>& edit = nullptr) {
  fs::create_directories(dir);
  for (const char* file : {"config.json", "model.safetensors"}) fs::copy_file(hf_fixtures_dir() / name / file, dir / file);
  if (edit) {
    auto config = nlohmann::json::parse(slurp(dir / "config.json"));
    edit(config);
    write_file(dir / "config.json", config.dump());
  }
  return dir;
}

torch::Tensor forward_logits(const fs::path& dir, const NamedTensors& inputs, const std::string& name = "logits") {
  auto model = io::load_pretrained(dir);
  model->eval();
  torch::NoGradGuard no_grad;
  return model->forward_named(inputs, {}).at(name);
}

TEST(Pipelines, FillMaskAnswersEverySpanAsTheModelScoresIt) {
  const auto dir = hf_fixtures_dir() / "PerceiverForMaskedLM";
  const std::string text = "a [MASK]b[MASK][MASK]";
  const auto runner = open_model(dir);
  const int64_t k = 4;
  const auto fills = fill_mask(*runner, {text, "longer text [MASK]"}, {k, /*batch_size=*/2});
  ASSERT_EQ(fills.size(), 2u);
  const auto& fill = fills[0];

  // Independent: the model's logits for the text alone, and the spans found by hand.
  const PerceiverTokenizer tok;
  const auto enc = to_model_inputs(tok.batch_encode({text}));
  const auto logits = forward_logits(dir, {{"inputs", enc.input_ids}, {"attention_mask", enc.attention_mask}})[0];
  const int64_t length = enc.input_ids.size(1);
  EXPECT_EQ(tensor_mismatch(fill.logits, logits.narrow(0, 0, length)), "");
  const auto probs = torch::softmax(logits.to(torch::kDouble), -1);
  std::vector<int64_t> masks;
  for (int64_t i = 0; i < length; ++i)
    if (enc.input_ids[0][i].item<int64_t>() == PerceiverTokenizer::mask_token_id) masks.push_back(i);
  ASSERT_EQ(masks.size(), 3u);
  ASSERT_EQ(fill.spans.size(), 2u);
  EXPECT_EQ(fill.spans[0].start, masks[0]);
  EXPECT_EQ(fill.spans[0].length, 1);
  EXPECT_EQ(fill.spans[1].start, masks[1]);
  EXPECT_EQ(fill.spans[1].length, 2);

  // Each [MASK]: HF's answer, the k best tokens by probability.
  std::vector<int64_t> argmax;
  size_t m = 0;
  for (const auto& span : fill.spans)
    for (const auto& position : span.positions) {
      const auto [values, ids] = probs[masks[m++]].topk(k);
      ASSERT_EQ(position.size(), static_cast<size_t>(k));
      for (int64_t j = 0; j < k; ++j) {
        EXPECT_EQ(position[static_cast<size_t>(j)].token, ids[j].item<int64_t>());
        EXPECT_NEAR(position[static_cast<size_t>(j)].score, values[j].item<double>(), 1e-6);
      }
      argmax.push_back(ids[0].item<int64_t>());
    }
  EXPECT_EQ(fill.predicted, tok.decode(argmax, false));

  // The two-byte span: its k best byte pairs by the product of probabilities, by brute force.
  const auto joint = (probs[masks[1]].unsqueeze(1) * probs[masks[2]].unsqueeze(0)).flatten();
  const auto [best, flat] = joint.topk(k);
  const int64_t vocab = probs.size(1);
  const auto& pairs = fill.spans[1].top_k;
  ASSERT_EQ(pairs.size(), static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) {
    const int64_t id = flat[j].item<int64_t>();
    EXPECT_EQ(pairs[static_cast<size_t>(j)].tokens, (std::vector<int64_t>{id / vocab, id % vocab}));
    EXPECT_NEAR(pairs[static_cast<size_t>(j)].score, best[j].item<double>(), 1e-6);
    EXPECT_EQ(pairs[static_cast<size_t>(j)].text, tok.decode({id / vocab, id % vocab}, false));
  }
  // The span's sequence fills that span only; `filled` fills every [MASK] with its best byte.
  EXPECT_EQ(pairs[0].sequence, "a [MASK]b" + tok.decode(pairs[0].tokens, false));
  EXPECT_EQ(fills[1].text, "longer text [MASK]");

  // Batched with a longer text (padding) or alone: the same logits.
  const auto alone = fill_mask(*runner, {text}, {k, 1});
  EXPECT_EQ(tensor_mismatch(alone[0].logits, fill.logits), "");
}

TEST(Pipelines, FillMaskRefusesATextWithoutMaskAndOtherHeads) {
  const auto runner = open_model(hf_fixtures_dir() / "PerceiverForMaskedLM");
  const auto none = error_of([&] { fill_mask(*runner, {"a [MASK]", "no mask here"}); });
  EXPECT_NE(none.find("'no mask here' has no [MASK]"), std::string::npos) << none;
  const auto late = error_of([&] { fill_mask(*runner, {std::string(40, 'x') + "[MASK]"}); });
  EXPECT_NE(late.find("within the model's 32 positions"), std::string::npos) << late;
  const auto wrong = error_of([&] { classify_texts(*runner, {"x"}); });
  EXPECT_NE(wrong.find("PerceiverForSequenceClassification"), std::string::npos) << wrong;
}

// A masked LM that always predicts the byte 'e', and remembers what it was given.
class PredictsE : public ModelRunner {
 public:
  explicit PredictsE(int64_t positions) { config_.max_position_embeddings = positions; }
  const PerceiverConfig& config() const override { return config_; }
  std::string architecture() const override { return "PerceiverForMaskedLM"; }
  const fs::path& source() const override { return source_; }
  NamedTensors forward(const NamedTensors& inputs) override {
    const auto& ids = inputs.at("inputs");
    seen.push_back(ids.clone());
    auto logits = torch::zeros({ids.size(0), config_.max_position_embeddings, PerceiverTokenizer::num_ids});
    logits.select(2, 'e' + PerceiverTokenizer::num_special_tokens).fill_(10);
    return {{"logits", logits}};
  }
  std::vector<torch::Tensor> seen;

 private:
  PerceiverConfig config_;
  fs::path source_ = "predicts-e";
};

TEST(Pipelines, WordFillInMasksOneWholeWordPerDocumentAndCountsTheBytesRight) {
  PredictsE runner(32);  // 30 bytes of text fit
  const std::vector<std::string> docs = {"a bc de",  // no word of 4 letters: the next document stands in
                                         "The seven sheep slept here.", "no", "peel",
                                         "abc defg, hijk and lmnopqrstuvwxyz"};  // the last word does not fit
  SpanFillOptions options;
  options.count = 3;
  const auto report = fill_word_spans(runner, docs, options);
  ASSERT_EQ(report.examples.size(), 3u);
  // Starts spread evenly (0, 1, 3), each moving on to the next document with a word of 4+ letters.
  EXPECT_EQ(report.examples[0].document, 1);
  EXPECT_EQ(report.examples[1].document, 3);
  EXPECT_EQ(report.examples[2].document, 4);
  int64_t bytes = 0, correct = 0, exact = 0;
  for (const auto& e : report.examples) {
    const auto& doc = docs[static_cast<size_t>(e.document)];
    ASSERT_GE(e.truth.size(), 4u);
    const auto at = e.masked.find(std::string(e.truth.size(), '_'));
    ASSERT_NE(at, std::string::npos) << e.masked;
    const auto cut = doc.substr(0, 30);
    EXPECT_EQ(e.masked.substr(0, at) + e.truth + e.masked.substr(at + e.truth.size()), cut);
    const auto end = at + e.truth.size();  // a whole word of the document, not one cut at 30 bytes
    EXPECT_TRUE(end == doc.size() || !std::isalpha(static_cast<unsigned char>(doc[end]))) << e.truth;
    EXPECT_EQ(e.predicted, std::string(e.truth.size(), 'e'));
    EXPECT_EQ(e.bytes_correct, std::count(e.truth.begin(), e.truth.end(), 'e')) << e.truth;
    bytes += static_cast<int64_t>(e.truth.size());
    correct += e.bytes_correct;
    exact += e.bytes_correct == static_cast<int64_t>(e.truth.size());
    EXPECT_NE(describe(e).find(std::to_string(e.bytes_correct) + "/" + std::to_string(e.truth.size()) + " bytes"),
              std::string::npos);
  }
  EXPECT_EQ(report.bytes, bytes);
  EXPECT_EQ(report.bytes_correct, correct);
  EXPECT_EQ(report.words_correct, exact);
  // The model saw each word as one [MASK] per byte, the rest of the text as it is.
  ASSERT_EQ(runner.seen.size(), 1u);
  const auto& ids = runner.seen[0];
  for (size_t i = 0; i < report.examples.size(); ++i)
    EXPECT_EQ(ids[static_cast<int64_t>(i)].eq(PerceiverTokenizer::mask_token_id).sum().item<int64_t>(),
              static_cast<int64_t>(report.examples[i].truth.size()));
  // The same documents and seed give the same words.
  EXPECT_EQ(fill_word_spans(runner, docs, options).examples[2].truth, report.examples[2].truth);
}

// A masked LM whose logits at each position follow a rule on the byte before it (what a byte is
// depends on the one before, as in text); counts its passes.
class ByteRuleModel : public ModelRunner {
 public:
  explicit ByteRuleModel(fs::path source) : source_(std::move(source)) { config_.max_position_embeddings = 16; }
  const PerceiverConfig& config() const override { return config_; }
  std::string architecture() const override { return "PerceiverForMaskedLM"; }
  const fs::path& source() const override { return source_; }
  NamedTensors forward(const NamedTensors& inputs) override {
    const auto& ids = inputs.at("inputs");
    ++passes;
    auto logits = torch::full({ids.size(0), config_.max_position_embeddings, PerceiverTokenizer::num_ids}, floor());
    for (int64_t b = 0; b < ids.size(0); ++b)
      for (int64_t p = 1; p < ids.size(1); ++p) after(ids[b][p - 1].item<int64_t>(), logits[b][p]);
    return {{"logits", logits}};
  }
  int passes = 0;

 protected:
  static int64_t byte(char c) { return static_cast<int64_t>(c) + PerceiverTokenizer::num_special_tokens; }
  virtual double floor() const { return 0; }  // the logit of every byte the rule does not name
  // Sets the logits of the position after one holding `before`.
  virtual void after(int64_t before, torch::Tensor logits) const = 0;

 private:
  PerceiverConfig config_;
  fs::path source_;
};

// Certain of "q" after [CLS]; "u" after a "q"; elsewhere "z", weakly.
class KnowsQu : public ByteRuleModel {
 public:
  KnowsQu() : ByteRuleModel("knows-qu") {}

 protected:
  void after(int64_t before, torch::Tensor logits) const override {
    if (before == PerceiverTokenizer::cls_token_id) logits[byte('q')] = 20;  // certain
    else if (before == byte('q')) logits[byte('u')] = 5;                      // given a q
    else logits[byte('z')] = 1;                                               // a weak guess
  }
};

TEST(Pipelines, IterativeDecodingRepredictsTheRestGivenTheSurestByte) {
  KnowsQu model;
  FillMaskOptions o;
  o.top_k = 1;
  // In one pass the second byte sees a [MASK] before it, not the "q" the model is sure of.
  const auto parallel = fill_mask(model, {"[MASK][MASK]it"}, o);
  EXPECT_EQ(parallel[0].predicted, "qz");
  EXPECT_EQ(model.passes, 1);
  // Mask-predict fixes "q" first, then predicts the next byte given it: "qu". One pass per [MASK].
  o.decode = FillMaskOptions::Decode::kIterative;
  model.passes = 0;
  const auto iterative = fill_mask(model, {"[MASK][MASK]it", "x[MASK]"}, o);
  EXPECT_EQ(model.passes, 2);
  EXPECT_EQ(iterative[0].predicted, "qu");
  EXPECT_EQ(iterative[0].filled, "quit");
  ASSERT_EQ(iterative[0].spans.size(), 1u);
  ASSERT_EQ(iterative[0].spans[0].top_k.size(), 1u);
  EXPECT_EQ(iterative[0].spans[0].top_k[0].text, "qu");
  // The span's score: the probabilities its bytes had when they were chosen.
  const double p_q = iterative[0].spans[0].positions[0][0].score, p_u = iterative[0].spans[0].positions[1][0].score;
  EXPECT_GT(p_q, 0.99);
  EXPECT_NEAR(iterative[0].spans[0].top_k[0].score, p_q * p_u, 1e-9);
  EXPECT_EQ(iterative[1].predicted, "z");  // a text with fewer masks is done after its own pass
  EXPECT_EQ(parse_decode("iterative"), FillMaskOptions::Decode::kIterative);
  EXPECT_EQ(parse_decode("beam"), FillMaskOptions::Decode::kBeam);
  EXPECT_NE(error_of([] { parse_decode("greedy"); }).find("parallel, iterative or beam"), std::string::npos);
}

// Slightly prefers "a" to "b" after [CLS], but knows that "b" is followed by "c" while after "a" any of
// "x", "y", "z" may come: the likeliest filling "bc" (0.45) starts with the byte that mask-predict does
// not choose first.
class PrefersATrapsB : public ByteRuleModel {
 public:
  PrefersATrapsB() : ByteRuleModel("prefers-a") {}

 protected:
  double floor() const override { return -30; }  // bytes the rule does not name: no probability to speak of
  void after(int64_t before, torch::Tensor logits) const override {
    if (before == PerceiverTokenizer::cls_token_id) {
      logits[byte('a')] = std::log(0.55);
      logits[byte('b')] = std::log(0.45);
    } else if (before == byte('a')) {
      for (const char c : {'x', 'y', 'z'}) logits[byte(c)] = std::log(1.0 / 3);
    } else if (before == byte('b')) {
      logits[byte('c')] = 0;
    } else {  // after a [MASK]: anything, a little
      logits.fill_(0);
    }
  }
};

TEST(Pipelines, BeamDecodingFindsTheLikeliestFillingThatMaskPredictMisses) {
  PrefersATrapsB model;
  FillMaskOptions o;
  o.top_k = 1;
  o.decode = FillMaskOptions::Decode::kIterative;
  EXPECT_EQ(fill_mask(model, {"[MASK][MASK]"}, o)[0].predicted.substr(0, 1), "a");  // 0.55 x 1/3
  o.decode = FillMaskOptions::Decode::kBeam;
  o.beam_width = 2;
  model.passes = 0;
  const auto beam = fill_mask(model, {"[MASK][MASK]", "[MASK]x"}, o);
  EXPECT_EQ(model.passes, 2);  // one pass per [MASK], all hypotheses of the batch together
  EXPECT_EQ(beam[0].predicted, "bc");
  ASSERT_EQ(beam[0].spans.size(), 1u);
  ASSERT_EQ(beam[0].spans[0].top_k.size(), 1u);
  EXPECT_NEAR(beam[0].spans[0].top_k[0].score, 0.45, 1e-6);  // the bytes' probabilities when chosen
  EXPECT_EQ(beam[1].predicted, "a");
  // Width 1 is mask-predict itself.
  o.beam_width = 1;
  EXPECT_EQ(fill_mask(model, {"[MASK][MASK]"}, o)[0].predicted.substr(0, 1), "a");
  o.beam_width = 0;
  EXPECT_NE(error_of([&] { fill_mask(model, {"[MASK]"}, o); }).find("beam_width"), std::string::npos);
}

TEST(Pipelines, TextClassificationFollowsTheProblemType) {
  TempDir tmp;
  const std::vector<std::string> texts = {"first text", "a second, longer text"};
  auto check = [&](const std::string& problem, const std::function<torch::Tensor(const torch::Tensor&)>& activation) {
    const auto dir = copy_fixture("PerceiverForSequenceClassification", tmp.path() / problem,
                                  [&](nlohmann::json& c) { c["problem_type"] = problem; });
    const auto runner = open_model(dir);
    const auto answers = classify_texts(*runner, texts, {/*top_k=*/2, /*batch_size=*/1});
    const auto enc = to_model_inputs(PerceiverTokenizer().batch_encode(texts, [] {
      EncodeOptions o;
      o.padding = Padding::Longest;
      return o;
    }()));
    const auto logits = forward_logits(dir, {{"inputs", enc.input_ids}, {"attention_mask", enc.attention_mask}});
    const auto scores = activation(logits.to(torch::kDouble));
    ASSERT_EQ(answers.size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      const auto row = scores[static_cast<int64_t>(i)];
      const auto& a = answers[i];
      SCOPED_TRACE(problem + ": " + texts[i]);
      EXPECT_EQ(a.problem_type, problem);
      EXPECT_EQ(tensor_mismatch(a.logits, logits[static_cast<int64_t>(i)]), "");
      if (problem == "regression") {
        ASSERT_EQ(a.values.size(), static_cast<size_t>(row.size(0)));
        EXPECT_NEAR(a.values[0], row[0].item<double>(), 1e-5);
        EXPECT_TRUE(a.top_k.empty());
        continue;
      }
      const auto [values, ids] = row.topk(2);
      ASSERT_EQ(a.top_k.size(), 2u);
      for (int64_t j = 0; j < 2; ++j) {
        EXPECT_EQ(a.top_k[static_cast<size_t>(j)].label, runner->config().id2label.at(ids[j].item<int64_t>()));
        EXPECT_NEAR(a.top_k[static_cast<size_t>(j)].score, values[j].item<double>(), 1e-6);
      }
      std::vector<std::string> expected;
      if (problem == "single_label_classification") {
        expected.push_back(a.top_k.front().label);
      } else {
        for (int64_t j = 0; j < row.size(0); ++j)
          if (row[j].item<double>() > 0.5) expected.push_back(runner->config().id2label.at(j));
        std::sort(expected.begin(), expected.end());
      }
      auto labels = a.labels;
      if (problem != "single_label_classification") std::sort(labels.begin(), labels.end());
      EXPECT_EQ(labels, expected);
    }
  };
  check("single_label_classification", [](const torch::Tensor& l) { return torch::softmax(l, -1); });
  check("multi_label_classification", [](const torch::Tensor& l) { return torch::sigmoid(l); });
  check("regression", [](const torch::Tensor& l) { return l; });
}

#if PERCEIVER_WITH_OPENCV
TEST(Pipelines, ImageClassificationMatchesTheModel) {
  const auto dir = hf_fixtures_dir() / "PerceiverForImageClassificationLearned";
  const auto runner = open_model(dir);
  const std::vector<fs::path> images = {hf_fixtures_dir() / "image_processor" / "gradient_300x400.png",
                                        hf_fixtures_dir() / "image_processor" / "checker_256x256.png"};
  const auto processor = image_processor_for(*runner);
  // The learned head's positions fix its input size: the processor resizes to config.image_size.
  EXPECT_EQ(processor.options().size.height, runner->config().image_size);
  const auto answers = classify_images(*runner, processor, images, {/*top_k=*/3, /*batch_size=*/1});
  ASSERT_EQ(answers.size(), images.size());
  const auto logits = forward_logits(dir, {{"inputs", processor.preprocess_files(images)}});
  const auto probs = torch::softmax(logits.to(torch::kDouble), -1);
  for (size_t i = 0; i < images.size(); ++i) {
    const auto row = static_cast<int64_t>(i);
    EXPECT_EQ(answers[i].input, images[i].string());
    EXPECT_EQ(tensor_mismatch(answers[i].logits, logits[row]), "");
    const auto [values, ids] = probs[row].topk(3);
    ASSERT_EQ(answers[i].top_k.size(), 3u);
    for (int64_t j = 0; j < 3; ++j) {
      EXPECT_EQ(answers[i].top_k[static_cast<size_t>(j)].label, runner->config().id2label.at(ids[j].item<int64_t>()));
      EXPECT_NEAR(answers[i].top_k[static_cast<size_t>(j)].score, values[j].item<double>(), 1e-6);
    }
    EXPECT_EQ(answers[i].labels, std::vector<std::string>{answers[i].top_k.front().label});
  }
}

TEST(Pipelines, ImageSettingsComeFromPreprocessorConfigElseTheRunFileElseHfDefaults) {
  TempDir tmp;
  const auto dir = copy_fixture("PerceiverForImageClassificationFourier", tmp.path() / "ckpt");
  const auto side = open_model(dir)->config().image_size;
  // No settings: HF's defaults at the model's size.
  auto options = image_processor_for(*open_model(dir)).options();
  EXPECT_TRUE(options.do_center_crop);
  EXPECT_EQ(options.size.height, side);
  EXPECT_EQ(options.image_mean, ImageProcessorOptions().image_mean);
  // A checkpoint's run file: as training prepared the images (resize to the source's size, its mean/std).
  write_file(dir / "run.yaml",
             "task: {name: image_classification, image_mean: [0.1, 0.2, 0.3], image_std: [0.4, 0.5, 0.6]}\n"
             "data:\n  train: {type: image_folder, path: x, height: 12, width: 20}\n  eval: {type: image_folder, path: y}\n");
  options = image_processor_for(*open_model(dir)).options();
  EXPECT_FALSE(options.do_center_crop);
  EXPECT_EQ(options.size.height, 12);
  EXPECT_EQ(options.size.width, 20);
  EXPECT_EQ(options.image_mean, (std::vector<double>{0.1, 0.2, 0.3}));
  EXPECT_EQ(options.image_std, (std::vector<double>{0.4, 0.5, 0.6}));
  // HF's preprocessor_config.json wins.
  ImageProcessorOptions saved;
  saved.size = {10, 14};
  saved.image_mean = {0.5, 0.5, 0.5};
  write_file(dir / "preprocessor_config.json", saved.to_json().dump());
  EXPECT_EQ(image_processor_for(*open_model(dir)).options().to_json(), saved.to_json());
  // A broken run file is named.
  fs::remove(dir / "preprocessor_config.json");
  write_file(dir / "run.yaml", "task: [unclosed\n");
  expect_error([&] { image_processor_for(*open_model(dir)); }, dir / "run.yaml");
}
#endif  // PERCEIVER_WITH_OPENCV

// ---- optical flow ----

// Frames (H, W, 3) in [0, 255] with structure at every scale.
std::pair<torch::Tensor, torch::Tensor> random_frames(int64_t h, int64_t w, uint64_t seed) {
  torch::manual_seed(seed);
  const auto f1 = torch::rand({h, w, 3}) * 255;
  return {f1, torch::roll(f1, {1, 1}, {0, 1})};
}

TEST(FlowPipeline, TilesCoverTheFrameOverlapAndEndFlushWithTheBorder) {
  for (const auto& [h, w, overlap] : std::vector<std::array<int64_t, 3>>{{8, 12, 20}, {20, 30, 4}, {9, 13, 20}, {37, 12, 2}}) {
    SCOPED_TRACE(std::to_string(h) + "x" + std::to_string(w) + " overlap " + std::to_string(overlap));
    const std::array<int64_t, 2> tile = {8, 12};
    const auto tiles = flow_tiles(h, w, tile, overlap);
    auto covered = torch::zeros({h, w}, torch::kInt);
    std::set<int64_t> ys, xs;
    for (const auto& t : tiles) {
      ASSERT_GE(t.y, 0);
      ASSERT_LE(t.y + tile[0], h);
      ASSERT_GE(t.x, 0);
      ASSERT_LE(t.x + tile[1], w);
      covered.narrow(0, t.y, tile[0]).narrow(1, t.x, tile[1]).add_(1);
      ys.insert(t.y);
      xs.insert(t.x);
    }
    EXPECT_GT(covered.min().item<int>(), 0) << "every pixel is covered";
    EXPECT_EQ(tiles.size(), ys.size() * xs.size());  // a grid, no repeats
    EXPECT_EQ(*ys.begin(), 0);
    EXPECT_EQ(*ys.rbegin() + tile[0], h);  // the last tile is flush with the border
    EXPECT_EQ(*xs.rbegin() + tile[1], w);
    // Neighbouring tiles share at least min(overlap, half a tile).
    for (const auto& [starts, size] : {std::pair{ys, tile[0]}, std::pair{xs, tile[1]}})
      for (auto a = starts.begin(), b = std::next(a); b != starts.end(); ++a, ++b)
        EXPECT_GE(*a + size - *b, std::min(overlap, size / 2));
  }
  EXPECT_FALSE(error_of([] { flow_tiles(7, 12, {8, 12}, 20); }).empty());
}

TEST(FlowPipeline, TiledFlowEqualsEachTileWhereTilesDoNotOverlap) {
  const auto runner = open_model(hf_fixtures_dir() / "PerceiverForOpticalFlow");
  const auto& ts = runner->config().train_size;
  const std::array<int64_t, 2> tile = {ts[0], ts[1]};
  const auto [f1, f2] = random_frames(2 * tile[0] + 3, 2 * tile[1] + 5, 7);
  FlowOptions options;
  options.flow_scale = 3.0;
  options.min_overlap = 2;
  options.batch_size = 3;
  const auto result = predict_flow(*runner, f1, f2, options);
  ASSERT_EQ(result.flow.sizes(), (std::vector<int64_t>{f1.size(0), f1.size(1), 2}));
  EXPECT_EQ(tensor_mismatch(result.flow, result.logits * 3.0), "");

  const auto tiles = flow_tiles(f1.size(0), f1.size(1), tile, options.min_overlap);
  auto coverage = torch::zeros({f1.size(0), f1.size(1)}, torch::kInt);
  std::vector<torch::Tensor> own;
  for (const auto& t : tiles) {
    coverage.narrow(0, t.y, tile[0]).narrow(1, t.x, tile[1]).add_(1);
    const auto crop = [&](const torch::Tensor& f) { return f.narrow(0, t.y, tile[0]).narrow(1, t.x, tile[1]); };
    own.push_back(runner->forward({{"inputs", flow_model_input(crop(f1), crop(f2))}}).at("logits")[0]);
  }
  int64_t single = 0;
  auto lo = torch::full({f1.size(0), f1.size(1), 2}, 1e30), hi = torch::full({f1.size(0), f1.size(1), 2}, -1e30);
  for (size_t i = 0; i < tiles.size(); ++i) {
    const auto& t = tiles[i];
    const auto mine = coverage.narrow(0, t.y, tile[0]).narrow(1, t.x, tile[1]).eq(1).unsqueeze(-1).expand({-1, -1, 2});
    const auto blended = result.logits.narrow(0, t.y, tile[0]).narrow(1, t.x, tile[1]);
    // Covered by this tile alone: exactly the tile's own output.
    EXPECT_EQ(tensor_mismatch(blended.masked_select(mine), own[i].masked_select(mine), 1e-6, 1e-6), "") << "tile " << i;
    single += mine.sum().item<int64_t>() / 2;
    auto l = lo.narrow(0, t.y, tile[0]).narrow(1, t.x, tile[1]);
    auto h = hi.narrow(0, t.y, tile[0]).narrow(1, t.x, tile[1]);
    l.copy_(torch::minimum(l, own[i].to(torch::kDouble)));
    h.copy_(torch::maximum(h, own[i].to(torch::kDouble)));
  }
  EXPECT_GT(single, 0);
  // Where tiles overlap, the blend lies between the tiles' own answers.
  const auto blended = result.logits.to(torch::kDouble);
  EXPECT_TRUE(blended.ge(lo - 1e-6).all().item<bool>());
  EXPECT_TRUE(blended.le(hi + 1e-6).all().item<bool>());
}

// A flow "model" whose every tile answers one constant: the mean of its input patches. Seams show
// as steps between these constants unless the tiles are blended. Tiles of 40x60 pixels.
class ConstantPerTileFlow : public ModelRunner {
 public:
  ConstantPerTileFlow() { config_.train_size = {40, 60}; }
  const PerceiverConfig& config() const override { return config_; }
  std::string architecture() const override { return "PerceiverForOpticalFlow"; }
  const fs::path& source() const override { return source_; }
  NamedTensors forward(const NamedTensors& inputs) override {
    const auto& x = inputs.at("inputs");
    const auto value = x.flatten(1).mean(1).view({-1, 1, 1, 1});
    return {{"logits", value.expand({-1, x.size(3), x.size(4), 2}).contiguous()}};
  }

 private:
  PerceiverConfig config_;
  fs::path source_ = "constant-per-tile";
};

TEST(FlowPipeline, BlendingIsContinuousAcrossTileSeams) {
  ConstantPerTileFlow runner;
  torch::manual_seed(3);
  // Blocks of random brightness, so that the tiles' constants differ.
  const int64_t h = 100, w = 150;
  const auto f1 = (torch::rand({5, 8, 3}) * 255).repeat_interleave(20, 0).repeat_interleave(20, 1).narrow(1, 0, w);
  const auto flow = predict_flow(runner, f1, f1).logits.select(2, 0);  // the default 20-pixel overlap
  // The same tiles pasted over each other without blending: the seams show as steps.
  auto hard = torch::zeros({h, w});
  for (const auto& t : flow_tiles(h, w, {40, 60}, 20)) {
    const auto crop = f1.narrow(0, t.y, 40).narrow(1, t.x, 60);
    const auto value = runner.forward({{"inputs", flow_model_input(crop, crop)}}).at("logits").flatten()[0];
    hard.narrow(0, t.y, 40).narrow(1, t.x, 60).fill_(value);
  }
  auto largest_step = [](const torch::Tensor& f) {
    return std::max((f.narrow(1, 1, f.size(1) - 1) - f.narrow(1, 0, f.size(1) - 1)).abs().max().item<double>(),
                    (f.narrow(0, 1, f.size(0) - 1) - f.narrow(0, 0, f.size(0) - 1)).abs().max().item<double>());
  };
  const double seam = largest_step(hard);
  ASSERT_GT(seam, 0.05);
  // Tent weights spread each seam over the overlap, along the frame's border too.
  EXPECT_LT(largest_step(flow), 0.2 * seam) << "hard seams step by " << seam;
}

TEST(FlowPipeline, FramesSmallerThanATileArePaddedNotRefused) {
  const auto runner = open_model(hf_fixtures_dir() / "PerceiverForOpticalFlow");
  const auto& ts = runner->config().train_size;
  const auto [f1, f2] = random_frames(ts[0] - 3, ts[1] - 5, 11);
  const auto result = predict_flow(*runner, f1, f2);
  ASSERT_EQ(result.flow.sizes(), (std::vector<int64_t>{ts[0] - 3, ts[1] - 5, 2}));
  // Independent: the frames' border repeated up to the tile, the model run once, the flow cropped.
  auto pad = [&](const torch::Tensor& f) {
    auto rows = torch::cat({f, f.narrow(0, f.size(0) - 1, 1).expand({3, -1, -1})}, 0);
    return torch::cat({rows, rows.narrow(1, rows.size(1) - 1, 1).expand({-1, 5, -1})}, 1);
  };
  const auto own = runner->forward({{"inputs", flow_model_input(pad(f1), pad(f2))}}).at("logits")[0];
  EXPECT_EQ(tensor_mismatch(result.logits, own.narrow(0, 0, ts[0] - 3).narrow(1, 0, ts[1] - 5), 1e-6, 1e-6), "");
  const auto sizes = error_of([&] { predict_flow(*runner, f1, f2.narrow(0, 0, 2)); });
  EXPECT_NE(sizes.find("same size"), std::string::npos) << sizes;
}

TEST(FlowPipeline, FlowScaleComesFromTheCheckpointRunFile) {
  TempDir tmp;
  const auto dir = copy_fixture("PerceiverForOpticalFlow", tmp.path() / "ckpt");
  EXPECT_EQ(flow_options_for(*open_model(dir)).flow_scale, FlowOptions().flow_scale);
  write_file(dir / "run.yaml", "task: {name: optical_flow, flow_scale: 4.5}\n");
  EXPECT_EQ(flow_options_for(*open_model(dir)).flow_scale, 4.5);
}

TEST(FlowColour, FollowsMiddleburysColourWheel) {
  // Zero flow is white, unknown flow black, the largest vector fully saturated.
  const auto flow = torch::tensor({0.f, 0.f, 2.f, 0.f, -2.f, 0.f, 0.f, -2.f, 0.f, 2.f, 1.f, 0.f, 2e9f, 0.f},
                                  torch::kFloat)
                        .view({1, 7, 2});
  const auto c = flow_to_colour(flow).to(torch::kInt)[0];
  auto rgb = [&](int64_t i) { return std::array<int, 3>{c[i][0].item<int>(), c[i][1].item<int>(), c[i][2].item<int>()}; };
  EXPECT_EQ(rgb(0), (std::array<int, 3>{255, 255, 255}));
  EXPECT_EQ(rgb(6), (std::array<int, 3>{0, 0, 0}));
  // Middlebury's wheel: right is red-magenta, left cyan-blue, up (-y) and down yellow-green vs violet.
  EXPECT_EQ(rgb(1)[0], 255);
  EXPECT_EQ(rgb(1)[1], 0);
  EXPECT_EQ(rgb(2)[0], 0);
  EXPECT_EQ(rgb(2)[2], 255);
  EXPECT_NE(rgb(3), rgb(4));
  EXPECT_EQ(std::min({rgb(3)[0], rgb(3)[1], rgb(3)[2]}), 0);  // full radius: fully saturated
  // Half the radius, same direction: the same hue, halfway to white.
  for (int ch = 0; ch < 3; ++ch) EXPECT_NEAR(rgb(5)[ch], (255 + rgb(1)[ch]) / 2.0, 1.0) << ch;
  // A fixed radius below the largest darkens what lies beyond it (x 0.75).
  const auto dark = flow_to_colour(flow, 1.0).to(torch::kInt)[0][1];
  EXPECT_EQ(dark[0].item<int>(), static_cast<int>(255 * 0.75));
}

#if PERCEIVER_WITH_OPENCV
TEST(FlowColour, PngReadsBackAsTheColours) {
  TempDir tmp;
  const auto flow = torch::randn({5, 7, 2});
  write_flow_png(tmp.path() / "flow.png", flow);
  const auto bgr = cv::imread((tmp.path() / "flow.png").string(), cv::IMREAD_COLOR);
  ASSERT_FALSE(bgr.empty());
  const auto back = torch::from_blob(bgr.data, {bgr.rows, bgr.cols, 3}, torch::kUInt8).flip({2});
  EXPECT_TRUE(back.equal(flow_to_colour(flow)));
  expect_error([&] { write_flow_png(tmp.path() / "missing" / "flow.png", flow); }, tmp.path() / "missing" / "flow.png");
}
#endif

// ---- multimodal ----

TEST(MultimodalPipeline, ChunkedDecodingEqualsTheFullDecode) {
  const auto dir = hf_fixtures_dir() / "PerceiverForMultimodalAutoencoding";
  const auto runner = open_model(dir);
  const auto& c = runner->config();
  torch::manual_seed(5);
  const auto image = torch::rand({c.num_frames, 3, c.output_shape[2], c.output_shape[3]});
  const auto audio = torch::rand({c.num_frames * c.audio_samples_per_frame, 1}) * 2 - 1;
  const auto r = reconstruct_clip(*runner, image, audio, {/*chunks=*/3, /*top_k=*/2});
  const auto full = runner->forward({{"inputs.image", image.unsqueeze(0)},
                                     {"inputs.audio", audio.unsqueeze(0)},
                                     {"inputs.label", torch::zeros({1, c.num_labels()})}});
  for (const char* name : {"logits.image", "logits.audio", "logits.label"})
    EXPECT_EQ(tensor_mismatch(r.logits.at(name), full.at(name)[0]), "") << name;
  EXPECT_EQ(tensor_mismatch(r.image.permute({0, 2, 3, 1}).flatten(0, 2), full.at("logits.image")[0]), "");
  EXPECT_EQ(tensor_mismatch(r.audio.flatten(), full.at("logits.audio")[0]), "");
  const auto [values, ids] = torch::softmax(full.at("logits.label")[0].to(torch::kDouble), -1).topk(2);
  ASSERT_EQ(r.top_k.size(), 2u);
  EXPECT_EQ(r.top_k[0].label, c.id2label.at(ids[0].item<int64_t>()));
  EXPECT_NEAR(r.top_k[1].score, values[1].item<double>(), 1e-6);
  const auto wrong = error_of([&] { reconstruct_clip(*runner, image.narrow(0, 0, 1), audio); });
  EXPECT_NE(wrong.find("the video must be"), std::string::npos) << wrong;
}

}  // namespace
}  // namespace perceiver::testing

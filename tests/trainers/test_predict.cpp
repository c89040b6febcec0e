// `perceiver predict` end to end on the HF fixtures: its JSON logits equal `perceiver infer`'s on the
// inputs the pipeline builds, its output files read back, and bad input is one clear line.
#include <gtest/gtest.h>

#include <algorithm>

#include "perceiver/pipelines/open_model.h"
#include "perceiver/export/export.h"
#include "perceiver/io/safetensors.h"
#include "perceiver/pipelines/pipelines.h"
#include "perceiver/processing/tokenizer.h"
#include "tests/test_support.h"
#include "trainers/predict.h"

#if PERCEIVER_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>

#include "datasets/flow.h"
#include "datasets/multimodal.h"
#include "perceiver/processing/image_writer.h"
#endif

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

// `perceiver predict --json ARGS` parsed; the test fails on a non-zero exit.
json predict_json(const std::string& args) {
  const auto r = run_cli("predict --json " + args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0 ? json::parse(r.out) : json::array();
}

// `perceiver infer` on `inputs`: its outputs.
io::TensorMap infer(const fs::path& model, const io::TensorMap& inputs, const fs::path& tmp) {
  io::save_safetensors(tmp / "in.safetensors", inputs);
  const auto r = run_cli("infer --model " + quoted(model) + " --inputs " + quoted(tmp / "in.safetensors") +
                         " --output " + quoted(tmp / "out.safetensors"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return io::load_safetensors(tmp / "out.safetensors");
}

torch::Tensor from_json(const json& value) {
  std::vector<int64_t> shape;
  for (const json* v = &value; v->is_array(); v = &(*v)[0]) shape.push_back(static_cast<int64_t>(v->size()));
  std::vector<double> flat;
  std::function<void(const json&)> walk = [&](const json& v) {
    if (v.is_array()) {
      for (const auto& x : v) walk(x);
    } else {
      flat.push_back(v.get<double>());
    }
  };
  walk(value);
  return torch::tensor(flat, torch::kDouble).view(shape).to(torch::kFloat);  // the logits are float32
}

// One line on stderr naming `needle`, and a non-zero exit.
void expect_one_line_error(const CommandResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

TEST(Predict, FillMaskJsonHasInfersLogitsAndTheSpans) {
  TempDir tmp;
  const auto model = hf_fixtures_dir() / "PerceiverForMaskedLM";
  const std::vector<std::string> texts = {"hello [MASK]orld", "[MASK][MASK] bytes, longer"};
  const auto answers = predict_json("--top-k 3 --model " + quoted(model) + " '" + texts[0] + "' '" + texts[1] + "'");
  ASSERT_EQ(answers.size(), texts.size());
  EncodeOptions o;
  o.padding = Padding::Longest;
  const auto enc = to_model_inputs(PerceiverTokenizer().batch_encode(texts, o));
  const auto out = infer(model, {{"inputs", enc.input_ids}, {"attention_mask", enc.attention_mask}}, tmp.path());
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto& a = answers[i];
    EXPECT_EQ(a.at("input"), texts[i]);
    const auto length = enc.attention_mask[static_cast<int64_t>(i)].sum().item<int64_t>();
    EXPECT_EQ(tensor_mismatch(from_json(a.at("logits")), out.at("logits")[static_cast<int64_t>(i)].narrow(0, 0, length)), "");
    ASSERT_EQ(a.at("spans").size(), 1u);
    EXPECT_EQ(a.at("spans")[0].at("top_k").size(), 3u);
    EXPECT_EQ(a.at("spans")[0].at("masks").size(), a.at("spans")[0].at("length").get<size_t>());
    EXPECT_FALSE(a.at("filled").get<std::string>().empty());
  }
  // Without --json: the filled text, then each span's candidates.
  const auto text = run_cli("predict --model " + quoted(model) + " '" + texts[0] + "'");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out.substr(0, text.out.find('\n')), answers[0].at("filled").get<std::string>());
}

TEST(Predict, TextClassificationFromAListFileHasInfersLogits) {
  TempDir tmp;
  const auto model = hf_fixtures_dir() / "PerceiverForSequenceClassification";
  const std::vector<std::string> texts = {"one text", "and another one", "third"};
  write_file(tmp.path() / "texts.txt", texts[1] + "\n# a comment\n\n" + texts[2] + "\n");
  const auto answers =
      predict_json("--top-k 1 --model " + quoted(model) + " --list " + quoted(tmp.path() / "texts.txt") + " '" + texts[0] + "'");
  ASSERT_EQ(answers.size(), texts.size());
  EncodeOptions o;
  o.padding = Padding::Longest;
  const auto enc = to_model_inputs(PerceiverTokenizer().batch_encode(texts, o));
  const auto logits = infer(model, {{"inputs", enc.input_ids}, {"attention_mask", enc.attention_mask}}, tmp.path()).at("logits");
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(answers[i].at("input"), texts[i]);
    EXPECT_EQ(tensor_mismatch(from_json(answers[i].at("logits")), logits[static_cast<int64_t>(i)]), "");
    ASSERT_EQ(answers[i].at("top_k").size(), 1u);
    EXPECT_EQ(answers[i].at("label"), answers[i].at("top_k")[0].at("label"));
  }
  const auto lines = run_cli("predict --model " + quoted(model) + " --list " + quoted(tmp.path() / "texts.txt"));
  ASSERT_EQ(lines.exit_code, 0) << lines.err;
  EXPECT_EQ(std::count(lines.out.begin(), lines.out.end(), '\n'), 2) << lines.out;
}

TEST(Predict, AMissingModelOrATextWithoutMaskIsOneLine) {
  TempDir tmp;
  expect_one_line_error(run_cli("predict --model " + quoted(tmp.path() / "nothing") + " 'x'"),
                        (tmp.path() / "nothing").string());
  expect_one_line_error(run_cli("predict --model " + quoted(hf_fixtures_dir() / "PerceiverForMaskedLM") + " 'no mask'"),
                        "'no mask' has no [MASK]");
}

#if PERCEIVER_WITH_OPENCV

TEST(Predict, ImageClassificationOverAFolderAndAListHasInfersLogits) {
  TempDir tmp;
  const auto images = hf_fixtures_dir() / "image_processor";
  fs::create_directories(tmp.path() / "folder");
  fs::copy_file(images / "checker_256x256.png", tmp.path() / "folder" / "b.png");
  fs::copy_file(images / "noise_120x90.png", tmp.path() / "folder" / "a.png");
  write_file(tmp.path() / "folder" / "notes.txt", "not an image: skipped by its extension");
  fs::copy_file(images / "gradient_300x400.png", tmp.path() / "g.png");
  write_file(tmp.path() / "list.txt", "g.png\n");
  const std::vector<fs::path> expected = {tmp.path() / "folder" / "a.png", tmp.path() / "folder" / "b.png", tmp.path() / "g.png"};
  for (const char* head : {"PerceiverForImageClassificationLearned", "PerceiverForImageClassificationFourier",
                           "PerceiverForImageClassificationConvProcessing"}) {
    SCOPED_TRACE(head);
    const auto model = hf_fixtures_dir() / head;
    const auto answers = predict_json("--top-k 2 --batch-size 2 --model " + quoted(model) + " " +
                                      quoted(tmp.path() / "folder") + " --list " + quoted(tmp.path() / "list.txt"));
    ASSERT_EQ(answers.size(), expected.size());
    const auto pixels = image_processor_for(*open_model(model)).preprocess_files(expected);
    const auto logits = infer(model, {{"inputs", pixels}}, tmp.path()).at("logits");
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(fs::path(answers[i].at("input").get<std::string>()), expected[i]);
      EXPECT_EQ(tensor_mismatch(from_json(answers[i].at("logits")), logits[static_cast<int64_t>(i)]), "");
      EXPECT_EQ(answers[i].at("top_k").size(), 2u);
    }
  }
}

TEST(Predict, AnUnreadableOrNonImageFileIsOneLine) {
  TempDir tmp;
  write_file(tmp.path() / "not_an_image.png", "plain text");
  const auto model = quoted(hf_fixtures_dir() / "PerceiverForImageClassificationLearned");
  expect_one_line_error(run_cli("predict --model " + model + " " + quoted(tmp.path() / "not_an_image.png")), "not_an_image.png");
  expect_one_line_error(run_cli("predict --model " + model + " " + quoted(tmp.path() / "missing.png")), "missing.png");
}

// Frames (H, W, 3) uint8 with structure, and the second shifted by one pixel.
std::pair<torch::Tensor, torch::Tensor> frames(int64_t h, int64_t w) {
  torch::manual_seed(h * 1000 + w);
  const auto f1 = (torch::rand({h, w, 3}) * 255).to(torch::kUInt8);
  return {f1, torch::roll(f1, {1}, {1})};
}

TEST(Predict, OpticalFlowWritesFloAndPngThatReadBackAndInfersLogits) {
  TempDir tmp;
  const auto model = hf_fixtures_dir() / "PerceiverForOpticalFlow";
  const auto size = open_model(model)->config().train_size;
  // One pair of the model's size, and a folder of three larger frames (two tiled pairs).
  const auto [a, b] = frames(size[0], size[1]);
  write_image_rgb(tmp.path() / "a.png", a);
  write_image_rgb(tmp.path() / "b.png", b);
  const auto [c, d] = frames(size[0] + 5, 2 * size[1]);
  fs::create_directories(tmp.path() / "clip");
  for (const auto& [name, f] : std::vector<std::pair<std::string, torch::Tensor>>{{"0.png", c}, {"1.png", d}, {"2.png", c}})
    write_image_rgb(tmp.path() / "clip" / name, f);
  const auto out = tmp.path() / "out";
  const auto answers = predict_json("--model " + quoted(model) + " --out " + quoted(out) + " " + quoted(tmp.path() / "a.png") +
                                    " " + quoted(tmp.path() / "b.png") + " " + quoted(tmp.path() / "clip"));
  ASSERT_EQ(answers.size(), 3u);
  const auto logits = infer(model, {{"inputs", flow_model_input(a, b)}}, tmp.path()).at("logits")[0];
  EXPECT_EQ(tensor_mismatch(from_json(answers[0].at("logits")), logits), "");
  const double scale = answers[0].at("flow_scale").get<double>();
  EXPECT_EQ(scale, FlowOptions().flow_scale);
  for (const auto& answer : answers) {
    const auto flo = datasets::read_flo(answer.at("flo").get<std::string>());
    EXPECT_EQ(tensor_mismatch(flo, from_json(answer.at("logits")) * scale, 1e-5, 1e-6), "");
    const auto bgr = cv::imread(answer.at("png").get<std::string>(), cv::IMREAD_COLOR);
    ASSERT_FALSE(bgr.empty());
    EXPECT_TRUE(torch::from_blob(bgr.data, {bgr.rows, bgr.cols, 3}, torch::kUInt8).flip({2}).equal(flow_to_colour(flo)));
  }
  EXPECT_EQ(answers[1].at("input"), json({(tmp.path() / "clip" / "0.png").string(), (tmp.path() / "clip" / "1.png").string()}));
  EXPECT_EQ(from_json(answers[2].at("logits")).sizes(), (std::vector<int64_t>{size[0] + 5, 2 * size[1], 2}));
  EXPECT_TRUE(fs::exists(out / "a.flo") && fs::exists(out / "a_flow.png") && fs::exists(out / "0.flo") && fs::exists(out / "1.flo"));
}

TEST(Predict, AFlowPairOfDifferentSizesOrNoOutputFolderIsOneLine) {
  TempDir tmp;
  const auto [a, b] = frames(10, 14);
  write_image_rgb(tmp.path() / "a.png", a);
  write_image_rgb(tmp.path() / "b.png", b.narrow(0, 0, 9));
  const auto model = quoted(hf_fixtures_dir() / "PerceiverForOpticalFlow");
  const auto pair = quoted(tmp.path() / "a.png") + " " + quoted(tmp.path() / "b.png");
  expect_one_line_error(run_cli("predict --model " + model + " --out " + quoted(tmp.path() / "out") + " " + pair),
                        "must have the same size");
  expect_one_line_error(run_cli("predict --model " + model + " " + pair), "--out");
}

struct Clip {
  fs::path video, wav;
};
// A folder of frames and a WAV for the multimodal fixture (its num_frames; audio at `rate`, `channels`).
Clip write_clip(const fs::path& dir, const PerceiverConfig& config, int64_t rate, int64_t channels = 1) {
  fs::create_directories(dir / "frames");
  torch::manual_seed(9);
  for (int64_t t = 0; t < config.num_frames; ++t)
    write_image_rgb(dir / "frames" / ("f" + std::to_string(t) + ".png"),
                    torch::rand({config.output_shape[2], config.output_shape[3], 3}));
  datasets::write_wav(dir / "audio.wav", torch::rand({config.num_frames * config.audio_samples_per_frame, channels}) - 0.5,
                      rate);
  return {dir / "frames", dir / "audio.wav"};
}

TEST(Predict, MultimodalWritesFramesAndAudioAndInfersLogits) {
  TempDir tmp;
  const auto model = hf_fixtures_dir() / "PerceiverForMultimodalAutoencoding";
  const auto config = open_model(model)->config();
  const int64_t rate = config.audio_samples_per_frame * 25;
  const auto clip = write_clip(tmp.path(), config, rate);
  const auto out = tmp.path() / "out";
  const auto answers = predict_json("--chunks 3 --model " + quoted(model) + " --out " + quoted(out) + " " +
                                    quoted(clip.video) + " " + quoted(clip.wav));
  ASSERT_EQ(answers.size(), 1u);
  const auto& a = answers[0];
  // Independent: the clip as the training data reads it, decoded in full by `perceiver infer`.
  datasets::VideoOptions video;
  video.num_frames = config.num_frames;
  video.height = config.output_shape[2];
  video.width = config.output_shape[3];
  const auto image = datasets::read_video(clip.video, video);
  const auto audio = datasets::read_wav(clip.wav, {config.num_frames * config.audio_samples_per_frame, true}).samples;
  const auto full = infer(model,
                          {{"inputs.image", image.unsqueeze(0)},
                           {"inputs.audio", audio.unsqueeze(0)},
                           {"inputs.label", torch::zeros({1, config.num_labels()})}},
                          tmp.path());
  for (const char* m : {"image", "audio", "label"})
    EXPECT_EQ(tensor_mismatch(from_json(a.at("logits").at(m)), full.at(std::string("logits.") + m)[0]), "") << m;
  EXPECT_EQ(a.at("label"), a.at("top_k")[0].at("label"));
  // The files: one PNG per frame (the reconstruction, clipped to [0, 1]) and the audio at the model's rate.
  ASSERT_EQ(a.at("frames").size(), static_cast<size_t>(config.num_frames));
  const auto recon = full.at("logits.image")[0].view({config.num_frames, config.output_shape[2], config.output_shape[3], 3});
  for (int64_t t = 0; t < config.num_frames; ++t) {
    const auto bgr = cv::imread(a.at("frames")[static_cast<size_t>(t)].get<std::string>(), cv::IMREAD_COLOR);
    ASSERT_FALSE(bgr.empty());
    const auto rgb = torch::from_blob(bgr.data, {bgr.rows, bgr.cols, 3}, torch::kUInt8).flip({2}).to(torch::kInt);
    EXPECT_LE((rgb - (recon[t].clamp(0, 1) * 255).round().to(torch::kInt)).abs().max().item<int>(), 1) << t;
  }
  const auto wav = datasets::read_wav(a.at("audio").get<std::string>(), {0, false});
  EXPECT_EQ(wav.sample_rate, rate);
  EXPECT_EQ(wav.samples.size(0), config.num_frames * config.audio_samples_per_frame);
  EXPECT_EQ(tensor_mismatch(wav.samples.flatten(), full.at("logits.audio")[0].clamp(-1, 1), 1.0 / 16384, 0), "");
  EXPECT_EQ(fs::path(a.at("audio").get<std::string>()), out / "frames" / "audio.wav");
}

TEST(Predict, AWavWithTheWrongRateOrChannelsIsOneLine) {
  TempDir tmp;
  const auto model = hf_fixtures_dir() / "PerceiverForMultimodalAutoencoding";
  const auto config = open_model(model)->config();
  const int64_t rate = config.audio_samples_per_frame * 25;
  const auto out = " --out " + quoted(tmp.path() / "out") + " ";
  const auto fast = write_clip(tmp.path() / "fast", config, 2 * rate);
  expect_one_line_error(run_cli("predict --model " + quoted(model) + out + quoted(fast.video) + " " + quoted(fast.wav)),
                        std::to_string(2 * rate) + " Hz audio; the model takes " + std::to_string(rate) + " Hz");
  const auto stereo = write_clip(tmp.path() / "stereo", config, rate, 2);
  expect_one_line_error(run_cli("predict --model " + quoted(model) + out + quoted(stereo.video) + " " + quoted(stereo.wav)),
                        "2 channels; the model takes mono audio");
}

TEST(Predict, AnExportedFileAnswersAsItsModelDirectory) {
  TempDir tmp;
  const auto images = hf_fixtures_dir() / "image_processor";
  const auto [f1, f2] = frames(11, 30);  // tiled by the flow fixture's 8x12 train_size
  write_image_rgb(tmp.path() / "f1.png", f1);
  write_image_rgb(tmp.path() / "f2.png", f2);
  const auto mm = hf_fixtures_dir() / "PerceiverForMultimodalAutoencoding";
  const auto mm_config = open_model(mm)->config();
  const auto clip = write_clip(tmp.path() / "clip", mm_config, mm_config.audio_samples_per_frame * 25);
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"PerceiverForMaskedLM", {"a [MASK]b[MASK]"}},
      {"PerceiverForSequenceClassification", {"some text", "more"}},
      {"PerceiverForImageClassificationFourier", {(images / "checker_256x256.png").string(), (images / "noise_120x90.png").string()}},
      {"PerceiverForOpticalFlow", {(tmp.path() / "f1.png").string(), (tmp.path() / "f2.png").string()}},
      {"PerceiverForMultimodalAutoencoding", {clip.video.string(), clip.wav.string()}}};
  for (const auto& [head, args] : cases) {
    SCOPED_TRACE(head);
    const auto dir = hf_fixtures_dir() / head;
    const auto file = tmp.path() / (head + ".pt");
    export_model_dir(dir, file);
    trainers::PredictOptions options;
    options.chunks = 4;
    options.out_dir = tmp.path() / "from_dir";
    const auto eager = trainers::predict(*open_model(dir), args, {}, options);
    options.out_dir = tmp.path() / "from_file";
    const auto exported = trainers::predict(*open_model(file), args, {}, options);
    ASSERT_EQ(exported.size(), eager.size());
    for (size_t i = 0; i < eager.size(); ++i) {
      const auto& logits = eager[i].at("logits");
      if (logits.is_object()) {
        for (const auto& [name, value] : logits.items())
          EXPECT_EQ(tensor_mismatch(from_json(exported[i].at("logits").at(name)), from_json(value)), "") << name;
      } else {
        EXPECT_EQ(tensor_mismatch(from_json(exported[i].at("logits")), from_json(logits)), "");
      }
    }
  }
}

#endif  // PERCEIVER_WITH_OPENCV

}  // namespace
}  // namespace perceiver::testing

// Tiny image-classification, optical-flow and multimodal runs: held-out loss must go down.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include <cmath>
#include <fstream>

#include "datasets/idx.h"
#include "datasets/multimodal.h"
#include "perceiver/processing/image_processor.h"
#include "tests/test_support.h"
#include "trainers/run_config_util.h"
#include "trainers/trainer.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

// Held-out metrics of the untrained model (one step at lr 0) and of the trained one.
std::pair<std::map<std::string, double>, std::map<std::string, double>> before_and_after(const std::string& yaml,
                                                                                         const fs::path& dir) {
  auto untrained = trainers::parse_run_config(yaml, "test.yaml");
  trainers::apply_overrides(untrained, {"trainer.max_steps=1", "optimizer.lr=0.0",
                                        "logging.run_dir=" + (dir / "untrained").string()});
  auto before = trainers::Trainer(std::move(untrained)).train().final_metrics;
  auto trained = trainers::parse_run_config(yaml, "test.yaml");
  trainers::apply_overrides(trained, {"logging.run_dir=" + (dir / "trained").string()});
  auto after = trainers::Trainer(std::move(trained)).train().final_metrics;
  return {before, after};
}

TEST(TrainerVision, ImageClassificationLearnsFromIdxFiles) {
  TempDir tmp;
  // Class 0: bright left half, class 1: bright right half, plus noise.
  auto write = [&](const std::string& name, int64_t n, int64_t seed) {
    torch::manual_seed(seed);
    auto labels = torch::arange(n, torch::kLong) % 2;
    auto images = torch::rand({n, 8, 8}) * 80;
    images.narrow(2, 0, 4).add_(120 * (1 - labels).view({-1, 1, 1}).to(torch::kFloat));
    images.narrow(2, 4, 4).add_(120 * labels.view({-1, 1, 1}).to(torch::kFloat));
    datasets::write_idx(tmp.path() / (name + "-images.idx"), images.to(torch::kUInt8));
    datasets::write_idx(tmp.path() / (name + "-labels.idx"), labels.to(torch::kUInt8));
  };
  write("train", 256, 1);
  write("eval", 64, 2);
  const auto p = [&](const std::string& f) { return "'" + (tmp.path() / f).string() + "'"; };
  const std::string yaml =
      "model:\n  architecture: PerceiverForImageClassificationFourier\n"
      "  config: {d_latents: 32, num_latents: 8, num_self_attends_per_block: 1, num_self_attention_heads: 2,\n"
      "           num_cross_attention_heads: 1, qk_channels: 32, v_channels: 32, image_size: 8}\n"
      "task: {name: image_classification}\n"
      "data:\n  train: {type: idx, images: " + p("train-images.idx") + ", labels: " + p("train-labels.idx") + "}\n"
      "  eval: {type: idx, images: " + p("eval-images.idx") + ", labels: " + p("eval-labels.idx") + "}\n"
      "optimizer: {lr: 0.002}\ntrainer: {max_steps: 40, batch_size: 16, seed: 3, threads: 1, num_workers: 1}\n";
  const auto [before, after] = before_and_after(yaml, tmp.path());
  EXPECT_LT(after.at("eval/loss"), before.at("eval/loss") - 0.1);
  EXPECT_GT(after.at("eval/accuracy"), 0.9);
  // The checkpoint says how training prepared images (HF's preprocessor_config.json): the 8x8 size,
  // no centre crop, the default normalisation; predict and export read it back.
  const auto checkpoint = tmp.path() / "trained" / "checkpoints" / "step-00000040";
  const auto settings = nlohmann::json::parse(slurp(checkpoint / "preprocessor_config.json"));
  EXPECT_EQ(settings.at("size"), (nlohmann::json{{"height", 8}, {"width", 8}})) << settings;
  EXPECT_EQ(settings.at("do_center_crop"), false) << settings;
  const auto reread = PerceiverImageProcessor::from_pretrained(checkpoint).options();
  EXPECT_EQ(reread.size.height, 8);
  EXPECT_EQ(reread.image_mean, ImageProcessorOptions().image_mean);
}

// An image list (CSV of PNG paths and label fields): images with a strong red and/or green channel
// are tagged "red"/"green" (multi-label) and scored by the number of strong channels / 2 (regression).
TEST(TrainerVision, ImageListMultiLabelAndRegression) {
  TempDir tmp;
  auto write = [&](const std::string& name, int n, int64_t seed) {
    torch::manual_seed(seed);
    std::ofstream csv(tmp.path() / (name + ".csv"));
    csv << "image,tags,score\n";
    for (int i = 0; i < n; ++i) {
      const bool red = i % 3 != 1, green = i % 3 != 0;
      auto image = (torch::rand({8, 8, 3}) * 80).to(torch::kUInt8);  // OpenCV's BGR order
      if (red) image.select(2, 2).add_(120);
      if (green) image.select(2, 1).add_(120);
      const std::string file = name + "-" + std::to_string(i) + ".png";
      cv::imwrite((tmp.path() / file).string(), cv::Mat(8, 8, CV_8UC3, image.data_ptr<uint8_t>()).clone());
      csv << file << "," << (red && green ? "green|red" : red ? "red" : "green") << "," << (red + green) / 2.0 << "\n";
    }
  };
  write("train", 192, 1);
  write("eval", 48, 2);
  auto yaml = [&](const std::string& problem, const std::string& field) {
    const auto source = [&](const std::string& split) {
      return "{type: image_list, label_field: " + field + ", path: '" + (tmp.path() / (split + ".csv")).string() + "'}";
    };
    return "model:\n  architecture: PerceiverForImageClassificationFourier\n"
           "  config: {d_latents: 32, num_latents: 8, num_self_attends_per_block: 1, num_self_attention_heads: 2,\n"
           "           num_cross_attention_heads: 1, qk_channels: 32, v_channels: 32, image_size: 8}\n"
           "task: {name: image_classification, problem_type: " + problem + "}\n"
           "data:\n  train: " + source("train") + "\n  eval: " + source("eval") + "\n"
           "optimizer: {lr: 0.001}\nschedule: {name: cosine, warmup_steps: 10}\n"
           "trainer: {max_steps: 150, batch_size: 16, seed: 3, threads: 1, num_workers: 1, clip_grad_norm: 1.0}\n";
  };
  const auto [multi_before, multi] = before_and_after(yaml("multi_label_classification", "tags"), tmp.path() / "multi");
  EXPECT_LT(multi.at("eval/loss"), multi_before.at("eval/loss") - 0.2);
  EXPECT_GT(multi.at("eval/exact_match"), 0.9);
  EXPECT_GT(multi.at("eval/f1_micro"), 0.9);
  const auto [reg_before, reg] = before_and_after(yaml("regression", "score"), tmp.path() / "reg");
  EXPECT_LT(reg.at("eval/mse"), 0.3 * reg_before.at("eval/mse"));
  EXPECT_LT(reg.at("eval/mse"), 0.02);
  // Single-label on the same list: the tag strings are the classes.
  const auto [single_before, single] = before_and_after(yaml("single_label_classification", "tags"), tmp.path() / "single");
  EXPECT_GT(single.at("eval/accuracy"), 0.9);
  // Multi-label needs label fields, which an image folder (one class per subfolder) does not have.
  fs::create_directories(tmp.path() / "folder" / "red");
  fs::copy_file(tmp.path() / "train-0.png", tmp.path() / "folder" / "red" / "0.png");
  const auto folder = "{type: image_folder, path: '" + (tmp.path() / "folder").string() + "'}";
  const auto folder_error = error_of([&] {
    auto run = trainers::parse_run_config(yaml("multi_label_classification", "tags"), "test.yaml");
    trainers::apply_overrides(run, {"data.train=" + folder, "data.eval=" + folder});
    trainers::Trainer(std::move(run)).train();
  });
  EXPECT_EQ(folder_error, "test.yaml: task.problem_type multi_label_classification needs label fields: use data "
                          "sources of type image_list or image_shards");
}

// A long run meets unreadable images: they are skipped, counted in the metrics and logged, or (with
// data.on_bad_example: stop) the run stops naming the file.
TEST(TrainerVision, UnreadableImagesAreSkippedAndCountedOrStoppedOn) {
  TempDir tmp;
  for (int i = 0; i < 16; ++i) {
    const auto dir = tmp.path() / "folder" / (i % 2 ? "b" : "a");
    fs::create_directories(dir);
    cv::imwrite((dir / (std::to_string(i) + ".png")).string(), cv::Mat(8, 8, CV_8UC3, cv::Scalar(20 * i, 100, 0)));
  }
  write_file(tmp.path() / "folder" / "a" / "corrupt.png", "not an image");
  const auto good = slurp(tmp.path() / "folder" / "a" / "0.png");
  write_file(tmp.path() / "folder" / "b" / "truncated.png", good.substr(0, good.size() / 2));
  const auto folder = "{type: image_folder, path: '" + (tmp.path() / "folder").string() + "'}";
  // 18 files in batches of 6: each of 2 epochs reads every file once.
  const std::string yaml =
      "model:\n  architecture: PerceiverForImageClassificationFourier\n"
      "  config: {d_latents: 16, num_latents: 4, num_self_attends_per_block: 1, num_self_attention_heads: 1,\n"
      "           num_cross_attention_heads: 1, qk_channels: 16, v_channels: 16, image_size: 8}\n"
      "task: image_classification\n"
      "data: {train: " + folder + ", eval: " + folder + ", workers: 2}\n"
      "trainer: {max_steps: 6, batch_size: 6, threads: 1}\n"
      "logging: {run_dir: '" + (tmp.path() / "run").string() + "', log_every: 1}\n";
  const auto result = trainers::Trainer(trainers::parse_run_config(yaml, "test.yaml")).train();
  EXPECT_EQ(result.steps, 6);
  EXPECT_EQ(result.final_metrics.at("eval/data_skipped"), 2);
  std::ifstream log(tmp.path() / "run" / "metrics.jsonl");
  std::map<int64_t, double> skipped;
  for (std::string line; std::getline(log, line);) {
    const auto row = nlohmann::json::parse(line);
    if (row.contains("data/skipped")) skipped[row["step"].get<int64_t>()] = row["data/skipped"].get<double>();
  }
  EXPECT_EQ(skipped[3], 2);  // both bad files, once per epoch
  EXPECT_EQ(skipped[6], 4);
  // stop: the run ends with an error naming the file.
  auto strict = trainers::parse_run_config(yaml, "test.yaml");
  trainers::apply_overrides(strict, {"data.on_bad_example=stop", "logging.run_dir=" + (tmp.path() / "strict").string()});
  const auto error = error_of([&] { trainers::Trainer(std::move(strict)).train(); });
  EXPECT_TRUE(error.find("corrupt.png") != std::string::npos || error.find("truncated.png") != std::string::npos) << error;
  EXPECT_NE(error.find("on_bad_example"), std::string::npos) << error;
  auto typo = trainers::parse_run_config(yaml, "test.yaml");
  trainers::apply_overrides(typo, {"data.on_bad_example=ignore"});
  EXPECT_NE(error_of([&] { trainers::Trainer(std::move(typo)).train(); }).find("data.on_bad_example"), std::string::npos);
}

// Fine-tuning a checkpoint that has HF's preprocessor_config.json on a folder of photos of any size:
// every image is centre-cropped and resized by that processor, and the fine-tuned checkpoint keeps it.
TEST(TrainerVision, FineTuningUsesTheModelsImageProcessor) {
  TempDir tmp;
  const auto fixture = hf_fixtures_dir() / "PerceiverForImageClassificationLearned";  // image_size 8
  fs::create_directories(tmp.path() / "model");
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(fixture / f, tmp.path() / "model" / f);
  const nlohmann::json processor = {{"do_center_crop", true}, {"crop_size", {{"height", 10}, {"width", 10}}},
                                    {"do_resize", true},      {"size", {{"height", 8}, {"width", 8}}},
                                    {"image_mean", {0.5, 0.5, 0.5}}, {"image_std", {0.25, 0.25, 0.25}}};
  std::ofstream(tmp.path() / "model" / "preprocessor_config.json") << processor.dump();
  const int sizes[][2] = {{12, 9}, {20, 31}, {16, 16}, {9, 40}};
  for (int i = 0; i < 8; ++i) {
    const auto dir = tmp.path() / "photos" / (i % 2 ? "dog" : "cat");
    fs::create_directories(dir);
    cv::imwrite((dir / (std::to_string(i) + ".jpg")).string(),
                cv::Mat(sizes[i % 4][0], sizes[i % 4][1], CV_8UC3, cv::Scalar(30 * i, 80, 200 - 20 * i)));
  }
  const auto photos = "{type: image_folder, path: '" + (tmp.path() / "photos").string() + "'}";
  const std::string yaml = "model: {from: '" + (tmp.path() / "model").string() + "'}\n"
                           "task: image_classification\n"
                           "data: {train: " + photos + ", eval: " + photos + "}\n"
                           "trainer: {max_steps: 2, batch_size: 4, threads: 1}\n"
                           "logging: {run_dir: '" + (tmp.path() / "run").string() + "'}\n";
  const auto result = trainers::Trainer(trainers::parse_run_config(yaml, "test.yaml")).train();
  ASSERT_EQ(result.steps, 2);
  const auto saved = nlohmann::json::parse(slurp(result.last_checkpoint / "preprocessor_config.json"));
  EXPECT_EQ(saved.at("crop_size"), processor.at("crop_size")) << saved;
  EXPECT_EQ(saved.at("size"), processor.at("size")) << saved;
  EXPECT_EQ(saved.at("image_mean"), processor.at("image_mean")) << saved;
  EXPECT_EQ(saved.at("do_center_crop"), true) << saved;
  // A resize of the source's own on top of the processor's is refused, naming both.
  auto twice = trainers::parse_run_config(yaml, "test.yaml");
  trainers::apply_overrides(twice, {"data.train={type: image_folder, path: '" + (tmp.path() / "photos").string() +
                                        "', height: 8, width: 8}"});
  EXPECT_NE(error_of([&] { trainers::Trainer(std::move(twice)).train(); }).find("preprocessor_config.json"),
            std::string::npos);
}

// `perceiver prepare-data --shards` packs a class folder into tar shards that train like the folder.
TEST(TrainerVision, CliPacksAFolderIntoShardsThatTrain) {
  TempDir tmp;
  for (int i = 0; i < 10; ++i) {
    const auto dir = tmp.path() / "folder" / (i % 2 ? "b" : "a");
    fs::create_directories(dir);
    cv::imwrite((dir / (std::to_string(i) + ".png")).string(), cv::Mat(8, 8, CV_8UC3, cv::Scalar(20 * i, 100, 0)));
  }
  const auto packed = run_cli("prepare-data --shards '" + (tmp.path() / "shards").string() + "' --from '" +
                              (tmp.path() / "folder").string() + "' --per-shard 4");
  ASSERT_EQ(packed.exit_code, 0) << packed.err;
  const auto report = nlohmann::json::parse(packed.out);
  EXPECT_EQ(report.at("shards"), 3);
  EXPECT_EQ(report.at("samples"), 10);
  EXPECT_EQ(report.at("classes"), (nlohmann::json{"a", "b"}));
  const auto shards = "{type: image_shards, path: '" + (tmp.path() / "shards" / "shard-{000000..000002}.tar").string() + "'}";
  const std::string yaml =
      "model:\n  architecture: PerceiverForImageClassificationFourier\n"
      "  config: {d_latents: 16, num_latents: 4, num_self_attends_per_block: 1, num_self_attention_heads: 1,\n"
      "           num_cross_attention_heads: 1, qk_channels: 16, v_channels: 16, image_size: 8}\n"
      "task: image_classification\n"
      "data: {train: " + shards + ", eval: " + shards + "}\n"
      "trainer: {max_steps: 2, batch_size: 4, threads: 1}\n"
      "logging: {run_dir: '" + (tmp.path() / "run").string() + "'}\n";
  const auto result = trainers::Trainer(trainers::parse_run_config(yaml, "test.yaml")).train();
  EXPECT_EQ(result.steps, 2);
  const auto config = nlohmann::json::parse(slurp(result.last_checkpoint / "config.json"));
  EXPECT_EQ(config.at("id2label").at("1"), "b");
}

// Every synthetic pair shares a camera pan under its own small smooth motion. A tiny model cannot
// estimate per-pair motion within seconds (see the README's results), but it must learn the shared
// motion: held-out EPE falls far below the untrained model's and the zero-flow EPE.
TEST(TrainerVision, OpticalFlowLearnsSharedMotionOnHeldOutPairs) {
  TempDir tmp;
  const std::string data = "type: synthetic, max_displacement: 1, pan: [2, -1]";
  const std::string yaml =
      "model:\n  architecture: PerceiverForOpticalFlow\n"
      "  config: {train_size: [32, 48], d_latents: 32, num_latents: 16, num_self_attends_per_block: 1,\n"
      "           num_self_attention_heads: 2, num_cross_attention_heads: 1}\n"
      // Training decodes a quarter of the pixels; evaluation decodes all of them.
      "task: {name: optical_flow, flow_scale: 20, train_query_pixels: 384}\n"
      "data:\n  train: {" + data + ", count: 256, seed: 1}\n  eval: {" + data + ", count: 16, seed: 2}\n"
      "optimizer: {lr: 0.002}\n"
      "trainer: {max_steps: 50, batch_size: 8, seed: 3, threads: 1, num_workers: 1}\n";
  const auto [before, after] = before_and_after(yaml, tmp.path());
  for (const char* k : {"eval/epe", "eval/loss", "eval/zero_flow_epe", "eval/farneback_epe"}) ASSERT_TRUE(after.count(k)) << k;
  // EPE is reported in pixels: loss (in logit units) times the flow scale.
  EXPECT_NEAR(after.at("eval/epe"), 20 * after.at("eval/loss"), 1e-4 * after.at("eval/epe"));
  // The pan alone is sqrt(5) = 2.2 px; the pairs' own motion adds at most 1 px.
  EXPECT_GT(after.at("eval/zero_flow_epe"), 1.5);
  EXPECT_LT(after.at("eval/epe"), 0.4 * before.at("eval/epe"));
  EXPECT_LT(after.at("eval/epe"), 0.4 * after.at("eval/zero_flow_epe"));
  // Farneback recovers most of the smooth synthetic motion.
  EXPECT_LT(after.at("eval/farneback_epe"), 0.5 * after.at("eval/zero_flow_epe"));
}

TEST(TrainerVision, MultimodalReconstructionLossDecreases) {
  TempDir tmp;
  const std::string yaml =
      "model:\n  architecture: PerceiverForMultimodalAutoencoding\n"
      "  config: {num_frames: 2, image_size: 8, output_shape: [1, 2, 8, 8], audio_samples_per_frame: 32,\n"
      "           samples_per_patch: 16, d_model: 32, d_latents: 32, num_latents: 16, num_self_attends_per_block: 1,\n"
      "           num_self_attention_heads: 2, num_cross_attention_heads: 1, output_num_channels: 32,\n"
      "           _label_trainable_num_channels: 8, id2label: {0: a, 1: b, 2: c, 3: d}}\n"
      "task: {name: multimodal_autoencoding, image_points: 64}\n"
      "data:\n  train: {type: synthetic, count: 256, seed: 1}\n  eval: {type: synthetic, count: 32, seed: 2}\n"
      "optimizer: {lr: 0.003}\n"
      "trainer: {max_steps: 60, batch_size: 16, seed: 3, threads: 1, num_workers: 1, clip_grad_norm: 1.0}\n";
  const auto [before, after] = before_and_after(yaml, tmp.path());
  // Pixels are reconstructed quickly; the (always masked) label needs far longer runs.
  EXPECT_LT(after.at("eval/loss"), before.at("eval/loss"));
  EXPECT_LT(after.at("eval/loss_image"), before.at("eval/loss_image") * 0.8);
}

TEST(TrainerVision, MultimodalTrainsOnRecordedClipFiles) {
  TempDir tmp;
  std::ofstream list(tmp.path() / "clips.csv");
  list << "video,audio,label\n";
  torch::manual_seed(5);  // the same noise whatever ran before
  for (int clip = 0; clip < 4; ++clip) {
    const auto frames = tmp.path() / ("clip" + std::to_string(clip));
    fs::create_directories(frames);
    for (int t = 0; t < 3; ++t)
      cv::imwrite((frames / ("frame" + std::to_string(t) + ".png")).string(), cv::Mat(10, 12, CV_8UC3, cv::Scalar(40 * t, 60 * clip, 90)));
    datasets::write_wav(tmp.path() / ("clip" + std::to_string(clip) + ".wav"), torch::rand({80, 1}) * 2 - 1, 16000);
    list << "clip" << clip << ",clip" << clip << ".wav," << (clip % 2 ? "b" : "a") << "\n";
  }
  list.close();
  const std::string csv = "'" + (tmp.path() / "clips.csv").string() + "'";
  const std::string yaml =
      "model:\n  architecture: PerceiverForMultimodalAutoencoding\n"
      "  config: {num_frames: 2, image_size: 8, output_shape: [1, 2, 8, 8], audio_samples_per_frame: 32,\n"
      "           samples_per_patch: 16, d_model: 32, d_latents: 32, num_latents: 8, num_self_attends_per_block: 1,\n"
      "           num_self_attention_heads: 2, num_cross_attention_heads: 1, output_num_channels: 16,\n"
      "           _label_trainable_num_channels: 8, id2label: {0: a, 1: b}}\n"
      "task: multimodal_autoencoding\n"
      "data:\n  train: {type: files, list: " + csv + "}\n  eval: {type: files, list: " + csv + "}\n"
      "optimizer: {lr: 0.003}\n"
      "trainer: {max_steps: 20, batch_size: 2, seed: 3, threads: 1, num_workers: 1}\n"
      "logging: {run_dir: '" + (tmp.path() / "run").string() + "'}\n";
  // The clips are read, decoded and learnt from: every metric is a number, and the reconstruction of the
  // four clips (evaluated on the same four) improves on the untrained model's. The pictures are flat
  // colours, learnt within 20 steps; the audio is white noise, barely learnable, and the label is always
  // masked (see MultimodalReconstructionLossDecreases), so only the image term must fall by much.
  const auto [before, after] = before_and_after(yaml, tmp.path());
  for (const auto* m : {&before, &after})
    for (const char* k : {"eval/loss", "eval/loss_image", "eval/loss_audio", "eval/loss_label", "eval/label_accuracy"}) {
      ASSERT_TRUE(m->count(k)) << k;
      EXPECT_TRUE(std::isfinite(m->at(k))) << k << " = " << m->at(k);
    }
  EXPECT_LT(after.at("eval/loss"), before.at("eval/loss"));
  EXPECT_LT(after.at("eval/loss_image"), before.at("eval/loss_image") * 0.8);
  // A clip list naming a label the model does not have is an error naming the file and line.
  std::ofstream(tmp.path() / "bad.csv") << "video,audio,label\nclip0,clip0.wav,zebra\n";
  auto bad = yaml;
  bad.replace(bad.find("clips.csv"), 9, "bad.csv");
  EXPECT_NE(error_of([&] { trainers::Trainer(trainers::parse_run_config(bad, "t.yaml")).train(); }).find("bad.csv:2"),
            std::string::npos);
}

}  // namespace
}  // namespace perceiver::testing

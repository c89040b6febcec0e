// Every run file shipped in configs/ must stay valid and train: each one runs two tiny-batch steps
// and one evaluation batch on its real data (the Debian data packages scripts/setup.sh installs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/test_support.h"
#if PERCEIVER_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>

#include "datasets/image_shards.h"
#endif
#include "trainers/run_config_util.h"
#include "trainers/tasks.h"
#include "trainers/trainer.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> shipped_configs() {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(fs::path(PERCEIVER_SOURCE_DIR) / "configs"))
    if (entry.path().extension() == ".yaml") out.push_back(entry.path());
  std::sort(out.begin(), out.end());
  return out;
}

// The task a run file names (`task: NAME` or `task: {name: NAME, ...}`).
std::string task_of(const trainers::RunConfig& run) {
  const auto task = run.root["task"];
  return (task.IsMap() ? task["name"] : task).as<std::string>();
}

// A config is skipped only when this build lacks its task, and every skip is accounted for: the count
// of configs trained must equal what this build can train, worked out from the config files alone: all
// of them with OpenCV; without it, all but those of the three vision tasks (CMakeLists.txt leaves their
// sources out).
TEST(ShippedConfigs, EveryConfigTrainsTwoSteps) {
  const auto configs = shipped_configs();
  ASSERT_GE(configs.size(), 6u);
  const std::set<std::string> vision_tasks = {"image_classification", "optical_flow", "multimodal_autoencoding"};
  const auto known = trainers::known_tasks();
  std::vector<std::string> trainable, trained, skipped;
  for (const auto& file : configs) {
    SCOPED_TRACE(file.string());
    TempDir tmp;
    auto run = trainers::load_run_config(file);
    const auto task = task_of(run);
    if (PERCEIVER_WITH_OPENCV || !vision_tasks.count(task)) trainable.push_back(file.filename().string());
    if (std::find(known.begin(), known.end(), task) == known.end()) {
      skipped.push_back(file.filename().string() + " (task " + task + ")");
      continue;
    }
    trainers::apply_overrides(run, {"trainer.max_steps=2", "trainer.batch_size=2", "trainer.eval_batch_size=2",
                                    "trainer.eval_max_batches=1", "trainer.threads=1",
                                    "logging.run_dir=" + (tmp.path() / "run").string()});
    const auto result = trainers::Trainer(std::move(run)).train();
    EXPECT_EQ(result.steps, 2);
    ASSERT_TRUE(result.final_metrics.count("eval/loss"));
    EXPECT_TRUE(std::isfinite(result.final_metrics.at("eval/loss")));
    EXPECT_TRUE(fs::exists(tmp.path() / "run" / "config.yaml"));
    trained.push_back(file.filename().string());
  }
  EXPECT_EQ(trained, trainable) << "skipped: " << ::testing::PrintToString(skipped);
  if (PERCEIVER_WITH_OPENCV) EXPECT_EQ(trained.size(), configs.size());
}

#if PERCEIVER_WITH_OPENCV
// The example run files for one's own data (configs/own_data/) train on small data of their layouts.
TEST(ShippedConfigs, OwnDataExamplesTrainOnDataOfTheirLayout) {
  TempDir tmp;
  const auto& d = tmp.path();
  for (const char* split : {"train", "valid"}) {
    std::string text, jsonl, list = "image,tags\n";
    for (int i = 0; i < 40; ++i) {
      text += "line " + std::to_string(i) + " of the " + split + " text\n" + (i % 5 == 4 ? "\n" : "");
      jsonl += "{\"text\": \"document " + std::to_string(i) + "\"}\n";
    }
    write_file(d / "my_corpus" / split / "a.txt", text);
    write_file(d / "my_docs" / (std::string(split) + ".jsonl"), jsonl);
    for (int i = 0; i < 8; ++i) {
      const auto cls = std::string(i % 2 ? "dog" : "cat");
      const auto file = d / "my_photos" / split / cls / (std::to_string(i) + ".png");
      fs::create_directories(file.parent_path());
      cv::imwrite(file.string(), cv::Mat(20 + i, 30, CV_8UC3, cv::Scalar(30 * i, 90, 10)));
      list += fs::relative(file, d / "my_list").string() + "," + cls + (i % 3 ? "|outdoor" : "") + "\n";
    }
    write_file(d / "my_list" / (std::string(split) + ".csv"), list);
    datasets::write_image_shards(d / "my_photos" / split, d / "my_shards" / split);
  }
  const std::map<std::string, std::string> roots = {{"text", "my_corpus"}, {"jsonl", "my_docs"}, {"image_folder", "my_photos"},
                                                    {"image_list", "my_list"}, {"image_shards", "my_shards"}};
  int trained = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(PERCEIVER_SOURCE_DIR) / "configs" / "own_data")) {
    SCOPED_TRACE(entry.path().string());
    const auto name = entry.path().stem().string();
    ASSERT_TRUE(roots.count(name)) << "no test data for " << name;
    const auto root = d / roots.at(name);
    const auto path = [&](const std::string& split) {
      if (name == "jsonl" || name == "image_list") return root / (split + (name == "jsonl" ? ".jsonl" : ".csv"));
      return root / split;
    };
    auto run = trainers::load_run_config(entry.path());
    trainers::apply_overrides(run, {"data.train.path=" + path("train").string(), "data.eval.path=" + path("valid").string(),
                                    "trainer.max_steps=2", "trainer.batch_size=2", "trainer.eval_max_batches=1",
                                    "trainer.threads=1", "logging.run_dir=" + (d / "runs" / name).string()});
    const auto result = trainers::Trainer(std::move(run)).train();
    EXPECT_EQ(result.steps, 2);
    EXPECT_TRUE(std::isfinite(result.final_metrics.at("eval/loss")));
    ++trained;
  }
  EXPECT_EQ(trained, 5);
}
#endif

}  // namespace
}  // namespace perceiver::testing

// Every run file shipped in configs/ must stay valid and train: each one runs two tiny-batch steps
// and one evaluation batch on its real data (the Debian data packages scripts/setup.sh installs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "tests/test_support.h"
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

TEST(ShippedConfigs, EveryConfigTrainsTwoSteps) {
  const auto configs = shipped_configs();
  ASSERT_GE(configs.size(), 6u);
  for (const auto& file : configs) {
    SCOPED_TRACE(file.string());
    TempDir tmp;
    auto run = trainers::load_run_config(file);
#if !PERCEIVER_WITH_OPENCV  // a text-only build trains only the tasks it has
    const auto task = run.root["task"].IsMap() ? run.root["task"]["name"] : run.root["task"];
    const auto known = trainers::known_tasks();
    if (std::find(known.begin(), known.end(), task.as<std::string>()) == known.end()) continue;
#endif
    trainers::apply_overrides(run, {"trainer.max_steps=2", "trainer.batch_size=2", "trainer.eval_batch_size=2",
                                    "trainer.eval_max_batches=1", "trainer.threads=1",
                                    "logging.run_dir=" + (tmp.path() / "run").string()});
    const auto result = trainers::Trainer(std::move(run)).train();
    ASSERT_TRUE(result.final_metrics.count("eval/loss"));
    EXPECT_TRUE(std::isfinite(result.final_metrics.at("eval/loss")));
    EXPECT_TRUE(fs::exists(tmp.path() / "run" / "config.yaml"));
  }
}

}  // namespace
}  // namespace perceiver::testing

// trainer.max_steps: auto: the length that fits a time budget, and a run that records and keeps it.
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>

#include "perceiver/io/safetensors.h"
#include "tests/test_support.h"
#include "trainers/run_config_util.h"
#include "trainers/run_length.h"
#include "trainers/trainer.h"

namespace perceiver::testing {
namespace {

namespace fs = std::filesystem;
using trainers::RunLengthInput;

// The seconds a run of `total` steps takes from `done` on, counted event by event.
double simulated_seconds(const RunLengthInput& in, int64_t total) {
  double seconds = 0;
  for (int64_t step = in.steps_done + 1; step <= total; ++step) {
    seconds += in.step_seconds;
    const bool last = step == total;
    if ((in.eval_every > 0 && step % in.eval_every == 0) || last) seconds += in.eval_seconds;
    if ((in.checkpoint_every > 0 && step % in.checkpoint_every == 0) || last) seconds += in.checkpoint_seconds;
  }
  return seconds;
}

TEST(RunLength, TheChosenLengthIsTheLongestThatFitsASimulatedStepRate) {
  // The main job's shape: 10 minutes, evaluations and checkpoints every 3,000 steps.
  RunLengthInput in;
  in.seconds = 570;
  in.steps_done = 30;
  in.step_seconds = 0.061;
  in.eval_seconds = 2.5;
  in.eval_every = 3000;
  in.checkpoint_seconds = 0.4;
  in.checkpoint_every = 3000;
  const auto total = trainers::fitting_max_steps(in);
  EXPECT_LE(simulated_seconds(in, total), in.seconds);
  EXPECT_GT(simulated_seconds(in, total + 1), in.seconds);
  EXPECT_GT(total, 9000);  // about 570 / 0.061, less the evaluations and checkpoints
  // Evaluations that cost as much as the steps halve the length.
  in.eval_every = 100;
  in.eval_seconds = 100 * in.step_seconds;
  const auto shorter = trainers::fitting_max_steps(in);
  EXPECT_LE(simulated_seconds(in, shorter), in.seconds);
  EXPECT_GT(simulated_seconds(in, shorter + 1), in.seconds);
  EXPECT_NEAR(static_cast<double>(shorter - 30), (total - 30) / 2.0, 0.02 * total);
  // No time left: one more step, never fewer.
  in.seconds = 0;
  EXPECT_EQ(trainers::fitting_max_steps(in), 31);
  // The final evaluation and checkpoint count even without intervals.
  in = RunLengthInput{};
  in.seconds = 10;
  in.step_seconds = 1;
  in.eval_seconds = 2;
  in.checkpoint_seconds = 1;
  EXPECT_EQ(trainers::fitting_max_steps(in), 7);
}

TEST(RunLength, TheLengthChangesOnlyWhileNoPastStepsLearningRateWould) {
  trainers::ScheduleOptions s;
  s.name = "constant_cosine";
  s.warmup_steps = 300;
  s.constant_fraction = 0.8;
  EXPECT_TRUE(trainers::length_still_free(s, 1000, 9000));   // in the constant part
  EXPECT_FALSE(trainers::length_still_free(s, 7300, 9000));  // the decay began at 7200
  // A shorter length must still begin the decay after the steps taken.
  const auto kept = trainers::keeping_past_steps(s, 4000, 3000);
  EXPECT_GT(std::llround(0.8 * kept), 4000);
  EXPECT_LE(std::llround(0.8 * (kept - 1)), 4000);
  EXPECT_EQ(trainers::keeping_past_steps(s, 4000, 9000), 9000);
  s.name = "cosine";
  EXPECT_TRUE(trainers::length_still_free(s, 200, 9000));   // in the warm-up
  EXPECT_FALSE(trainers::length_still_free(s, 400, 9000));
  s.name = "constant";
  EXPECT_TRUE(trainers::length_still_free(s, 5000, 9000));
  EXPECT_FALSE(trainers::length_still_free(s, 7000, 9000));  // near the end the length stays
}

TEST(RunLength, OnlySchedulesWhoseMeasuredStepsDoNotDependOnTheLengthAreAccepted) {
  trainers::ScheduleOptions s;
  for (const char* name : {"constant", "constant_cosine"}) {
    s.name = name;
    s.warmup_steps = 0;
    EXPECT_EQ(trainers::auto_length_problem(s), "") << name;
  }
  s.name = "cosine";
  s.warmup_steps = 5;
  EXPECT_NE(trainers::auto_length_problem(s).find("warmup_steps >= 30"), std::string::npos);
  s.warmup_steps = 300;
  EXPECT_EQ(trainers::auto_length_problem(s), "");
}

std::string mlm_run(const fs::path& dir) {
  {
    std::ofstream out(dir / "train.txt");
    for (int i = 0; i < 300; ++i) out << "the " << (i % 7) << " cats sat on " << (i % 5) << " mats\n";
  }
  return "model:\n  architecture: PerceiverForMaskedLM\n"
         "  config: {d_model: 16, d_latents: 16, num_latents: 4, num_self_attends_per_block: 1,\n"
         "           num_self_attention_heads: 1, num_cross_attention_heads: 1, max_position_embeddings: 32,\n"
         "           attention_probs_dropout_prob: 0.1}\n"
         "task: {name: mlm, fill_in_samples: 0, fill_in_words: 0}\n"
         "data: {seq_len: 32, workers: 0, train: {type: text, path: '" + (dir / "train.txt").string() + "', unit: line},\n"
         "       eval: {type: text, path: '" + (dir / "train.txt").string() + "', unit: line}}\n"
         "optimizer: {name: adamw, lr: 0.003}\n"
         "schedule: {name: constant_cosine, warmup_steps: 5}\n"
         "trainer: {max_steps: auto, time_limit_minutes: 0.05, batch_size: 8, seed: 5, threads: 1, eval_max_batches: 1,\n"
         "          checkpoint_every: 35, keep_last: 100}\n";
}

trainers::TrainResult train(const std::string& yaml, const std::vector<std::string>& overrides, const std::string& resume = "") {
  auto run = trainers::parse_run_config(yaml, "test.yaml");
  trainers::apply_overrides(run, overrides);
  return trainers::Trainer(std::move(run)).train(resume);
}

TEST(RunLength, AutoLengthIsRecordedKeptOnResumeAndTrainsAsThatFixedLength) {
  TempDir tmp;
  const auto yaml = mlm_run(tmp.path());
  const auto first = train(yaml, {"logging.run_dir=" + (tmp.path() / "auto").string()});
  // The length (chosen at step 30, perhaps again later) is in the effective run file and in every
  // checkpoint written after the choice.
  const auto last = YAML::LoadFile((tmp.path() / "auto" / "config.yaml").string())["trainer"]["max_steps"].as<int64_t>();
  EXPECT_GT(last, trainers::kAutoLengthSteps);
  EXPECT_LE(first.steps, last);
  const auto mid = tmp.path() / "auto" / "checkpoints" / "step-00000035";
  ASSERT_TRUE(fs::exists(mid)) << "the run stopped before step 35";
  const auto chosen = nlohmann::json::parse(slurp(mid / "trainer_state.json")).at("max_steps").get<int64_t>();
  EXPECT_GT(chosen, 35);
  EXPECT_EQ(YAML::LoadFile((mid / "run.yaml").string())["trainer"]["max_steps"].as<int64_t>(), chosen);
  // Resumed (with time to spare), the run keeps that length instead of measuring again ...
  const auto resumed = train(yaml, {"logging.run_dir=" + (tmp.path() / "resumed").string(), "trainer.time_limit_minutes=10"},
                             mid.string());
  EXPECT_EQ(resumed.steps, chosen);
  // ... and ends where a run with that max_steps in its run file ends, bit for bit: measuring the
  // length (one timed evaluation and checkpoint included) changed nothing of the training.
  const auto fixed = train(yaml, {"logging.run_dir=" + (tmp.path() / "fixed").string(), "trainer.time_limit_minutes=0",
                                  "trainer.max_steps=" + std::to_string(chosen)});
  ASSERT_EQ(fixed.steps, chosen);
  const auto a = io::load_safetensors(resumed.last_checkpoint / "model.safetensors");
  const auto b = io::load_safetensors(fixed.last_checkpoint / "model.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;
  // auto needs a time limit, and a schedule whose measured steps do not depend on the length.
  EXPECT_NE(error_of([&] { train(yaml, {"trainer.time_limit_minutes=0"}); }).find("time_limit_minutes"), std::string::npos);
  EXPECT_NE(error_of([&] { train(yaml, {"schedule.name=cosine"}); }).find("warmup_steps >= 30"), std::string::npos);
}

}  // namespace
}  // namespace perceiver::testing

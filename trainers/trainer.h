// The trainer: a YAML run file -> model, task, data, optimizer, schedule -> training with
// evaluation, logging, atomic checkpoints and exact resume; also evaluation of a checkpoint.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "trainers/run_config_util.h"

namespace perceiver::trainers {

// The schema every run file is checked against (unknown keys and wrong types are errors).
const Schema& run_schema();

struct TrainResult {
  int64_t steps = 0;
  std::filesystem::path run_dir;
  std::filesystem::path last_checkpoint;
  int64_t num_parameters = 0;
  std::map<std::string, double> final_metrics;  // the last evaluation ("eval/..." keys)
  double seconds = 0;
  // Wall time of each training step of this call, data loading included (evaluation and checkpoints not).
  std::vector<double> step_seconds;
};

class Trainer {
 public:
  explicit Trainer(RunConfig run);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // resume: "" (fresh run), "auto" (latest checkpoint of the run directory, if any) or a checkpoint dir.
  TrainResult train(const std::string& resume = "");

  // Loads `checkpoint` (a checkpoint or HF model directory) and evaluates it on the eval data.
  std::map<std::string, double> evaluate(const std::filesystem::path& checkpoint);

  // Reads the run's data sources as training would, building what they keep on disk (text indexes,
  // packed JSONL), so that a later run starts at once; returns the one-line summary of the data.
  std::string prepare_data();

  const std::filesystem::path& run_dir() const;
  // False on ranks other than 0 of a distributed job (WORLD_SIZE > 1): they write and print nothing.
  bool is_main_process() const;

 private:
  TrainResult run_training(const std::string& resume);
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace perceiver::trainers

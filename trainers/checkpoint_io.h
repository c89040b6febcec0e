// Crash-safe checkpoints: each one is a directory written under a temporary name, fsynced and
// renamed into place, so a checkpoint either exists completely or not at all.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace perceiver::trainers {

struct CheckpointOptions {
  std::filesystem::path run_dir;  // checkpoints go to RUN/checkpoints/step-XXXXXXXX
  int keep_last = 3;              // newest K kept (>= 1) ...
  std::string best_metric;        // ... plus the best by this metric ("" = none)
  std::string mode = "min";       // min | max
};

struct CheckpointInfo {
  std::filesystem::path dir;
  int64_t step = 0;
  std::optional<double> metric;  // value of best_metric when saved
};

class CheckpointManager {
 public:
  // Removes leftovers of interrupted saves (.tmp-*, .old-*, .trash-*), restoring a checkpoint
  // whose replacement was interrupted between its two renames.
  explicit CheckpointManager(CheckpointOptions options);

  // Calls write(dir) to fill a fresh temporary directory, adds checkpoint.json (step, metric),
  // fsyncs every file and the directory, renames it to its final name (replacing one of the same
  // step safely), fsyncs checkpoints/, then prunes. Returns the final directory.
  std::filesystem::path save(int64_t step, const std::function<void(const std::filesystem::path&)>& write,
                             std::optional<double> metric = std::nullopt);

  // Complete checkpoints, oldest first.
  std::vector<CheckpointInfo> list() const;
  std::optional<CheckpointInfo> latest() const;  // for --resume auto
  std::optional<CheckpointInfo> best() const;

  std::filesystem::path checkpoints_dir() const { return options_.run_dir / "checkpoints"; }

 private:
  void prune();
  CheckpointOptions options_;
};

// The newest complete checkpoint under RUN/checkpoints, if any.
std::optional<std::filesystem::path> find_latest_checkpoint(const std::filesystem::path& run_dir);

// Small files written atomically (temporary file, fsync, rename, fsync of the directory).
void write_file_atomic(const std::filesystem::path& file, const std::string& bytes);
void save_json(const std::filesystem::path& file, const nlohmann::json& value);
nlohmann::json load_json(const std::filesystem::path& file);  // throws naming the file

// Named tensors (model weights, RNG states, ...) in one torch archive.
void save_tensors(const std::filesystem::path& file, const std::map<std::string, torch::Tensor>& tensors);
std::map<std::string, torch::Tensor> load_tensors(const std::filesystem::path& file);

void save_optimizer(const std::filesystem::path& file, const torch::optim::Optimizer& optimizer);
void load_optimizer(const std::filesystem::path& file, torch::optim::Optimizer& optimizer);

// CPU generator state (a uint8 tensor), to resume data order and dropout exactly.
torch::Tensor cpu_rng_state();
void set_cpu_rng_state(const torch::Tensor& state);

}  // namespace perceiver::trainers

// `perceiver predict` as a library call: texts or files in, answers (and output files) out, for every
// task the heads exist for. The task follows the model's architecture (predict_tasks(), a registry):
// each collects its inputs (command-line arguments, folders, a list file), runs its pipeline
// (perceiver/pipelines/pipelines.h), writes its files and answers one JSON object per input with `input`, the
// answer and that input's raw `logits`.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "perceiver/models/runner.h"

namespace perceiver::trainers {

struct PredictOptions {
  int64_t top_k = 5;
  int64_t batch_size = 16;            // texts or images per forward pass (flow: tiles)
  // fill-mask: parallel (one pass, the default), iterative (mask-predict) or beam; token classification: argmax,
  // viterbi or viterbi_separated (default: the checkpoint's task.decode, else argmax)
  std::string decode;
  std::string aggregation = "simple";  // token classification: none, simple, first, max or average
  std::filesystem::path out_dir;      // where flow and multimodal write their files (required for them)
  std::optional<double> flow_scale;   // pixels per flow logit; unset: the checkpoint's task.flow_scale, else 20
  int64_t min_overlap = 20;           // flow tiles (capped at half a tile)
  double flow_max_radius = 0;         // colour-wheel saturation radius in pixels; 0: each field's largest
  int64_t chunks = 128;               // multimodal decoding chunks
  std::optional<int64_t> sample_rate;  // multimodal WAV rate; unset: audio_samples_per_frame x 25 fps
};

// One input: a text or a path, or two paths (flow: frame 1 and frame 2; multimodal: video and WAV).
using PredictInput = std::vector<std::string>;

struct PredictTask {
  std::string name;
  std::vector<std::string> architectures;
  std::string inputs;  // what INPUT... and a list file's lines are, for --help
  // Command-line arguments and the lines of an optional list file -> inputs.
  std::function<std::vector<PredictInput>(const std::vector<std::string>& args, const std::filesystem::path& list)>
      collect;
  std::function<nlohmann::json(ModelRunner&, const std::vector<PredictInput>&, const PredictOptions&)> run;
  std::function<std::string(const nlohmann::json& answer)> describe;  // one answer as readable text
};

// Every task of this build (the image, flow and multimodal tasks need OpenCV).
const std::vector<PredictTask>& predict_tasks();
// The task for an architecture; an error listing the supported architectures otherwise.
const PredictTask& predict_task(const std::string& architecture);

// The task for the runner's architecture: inputs collected, run, answered as a JSON array.
nlohmann::json predict(ModelRunner& runner, const std::vector<std::string>& args, const std::filesystem::path& list,
                       const PredictOptions& options = {});

// A tensor as nested JSON arrays of numbers (a scalar for a 0-d tensor).
nlohmann::json tensor_json(const torch::Tensor& t);

}  // namespace perceiver::trainers

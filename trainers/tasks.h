// Training objectives: each task knows which data it reads (the run file's `data` section), how a
// collated batch becomes model inputs, and how loss and metrics are computed. The trainer only
// sees this interface.
#pragma once

#include <ATen/core/Generator.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "datasets/loader.h"
#include "datasets/option_spec.h"
#include "perceiver/models/config.h"
#include "perceiver/models/model.h"
#include "perceiver/models/runner.h"
#include "trainers/metrics.h"

namespace perceiver::trainers {

struct StepOutput {
  torch::Tensor loss;  // scalar, differentiable when training
  MetricSums metrics;
  int64_t samples = 0;
};

struct TaskData {
  std::shared_ptr<const datasets::Dataset> train;
  std::shared_ptr<const datasets::Dataset> eval;
  std::string summary;  // one log line describing what was loaded
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  // Heads that this objective trains; the first is the default architecture.
  virtual std::vector<std::string> architectures() const = 0;
  // Reads the `data` section; may adapt the model config to the data (labels, sequence length).
  // `model_from` is the checkpoint being fine-tuned (model.from), empty for a fresh model: its files
  // (e.g. preprocessor_config.json) may say how inputs are prepared.
  virtual TaskData load_data(const YAML::Node& data, PerceiverConfig& config, const std::filesystem::path& model_from) = 0;
  // One batch: builds the inputs (masking/augmentation drawn from `generator` when training),
  // runs the model and returns the loss and metric sums.
  virtual StepOutput step(PerceiverPreTrainedModelImpl& model, const datasets::Example& batch,
                          at::Generator& generator, bool training) = 0;
  // Evaluation artefacts (confusion matrix, sample fill-ins) are gathered between these two calls.
  virtual void begin_eval() {}
  // On the main rank only, after the batches: writes the artefacts to out_dir, may run the model
  // (eval mode, no autograd) for checks of its own, and returns metrics to add to the evaluation's.
  virtual std::map<std::string, double> end_eval(const std::filesystem::path& out_dir, ModelRunner& model) {
    (void)out_dir, (void)model;
    return {};
  }
  // Evaluation state that adds up over data-parallel ranks (a confusion matrix): summed in place
  // over the ranks before end_eval, so that its artefacts cover the whole eval set.
  virtual std::vector<torch::Tensor> eval_counts() { return {}; }
  // The metric that selects the best checkpoint; classification accuracy unless a task says otherwise.
  // Files beside a checkpoint's config.json that inference needs (e.g. preprocessor_config.json).
  virtual void write_inference_files(const std::filesystem::path& dir, const YAML::Node& run,
                                     const PerceiverConfig& config) const {
    (void)dir, (void)run, (void)config;
  }
  virtual std::string best_metric() const { return "eval/accuracy"; }
  virtual std::string best_mode() const { return "max"; }  // "max" or "min"
  // Metrics that follow from an evaluation's means over every rank (e.g. perplexity from the loss),
  // added in place (names without the "eval/" prefix).
  virtual void add_derived_metrics(std::map<std::string, double>& means) const { (void)means; }
};

class TaskSection;
using TaskFactory = std::unique_ptr<Task> (*)(TaskSection& options);

// A task with the run-file keys it reads, each declared once (type, default, help) in the task's file.
struct TaskInfo {
  TaskFactory make;
  std::string help;                      // one line
  datasets::OptionSpecs options;         // the `task` section's keys besides `name`
  datasets::OptionSpecs data_options;    // the `data` section's keys besides the loader's (workers, prefetch, on_bad_example), e.g. seq_len, train, eval
  std::string source_kind;               // the kind of source data.train / data.eval name ("text", "labelled-text", "image", "flow", "clip")
  datasets::OptionSpecs source_options;  // keys the task itself reads in a source section besides the source's own (e.g. image classification's `limit`)
};

// Every task by its `task` name. Adding a task is one file in trainers/tasks/ (with its TaskInfo) and
// one registration line in trainers/task_registry.cpp; the list of known names is read from here.
const std::map<std::string, TaskInfo>& task_registry();
// The `task` section's `name` (the section may also be just the name).
datasets::OptionSpec task_name_option();

// `task` section: a name or {name: ..., options}. Throws naming the key for unknown tasks/options.
std::unique_ptr<Task> make_task(const YAML::Node& task, const std::string& source);
std::vector<std::string> known_tasks();

// Moves every tensor of an example to `device`.
datasets::Example to_device(const datasets::Example& batch, const torch::Device& device);

}  // namespace perceiver::trainers

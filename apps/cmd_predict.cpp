#include <iostream>

#include "apps/command.h"
#include "apps/options.h"
#include "perceiver/pipelines/open_model.h"
#include "perceiver/pipelines/tag_decoding.h"
#include "perceiver/models/runner.h"
#include "perceiver/runtime/runtime.h"
#include "trainers/predict.h"

namespace {

namespace po = boost::program_options;

std::string usage() {
  std::string text =
      "perceiver predict --model DIR|CHECKPOINT|model.pt [options] INPUT...\n"
      "  answers the task of the model's head; INPUT... (or --list FILE) is:\n";
  for (const auto& task : perceiver::trainers::predict_tasks()) {
    text += "  " + task.name + " (";
    for (size_t i = 0; i < task.architectures.size(); ++i) text += (i ? ", " : "") + task.architectures[i];
    text += "):\n      " + task.inputs + "\n";
  }
  return text + "\noptions";
}

int run_predict(const std::vector<std::string>& args) {
  perceiver::trainers::PredictOptions defaults;
  const std::string decode_help =
      "fill-mask: parallel (every [MASK] in one pass, the default), iterative (the surest byte first, the rest "
      "again given it) or beam (iterative, keeping the 8 likeliest partial fillings); token classification: " +
      perceiver::tag_decode_help() + "; default: the checkpoint's task.decode, else argmax";
  po::options_description desc(usage());
  desc.add_options()("help,h", "show this help")(
      "model", po::value<std::string>()->required(), "model directory, training checkpoint or exported .pt file")(
      "input", po::value<std::vector<std::string>>()->default_value({}, ""), "inputs (positional)")(
      "list", po::value<std::string>()->default_value(""), "a file of inputs, one per line")(
      "json", po::bool_switch(), "print one JSON array: per input `input`, the answer and its raw `logits`")(
      "top-k", po::value<int64_t>()->default_value(defaults.top_k), "labels, tokens or fillings per answer")(
      "decode", po::value<std::string>()->default_value(defaults.decode), decode_help.c_str())(
      "aggregation", po::value<std::string>()->default_value(defaults.aggregation),
      "token classification: none (every byte), simple (bytes grouped by IOB2 tag), first / max / average "
      "(one label per word, by its first byte, its surest byte or its mean probabilities)")(
      "out", po::value<std::string>()->default_value(""), "output folder (optical flow, multimodal)")(
      "batch-size", po::value<int64_t>()->default_value(defaults.batch_size), "inputs (flow: tiles) per forward pass")(
      "flow-scale", po::value<double>(), "pixels per flow logit (default: the checkpoint's task.flow_scale, else 20)")(
      "overlap", po::value<int64_t>()->default_value(defaults.min_overlap), "least overlap of flow tiles in pixels")(
      "flow-max-radius", po::value<double>()->default_value(0), "flow PNG: pixels of full saturation (0: each field's largest)")(
      "chunks", po::value<int64_t>()->default_value(defaults.chunks), "multimodal: chunks of decoded output points")(
      "sample-rate", po::value<int64_t>(), "multimodal: the WAV rate in Hz (default: audio_samples_per_frame x 25)")(
      "threads", po::value<int>()->default_value(0), "intra-op threads (0 = all cores)");
  perceiver::cli::add_device_options(desc, "cpu");
  if (perceiver::cli::wants_help(args, desc)) return 0;
  po::positional_options_description pos;
  pos.add("input", -1);
  const auto vm = perceiver::cli::parse(desc, args, &pos);
  perceiver::runtime::set_threads(vm["threads"].as<int>());

  perceiver::trainers::PredictOptions options;
  options.top_k = vm["top-k"].as<int64_t>();
  options.decode = vm["decode"].as<std::string>();
  options.aggregation = vm["aggregation"].as<std::string>();
  options.batch_size = vm["batch-size"].as<int64_t>();
  options.out_dir = vm["out"].as<std::string>();
  if (vm.count("flow-scale")) options.flow_scale = vm["flow-scale"].as<double>();
  options.min_overlap = vm["overlap"].as<int64_t>();
  options.flow_max_radius = vm["flow-max-radius"].as<double>();
  options.chunks = vm["chunks"].as<int64_t>();
  if (vm.count("sample-rate")) options.sample_rate = vm["sample-rate"].as<int64_t>();

  perceiver::RunnerOptions runner_options;
  const auto choice = perceiver::cli::device_options(vm);
  runner_options.device = choice.device;
  runner_options.precision = choice.precision;
  const auto runner = perceiver::open_model(vm["model"].as<std::string>(), runner_options);
  const auto answers = perceiver::trainers::predict(*runner, vm["input"].as<std::vector<std::string>>(),
                                                    vm["list"].as<std::string>(), options);
  if (vm["json"].as<bool>()) {
    std::cout << answers.dump() << std::endl;
  } else {
    const auto& task = perceiver::trainers::predict_task(runner->architecture());
    for (const auto& answer : answers) std::cout << task.describe(answer) << "\n";
    std::cout.flush();
  }
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("predict", "answer a model's task: fill [MASK]s, classify texts, their bytes or images, optical flow, multimodal",
                  run_predict);

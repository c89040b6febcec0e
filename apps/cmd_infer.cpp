#include <fstream>
#include <iostream>

#include "apps/command.h"
#include "apps/options.h"
#include "perceiver/models/gradients.h"
#include "perceiver/pipelines/inference.h"
#include "perceiver/io/safetensors.h"
#include "perceiver/runtime/runtime.h"
#include "perceiver/io/json_io.h"

namespace {

int run_infer(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc(
      "perceiver infer: run a model directory, training checkpoint or exported model.pt on named tensors\n"
      "  input names: inputs (or input_ids / pixel_values), inputs.<modality>, attention_mask, labels,\n"
      "               subsampled_output_points.<modality>\n"
      "  output names: loss, logits, logits.<modality>, last_hidden_state, hidden_states.<i>, attentions.<i>,\n"
      "                cross_attentions.<i>\n\noptions");
  desc.add_options()("help,h", "show this help")("model", po::value<std::string>()->required(),
                                                 "HF model or checkpoint directory (config.json + model.safetensors or pytorch_model.bin), or a file "
                                                 "written by 'perceiver export'")(
      "inputs", po::value<std::string>()->required(), "safetensors file with the forward arguments")(
      "output", po::value<std::string>()->required(), "safetensors file to write the outputs to")(
      "cotangents", po::value<std::string>(),
      "safetensors file of output-shaped tensors: also write grad.<parameter> and grad.<input>, the gradients of "
      "sum over its names k of sum(output_k * cotangent_k), in eval mode (model or checkpoint directories only)")(
      "output-attentions", po::bool_switch(), "also write attentions and cross-attentions")(
      "output-hidden-states", po::bool_switch(), "also write hidden states")(
      "interpolate-pos-encoding", po::bool_switch(), "resample learned/Fourier positions to the input size")(
      "construction", po::value<std::string>(),
      "PerceiverModel only: JSON file with the components (an object, or a meta.json with a \"construction\" key)")(
      "non-strict", po::bool_switch(), "load what matches and report the rest instead of failing")(
      "threads", po::value<int>()->default_value(0), "intra-op threads (0 = all cores)");
  perceiver::cli::add_device_options(desc, "cpu");
  if (perceiver::cli::wants_help(args, desc)) return 0;
  const auto vm = perceiver::cli::parse(desc, args);
  perceiver::runtime::set_threads(vm["threads"].as<int>());

  perceiver::InferOptions options;
  options.forward.output_attentions = vm["output-attentions"].as<bool>();
  options.forward.output_hidden_states = vm["output-hidden-states"].as<bool>();
  options.forward.interpolate_pos_encoding = vm["interpolate-pos-encoding"].as<bool>();
  options.load.strict = !vm["non-strict"].as<bool>();
  const auto choice = perceiver::cli::device_options(vm);
  options.device = choice.device;
  options.precision = choice.precision;
  if (vm.count("construction")) {
    const auto doc = perceiver::read_json_file(vm["construction"].as<std::string>());
    options.load.construction = doc.contains("construction") ? doc["construction"] : doc;
  }
  const auto inputs = perceiver::io::load_safetensors(vm["inputs"].as<std::string>());
  const auto model = vm["model"].as<std::string>();
  const auto outputs =
      vm.count("cotangents")
          ? perceiver::infer_gradients(model, inputs,
                                       perceiver::io::load_safetensors(vm["cotangents"].as<std::string>()), options)
          : perceiver::infer(model, inputs, options);
  perceiver::io::save_safetensors(vm["output"].as<std::string>(), outputs);
  std::cerr << "wrote " << outputs.size() << " tensors to " << vm["output"].as<std::string>() << "\n";
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("infer", "run a model directory or exported file on named tensors (safetensors in, safetensors out)", run_infer);

#include <iostream>

#include "apps/command.h"
#include "apps/options.h"
#include "perceiver/export.h"
#include "perceiver/json_io.h"

namespace {

namespace po = boost::program_options;

// "N" or "HxW" -> (height, width).
std::pair<int64_t, int64_t> parse_image_size(const std::string& text) {
  const auto x = text.find('x');
  try {
    size_t used = 0;
    const auto h = std::stoll(text.substr(0, x), &used);
    if (used != (x == std::string::npos ? text.size() : x)) throw std::invalid_argument(text);
    const auto w = x == std::string::npos ? h : std::stoll(text.substr(x + 1), &used);
    if (x != std::string::npos && used != text.size() - x - 1) throw std::invalid_argument(text);
    if (h > 0 && w > 0) return {h, w};
  } catch (const std::exception&) {
  }
  throw std::invalid_argument("--image-size: expected N or HxW with positive sizes, got '" + text + "'");
}

int run_export(const std::vector<std::string>& args) {
  po::options_description desc(
      "perceiver export --model DIR --out model.pt: trace a model for TorchScript (C++ torch::jit::load, Python\n"
      "torch.jit.load). forward takes HF's forward arguments in order and returns a dict with HF's output names;\n"
      "the batch size is free, the other dimensions are listed in the archive's perceiver.json (and "
      "printed)\n\noptions");
  desc.add_options()("help,h", "show this help")("model", po::value<std::string>()->required(),
                                                 "HF model or training checkpoint directory")(
      "out", po::value<std::string>()->required(), "the TorchScript file to write")(
      "device", po::value<std::string>()->default_value("cpu"), "where the exported module runs: cpu, cuda, cuda:N")(
      "image-size", po::value<std::string>(),
      "Fourier and conv image heads: the input size to export, N or HxW (default: the image processor's size)")(
      "construction", po::value<std::string>(),
      "PerceiverModel only: JSON file with the components (an object, or a meta.json with a \"construction\" key)")(
      "non-strict", po::bool_switch(), "load what matches and report the rest instead of failing");
  if (perceiver::cli::wants_help(args, desc)) return 0;
  const auto vm = perceiver::cli::parse(desc, args);
  perceiver::ExportOptions options;
  options.device = perceiver::device::parse(vm["device"].as<std::string>());
  if (vm.count("image-size"))
    std::tie(options.image_height, options.image_width) = parse_image_size(vm["image-size"].as<std::string>());
  perceiver::io::LoadOptions load;
  load.strict = !vm["non-strict"].as<bool>();
  if (vm.count("construction")) {
    const auto doc = perceiver::read_json_file(vm["construction"].as<std::string>());
    load.construction = doc.contains("construction") ? doc["construction"] : doc;
  }
  const auto out = vm["out"].as<std::string>();
  const auto manifest = perceiver::export_model_dir(vm["model"].as<std::string>(), out, options, load);
  // stdout: the manifest (the forward's inputs, their shapes and free dimensions, the outputs).
  std::cout << manifest.dump(2) << std::endl;
  std::cerr << "wrote " << out << " (" << manifest["architecture"].get<std::string>() << ")\n";
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("export", "trace a model or checkpoint into one TorchScript file (C++ and Python)", run_export);

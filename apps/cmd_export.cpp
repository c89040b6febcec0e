#include <iostream>

#include "apps/command.h"
#include "apps/options.h"
#include "perceiver/export/export.h"
#include "perceiver/export/export_triton.h"
#include "perceiver/io/json_io.h"
#include "trainers/model_card.h"

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
      "printed)\n"
      "perceiver export --model DIR --triton REPO [--name NAME]: the same model for Triton Inference Server's\n"
      "PyTorch backend: REPO/NAME/config.pbtxt, REPO/NAME/perceiver.json and REPO/NAME/1/model.pt, whose\n"
      "forward returns a tuple\n\noptions");
  desc.add_options()("help,h", "show this help")("model", po::value<std::string>()->required(),
                                                 "HF model or training checkpoint directory")(
      "out", po::value<std::string>(), "the TorchScript file to write")(
      "triton", po::value<std::string>(), "instead of --out: the Triton model repository to write the model into")(
      "name", po::value<std::string>(),
      "with --triton: the model's name, [A-Za-z0-9_-] (default: the model directory's name)")(
      "max-batch-size", po::value<int32_t>(),
      "with --triton: Triton's largest batch when the model batches (default 8; 0 = no batching)")(
      "device", po::value<std::string>()->default_value("cpu"), "where the exported module runs: cpu, cuda, cuda:N")(
      "image-size", po::value<std::string>(),
      "Fourier and conv image heads: the input size to export, N or HxW (default: the image processor's size)")(
      "construction", po::value<std::string>(),
      "PerceiverModel only: JSON file with the components (an object, or a meta.json with a \"construction\" key)")(
      "non-strict", po::bool_switch(), "load what matches and report the rest instead of failing");
  if (perceiver::cli::wants_help(args, desc)) return 0;
  const auto vm = perceiver::cli::parse(desc, args);
  const bool triton = vm.count("triton") > 0;
  if (triton == (vm.count("out") > 0))
    throw std::invalid_argument(triton ? "give --out FILE or --triton REPO, not both"
                                       : "missing --out FILE (one TorchScript file) or --triton REPO (a Triton "
                                         "model repository)");
  for (const auto* option : {"name", "max-batch-size"})
    if (!triton && vm.count(option)) throw std::invalid_argument(std::string("--") + option + " goes with --triton");
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
  const auto model = vm["model"].as<std::string>();
  if (triton) {
    perceiver::TritonOptions settings;
    if (vm.count("name")) settings.name = vm["name"].as<std::string>();
    if (vm.count("name") && settings.name.empty())  // the library would take the directory's name
      throw std::invalid_argument("--name is empty: give the model's name, or leave --name out for the directory's");
    if (vm.count("max-batch-size")) settings.max_batch_size = vm["max-batch-size"].as<int32_t>();
    const auto repo = vm["triton"].as<std::string>();
    const auto manifest = perceiver::export_triton_model_dir(model, repo, settings, options, load);
    std::cout << manifest.dump(2) << std::endl;
    const auto dir = std::filesystem::path(repo) / manifest["triton"]["name"].get<std::string>();
    perceiver::trainers::write_export_model_card(model, dir / "1" / "model.pt", dir / "README.md");
    std::cerr << "wrote " << dir.string() << "/{config.pbtxt,perceiver.json,README.md,1/model.pt} ("
              << manifest["architecture"].get<std::string>() << "); serve with: tritonserver --model-repository "
              << repo << "\n";
    return 0;
  }
  const auto out = vm["out"].as<std::string>();
  const auto manifest = perceiver::export_model_dir(model, out, options, load);
  // The model card beside the file: model.pt -> model.README.md.
  const auto card = std::filesystem::path(out).replace_extension(".README.md");
  perceiver::trainers::write_export_model_card(model, out, card);
  // stdout: the manifest (the forward's inputs, their shapes and free dimensions, the outputs).
  std::cout << manifest.dump(2) << std::endl;
  std::cerr << "wrote " << out << " and its model card " << card.string() << " ("
            << manifest["architecture"].get<std::string>() << ")\n";
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("export", "trace a model or checkpoint into one TorchScript file (C++ and Python)", run_export);

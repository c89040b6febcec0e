// `perceiver convert`: turn a Hugging Face model directory with pytorch_model.bin into one with
// model.safetensors. Works at the state-dict level: names, dtypes and shapes are kept as they are.
#include <filesystem>
#include <iostream>

#include "apps/command.h"
#include "apps/options.h"
#include "perceiver/io/safetensors.h"
#include "perceiver/io/torch_bin.h"

namespace {

namespace fs = std::filesystem;

// JSON side files (config, preprocessor, tokenizer) larger than this are not "small" and are left alone.
constexpr std::uintmax_t kMaxJsonBytes = 64u << 20;

int run_convert(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc(
      "perceiver convert: pytorch_model.bin -> model.safetensors (config.json and other *.json copied verbatim)");
  desc.add_options()("help,h", "show this help")(
      "in", po::value<std::string>(), "input model directory (holding pytorch_model.bin and config.json)")(
      "out", po::value<std::string>(), "output directory (created if missing)");
  const auto vm = perceiver::cli::parse(desc, args);
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  if (!vm.count("in") || !vm.count("out")) throw std::runtime_error("both --in and --out are required");
  const fs::path in = vm["in"].as<std::string>(), out = vm["out"].as<std::string>();
  if (!fs::is_directory(in)) throw std::runtime_error("input directory '" + in.string() + "' does not exist");
  const fs::path bin = in / "pytorch_model.bin";
  if (!fs::is_regular_file(bin))
    throw std::runtime_error("'" + bin.string() + "' not found (sharded checkpoints are not supported)");
  if (!fs::is_regular_file(in / "config.json"))
    throw std::runtime_error("'" + (in / "config.json").string() + "' not found");

  const auto tensors = perceiver::io::load_torch_bin(bin);
  fs::create_directories(out);
  perceiver::io::save_safetensors(out / "model.safetensors", tensors);

  int copied = 0;
  for (const auto& entry : fs::directory_iterator(in)) {
    const fs::path& src = entry.path();
    if (!entry.is_regular_file() || src.extension() != ".json" || entry.file_size() > kMaxJsonBytes) continue;
    if (src.filename().string().find(".index.json") != std::string::npos) continue;  // shard index of .bin files
    const fs::path dst = out / src.filename();
    if (fs::exists(dst) && fs::equivalent(src, dst)) continue;
    fs::copy_file(src, dst, fs::copy_options::overwrite_existing);
    ++copied;
  }
  std::cout << "wrote " << (out / "model.safetensors").string() << " (" << tensors.size() << " tensors), copied "
            << copied << " json file(s)\n";
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("convert", "convert a HF model directory's pytorch_model.bin to model.safetensors", run_convert);

#include "apps/options.h"

#include <iostream>

namespace perceiver::cli {

boost::program_options::variables_map parse(
    const boost::program_options::options_description& desc, const std::vector<std::string>& args,
    const boost::program_options::positional_options_description* positional) {
  namespace po = boost::program_options;
  po::command_line_parser parser(args);
  parser.options(desc);
  if (positional) parser.positional(*positional);
  po::variables_map vm;
  po::store(parser.run(), vm);
  po::notify(vm);
  return vm;
}

bool wants_help(const std::vector<std::string>& args, const boost::program_options::options_description& desc) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      std::cout << desc;
      return true;
    }
  return false;
}

void add_device_options(boost::program_options::options_description& desc, const std::string& device_default) {
  namespace po = boost::program_options;
  desc.add_options()("device", po::value<std::string>()->default_value(device_default),
                     "where the model runs: cpu, cuda, cuda:N or auto (a GPU when there is one)")(
      "precision", po::value<std::string>()->default_value("fp32"),
      "fp32, bf16 (autocast), or auto (bf16 where the hardware runs it natively)")(
      "tf32", po::bool_switch(), "allow TF32 matmuls and convolutions on GPUs (faster, ~1e-3 from fp32)");
}

DeviceChoice device_options(const boost::program_options::variables_map& vm) {
  device::allow_tf32(vm["tf32"].as<bool>());
  const auto chosen = device::parse(vm["device"].as<std::string>());
  return {chosen, device::choose_precision(vm["precision"].as<std::string>(), device::bf16_support(chosen)).precision};
}

}  // namespace perceiver::cli

// Boost.Program_options helpers shared by the subcommands.
#pragma once

#include <boost/program_options.hpp>
#include <torch/types.h>
#include <string>
#include <vector>

#include "perceiver/runtime/device.h"

namespace perceiver::cli {

// Parses args against desc (with optional positional arguments) and notifies; unknown options
// and malformed values become exceptions with Boost's message, which main() prints as one line.
boost::program_options::variables_map parse(
    const boost::program_options::options_description& desc, const std::vector<std::string>& args,
    const boost::program_options::positional_options_description* positional = nullptr);

// Prints desc and returns true when args ask for --help/-h; checked before parse(), so that help
// works without the command's required options.
bool wants_help(const std::vector<std::string>& args, const boost::program_options::options_description& desc);

// --device (cpu, cuda, cuda:N, auto) and --precision (fp32, bf16), shared by the commands that run
// a model. `device_default` is what the command does without the option.
void add_device_options(boost::program_options::options_description& desc, const std::string& device_default);
struct DeviceChoice {
  torch::Device device = torch::kCPU;
  device::Precision precision = device::Precision::fp32;
};
// The chosen device (parsed and checked) and precision; also sets TF32 as --tf32 asks (off by default).
DeviceChoice device_options(const boost::program_options::variables_map& vm);

}  // namespace perceiver::cli

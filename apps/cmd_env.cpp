#include <iostream>

#include "apps/command.h"
#include "apps/options.h"
#include "perceiver/runtime/environment.h"
#include "perceiver/runtime/runtime.h"

namespace {

int run_env(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc("perceiver env: print versions, BLAS, threads, oneDNN and CUDA");
  desc.add_options()("help,h", "show this help")("threads", po::value<int>()->default_value(0),
                                                 "intra-op threads (0 = all cores)");
  const auto vm = perceiver::cli::parse(desc, args);
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  perceiver::runtime::set_threads(vm["threads"].as<int>());
  std::cout << perceiver::runtime::environment_report();
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("env", "print versions, BLAS library and core type, threads, oneDNN, CUDA", run_env);

#include <iostream>

#include "apps/command.h"
#include "apps/options.h"
#include "trainers/plot.h"

namespace {

int run_plot(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description desc("perceiver plot RUN_DIR: draw RUN_DIR/metrics.jsonl into RUN_DIR/plots/*.png");
  desc.add_options()("help,h", "show this help")("run-dir", po::value<std::string>(), "run directory")(
      "width", po::value<int>()->default_value(1000), "image width in pixels")(
      "height", po::value<int>()->default_value(600), "image height in pixels");
  po::positional_options_description positional;
  positional.add("run-dir", 1);
  const auto vm = perceiver::cli::parse(desc, args, &positional);
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  if (!vm.count("run-dir")) {
    std::cerr << "perceiver plot: missing RUN_DIR\n" << desc;
    return 2;
  }
  perceiver::trainers::PlotOptions options;
  options.width = vm["width"].as<int>();
  options.height = vm["height"].as<int>();
  for (const auto& png : perceiver::trainers::plot_run(vm["run-dir"].as<std::string>(), options)) {
    std::cout << png.string() << "\n";
  }
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("plot", "draw a run's metrics (loss, metrics, lr) as PNG charts in RUN_DIR/plots", run_plot);

#include <fmt/format.h>

#include <cstdio>
#include <iostream>
#include <utility>

#include "apps/command.h"
#include "apps/options.h"
#include "trainers/bench.h"

namespace {

namespace po = boost::program_options;

int run_bench(const std::vector<std::string>& args) {
  po::options_description desc(
      "perceiver bench [--only NAME...] [--iters N] [--warmup N] [--threads N] [--json] [--profile N]\n"
      "  times each workload (median of the timed iterations) and compares it with the fp32 and bf16\n"
      "  GEMM peak measured in the same run (2048^3 torch::mm)\n\noptions");
  desc.add_options()("help,h", "show this help")("only", po::value<std::vector<std::string>>()->multitoken(),
                                                 "workloads to run (default: all)")(
      "iters", po::value<int>()->default_value(5), "timed iterations per workload")(
      "warmup", po::value<int>()->default_value(2), "untimed iterations first")(
      "threads", po::value<int>()->default_value(0), "intra-op threads (0 = all cores)")(
      "json", po::bool_switch(), "one JSON object per line instead of a table")(
      "configs-dir", po::value<std::string>()->default_value("configs"),
      "run files timed by the 'configs' workload")("profile", po::value<int>()->default_value(0),
      "after timing, profile one more iteration and show its N most expensive operators (self time)")(
      "data-text-mb", po::value<double>()->default_value(20), "data-text: the 1x corpus size in MB (10x is also run)")(
      "data-images", po::value<int64_t>()->default_value(200), "data-images: the 1x number of JPEGs (10x is also run)")(
      "data-dir", po::value<std::string>()->default_value(""),
      "data workloads: generate into (and reuse from) this folder instead of a temporary one");
  perceiver::cli::add_device_options(desc, "cpu");
  const auto vm = perceiver::cli::parse(desc, args);
  if (vm.count("help")) {
    std::cout << desc << "\nworkloads:";
    for (const auto& [name, fn] : perceiver::trainers::bench_workloads()) std::cout << " " << name;
    std::cout << "\n";
    return 0;
  }
  perceiver::trainers::BenchOptions options;
  if (vm.count("only")) options.only = vm["only"].as<std::vector<std::string>>();
  options.iters = vm["iters"].as<int>();
  options.warmup = vm["warmup"].as<int>();
  options.threads = vm["threads"].as<int>();
  options.profile = vm["profile"].as<int>();
  options.data_text_mb = vm["data-text-mb"].as<double>();
  options.data_images = vm["data-images"].as<int64_t>();
  options.data_dir = vm["data-dir"].as<std::string>();
  options.configs_dir = vm["configs-dir"].as<std::string>();
  const auto choice = perceiver::cli::device_options(vm);
  options.device = choice.device;
  options.precision = choice.precision;
  if (options.iters < 1 || options.warmup < 0) throw std::invalid_argument("--iters must be >= 1 and --warmup >= 0");
  const bool json = vm["json"].as<bool>();
  bool header_printed = false;  // printed with the first result, so that a refused --only prints no table
  const auto peak = perceiver::trainers::run_bench(options, [&](const perceiver::trainers::BenchResult& r) {
    if (json) {
      std::cout << r.to_json().dump() << std::endl;
      return;
    }
    if (!std::exchange(header_printed, true))
      std::printf("%-28s %-6s %12s %10s %10s %9s %10s %8s %7s %7s\n", "workload", "prec", "parameters", "s/iter",
                  "samples/s", "RSS MB", "GFLOP/it", "GFLOP/s", "fp32pk", "bf16pk");
    std::printf("%-28s %-6s %12lld %10.4f %10.2f %9.0f %10.2f %8.1f %7.3f %7.3f\n", r.workload.c_str(),
                r.precision.c_str(), static_cast<long long>(r.num_parameters), r.seconds_per_iter, r.samples_per_s,
                r.peak_rss_mb, r.gflop_per_iter, r.gflops, r.fp32_peak_fraction, r.bf16_peak_fraction);
    std::string notes;  // a workload's own scalar figures (time to the first batch, RSS ratio, ...)
    for (const auto& [key, value] : r.extra.items())
      if (value.is_number()) notes += fmt::format("{}{} {:.4g}", notes.empty() ? "    " : ", ", key, value.get<double>());
    if (!notes.empty()) std::printf("%s\n", notes.c_str());
    if (r.extra.contains("profile"))
      for (const auto& op : r.extra["profile"])
        std::printf("    %-40s self %9.2f ms %5.1f %%   total %9.2f ms %7lld calls\n", op["op"].get<std::string>().c_str(),
                    op["self_ms"].get<double>(), 100 * op["self_share"].get<double>(), op["total_ms"].get<double>(),
                    static_cast<long long>(op["calls"].get<int64_t>()));
    std::fflush(stdout);
  });
  const nlohmann::json summary = {{"device", options.device.str()},
                                  {"gemm_peak_fp32_gflops", peak.fp32_gflops},
                                  {"gemm_peak_fp32_backend", peak.fp32_backend},
                                  {"gemm_aten_mm_fp32_gflops", peak.fp32_aten_gflops},
                                  {"gemm_peak_bf16_gflops", peak.bf16_gflops},
                                  {"bf16_hardware", peak.bf16_hardware},
                                  {"cpu_bf16_flags", peak.cpu_flags}};
  if (json)
    std::cout << summary.dump() << std::endl;
  else
    std::printf("GEMM peak (%s, same threads): fp32 %.1f GFLOP/s (%s; ATen mm %.1f), bf16 %.1f GFLOP/s%s\n",
                options.device.is_cuda() ? "8192^3 mm on the GPU" : "2048^3 mm", peak.fp32_gflops,
                peak.fp32_backend.c_str(), peak.fp32_aten_gflops,
                peak.bf16_gflops,
                peak.cpu_flags.empty() ? " (/proc/cpuinfo lists none of avx512_bf16, amx_bf16, amx_tile)"
                                       : (" (CPU flags: " + peak.cpu_flags + ")").c_str());
  return 0;
}

}  // namespace

PERCEIVER_COMMAND("bench", "time training and inference workloads against the same run's GEMM peak", run_bench);

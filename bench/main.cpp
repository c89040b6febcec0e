// Google Benchmark entry point: the same process set-up as the shipped CLI.
#include <benchmark/benchmark.h>

#include "apps/process_setup.h"
#include "perceiver/runtime/runtime.h"

int main(int argc, char** argv) {
  perceiver::cli::prepare_process(argc, argv);
  perceiver::runtime::set_threads(0);
  ::benchmark::Initialize(&argc, argv);
  if (::benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ::benchmark::RunSpecifiedBenchmarks();
  ::benchmark::Shutdown();
  return 0;
}

// Google Benchmark entry point: same BLAS environment as the shipped CLI.
#include <benchmark/benchmark.h>

#include "perceiver/runtime.h"

int main(int argc, char** argv) {
  perceiver::runtime::ensure_blas_environment(argc, argv);
  perceiver::runtime::keep_freed_memory();
  perceiver::runtime::set_threads(0);
  ::benchmark::Initialize(&argc, argv);
  if (::benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ::benchmark::RunSpecifiedBenchmarks();
  ::benchmark::Shutdown();
  return 0;
}

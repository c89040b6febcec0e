// The data loader's wait measurement in real time (the tests check it by the order of events only,
// tests/datasets/test_loader.cpp): the fraction of a consumer's time spent waiting for batches, for a
// consumer starved by a slow data set and for one whose workers keep ahead of it. Expect the first
// near 1 and the second near 0; they are reported as counters, not checked, since they depend on the
// machine's scheduler.
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <thread>

#include "datasets/loader.h"

namespace {

namespace pd = perceiver::datasets;

std::shared_ptr<pd::Dataset> examples(int64_t n, std::chrono::milliseconds each) {
  return std::make_shared<pd::FunctionDataset>(n, [each](int64_t i) {
    if (each.count() > 0) std::this_thread::sleep_for(each);
    return pd::Example{{"index", torch::tensor(i)}};
  });
}

// Starved: one worker reads 24 examples of 5 ms each in batches of 4; the consumer does nothing else.
void BM_LoaderWaitStarved(benchmark::State& state) {
  double fraction = 0;
  for (auto _ : state) {
    pd::LoaderOptions opt;
    opt.batch_size = 4;
    opt.num_workers = 1;
    pd::DataLoader loader(examples(24, std::chrono::milliseconds(5)), opt);
    while (loader.next()) {
    }
    fraction += loader.wait_fraction();
  }
  state.counters["wait_fraction"] = fraction / static_cast<double>(state.iterations());
}
BENCHMARK(BM_LoaderWaitStarved)->Iterations(5)->Unit(benchmark::kMillisecond);

// Fed: two workers, 8 batches ahead, read instant examples; the consumer spends 20 ms on each batch.
void BM_LoaderWaitFed(benchmark::State& state) {
  double fraction = 0;
  for (auto _ : state) {
    pd::LoaderOptions opt;
    opt.batch_size = 2;
    opt.num_workers = 2;
    opt.prefetch_batches = 8;
    pd::DataLoader loader(examples(24, std::chrono::milliseconds(0)), opt);
    loader.next();  // thread start-up is not steady state
    loader.reset_timing();
    while (loader.next()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    fraction += loader.wait_fraction();
  }
  state.counters["wait_fraction"] = fraction / static_cast<double>(state.iterations());
}
BENCHMARK(BM_LoaderWaitFed)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace

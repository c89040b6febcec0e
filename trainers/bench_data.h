// `perceiver bench` workloads of the data path alone: a generated text corpus and a generated folder of
// JPEGs, each at 1x and 10x a size, read through the sources and the loader the trainer uses. Each
// reports examples/s, the time to the first batch (index or listing included) and the peak RSS, whose
// ratio between 10x and 1x shows whether memory grows with the data set.
#pragma once

#include <vector>

#include "trainers/bench.h"

namespace perceiver::trainers {

std::vector<BenchResult> data_text(const BenchOptions& options);
#if PERCEIVER_WITH_OPENCV
std::vector<BenchResult> data_images(const BenchOptions& options);
#endif

}  // namespace perceiver::trainers

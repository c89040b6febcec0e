// What `perceiver env` prints: versions, BLAS, malloc, matrix-product backends, threads, oneDNN,
// OpenMP and the GPUs.
#pragma once

#include <string>

namespace perceiver::runtime {

// A multi-line, human-readable report.
std::string environment_report();

}  // namespace perceiver::runtime

// Process-level set-up shared by every binary the project ships (CLI, tests, benchmarks).
#pragma once

#include <string>

namespace perceiver::runtime {

// OpenBLAS reads OPENBLAS_CORETYPE when it is loaded, i.e. before main() runs. If the variables
// that select the fast kernels are missing, set them and re-execute the program once so that
// the freshly loaded library sees them. Safe on CPUs without AVX-512 (Haswell kernels on AVX2,
// nothing on older CPUs). Does nothing when PERCEIVER_NO_REEXEC is set.
void ensure_blas_environment(int argc, char** argv);

// Intra-op threads: n > 0 sets that many, n <= 0 uses every core.
void set_threads(int n);

// The core type OpenBLAS should use on this CPU ("SkylakeX", "Haswell" or "" for default).
std::string preferred_openblas_coretype();

// The BLAS shared library actually mapped into this process (from /proc/self/maps).
std::string loaded_blas_library();

// A multi-line, human-readable report: versions, BLAS, threads, oneDNN, CUDA.
std::string environment_report();

}  // namespace perceiver::runtime

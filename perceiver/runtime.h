// Process-level set-up shared by every binary the project ships (CLI, tests, benchmarks).
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace perceiver::runtime {

// OpenBLAS reads OPENBLAS_CORETYPE when it is loaded, i.e. before main() runs, and libgomp reads
// GOMP_SPINCOUNT when it starts. If the variables that select the fast kernels and a short spin of
// idle OpenMP threads (1,000 spins, unless OMP_WAIT_POLICY is set) are missing, set them and
// re-execute the program once so that the freshly loaded libraries see them. Safe on CPUs without
// AVX-512 (Haswell kernels on AVX2, nothing on older CPUs). Does nothing when PERCEIVER_NO_REEXEC is set.
void ensure_blas_environment(int argc, char** argv);

// glibc serves blocks above 32 MB (activations of a batch) with mmap and returns them on free, so
// every training step page-faults its activations in again: half the CPU time on the optical-flow
// model. This keeps freed memory in the process (mmap off, no trimming): about 1.9x faster flow
// training for about 25 % more peak RSS. Leaves malloc alone where the user tuned it (MALLOC_*_,
// GLIBC_TUNABLES) or set PERCEIVER_SYSTEM_MALLOC. Returns whether it changed anything.
bool keep_freed_memory();

// Intra-op threads: n > 0 sets that many, n <= 0 uses every core.
void set_threads(int n);

// The core type OpenBLAS should use on this CPU ("SkylakeX", "Haswell" or "" for default).
std::string preferred_openblas_coretype();

// The BLAS shared library actually mapped into this process (from /proc/self/maps).
std::string loaded_blas_library();
// The malloc in use: the tcmalloc, jemalloc or mimalloc library mapped into the process, else "glibc malloc".
std::string malloc_library();

// The CPU's "model name" in /proc/cpuinfo ("" where there is none).
std::string cpu_model_name();

// Whether /proc/cpuinfo lists `flag` (e.g. "avx512_bf16", "amx_bf16", "amx_tile") for this CPU.
bool cpu_has_flag(const std::string& flag);

// Peak resident memory of this process in MB since start or the last reset_peak_rss() (Linux's
// VmHWM; the reset writes 5 to /proc/self/clear_refs and returns false where that is refused).
double peak_rss_mb();
bool reset_peak_rss();

// A multi-line, human-readable report: versions, BLAS, threads, oneDNN, CUDA.
std::string environment_report();

// Raises spdlog's level for a scope (e.g. to warn: info lines hidden, warnings and errors shown) and
// puts the previous level back at its end.
class ScopedLogLevel {
 public:
  explicit ScopedLogLevel(spdlog::level::level_enum level) : previous_(spdlog::get_level()) { spdlog::set_level(level); }
  ~ScopedLogLevel() { spdlog::set_level(previous_); }
  ScopedLogLevel(const ScopedLogLevel&) = delete;
  ScopedLogLevel& operator=(const ScopedLogLevel&) = delete;

 private:
  spdlog::level::level_enum previous_;
};

}  // namespace perceiver::runtime

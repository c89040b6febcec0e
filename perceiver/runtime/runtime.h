// Facts about the process and the machine (threads, BLAS, malloc, CPU flags, memory) for reports and defaults.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace perceiver::runtime {

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

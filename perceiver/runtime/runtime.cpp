#include "perceiver/runtime/runtime.h"

#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace perceiver::runtime {
std::string preferred_openblas_coretype() {
  if (cpu_has_flag("avx512f")) return "SkylakeX";
  if (cpu_has_flag("avx2")) return "Haswell";
  return "";
}

void set_threads(int n) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n > 0 ? n : cores);
}

namespace {
// The resolved path of the first library mapped into this process whose file name contains `part`.
std::string mapped_library(const std::string& part) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string file = path.substr(path.rfind('/') + 1);
    if (file.find(part) != std::string::npos) {
      std::error_code ec;
      const auto real = std::filesystem::canonical(path, ec);
      return ec ? path : real.string();
    }
  }
  return "";
}
}  // namespace

std::string loaded_blas_library() {
  const auto path = mapped_library("blas");
  return path.empty() ? "(none mapped)" : path;
}

std::string malloc_library() {
  for (const char* name : {"tcmalloc", "jemalloc", "mimalloc"})
    if (auto path = mapped_library(name); !path.empty()) return path;
  return "glibc malloc";
}

std::string cpu_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) {
      const auto value = line.substr(line.find(':') + 1);
      const auto first = value.find_first_not_of(" \t");
      return first == std::string::npos ? "" : value.substr(first);
    }
  return "";
}

bool cpu_has_flag(const std::string& flag) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::string word;
    while (words >> word)
      if (word == flag) return true;
    return false;
  }
  return false;
}

double peak_rss_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // "VmHWM:   123 kB"
  return 0.0;
}

bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

}  // namespace perceiver::runtime

#include "perceiver/runtime.h"

#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>
#include <vector>

#include <spdlog/fmt/fmt.h>

#include "perceiver/device.h"
#include "perceiver/matmul.h"

namespace perceiver::runtime {
namespace {

// `name` as the process started with it (/proc/self/environ: what libraries read when they were
// loaded; a later setenv does not show there), or "(unset)".
std::string env_or_unset(const char* name) {
  std::ifstream environ_file("/proc/self/environ", std::ios::binary);
  const std::string prefix = std::string(name) + "=";
  std::string entry;
  while (std::getline(environ_file, entry, '\0'))
    if (entry.rfind(prefix, 0) == 0) return entry.substr(prefix.size());
  return "(unset)";
}

}  // namespace

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

std::string environment_report() {
  std::ostringstream out;
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  out << "perceiver-cpp " << PERCEIVER_VERSION << "\n"
      << "libtorch " << TORCH_VERSION << "\n"
      << "blas library " << loaded_blas_library() << "\n"
      << "malloc " << malloc_library() << "\n"
      << "float32 matmul " << ops::matmul_backend() << "\n"
      << "bf16 matmul (autocast) " << ops::matmul_backend(torch::kBFloat16) << "\n"
      << "OPENBLAS_CORETYPE " << (coretype ? coretype : "(unset)") << " (preferred for this CPU: "
      << (preferred_openblas_coretype().empty() ? "default" : preferred_openblas_coretype()) << ")\n"
      << "intra-op threads " << at::get_num_threads() << "\n"
      << "inter-op threads " << at::get_num_interop_threads() << "\n"
      << "hardware threads " << std::thread::hardware_concurrency() << "\n"
      << "onednn (mkldnn) " << (at::hasMKLDNN() ? "yes" : "no") << "\n"
      << "openmp " << (at::hasOpenMP() ? "yes" : "no") << " (OMP_WAIT_POLICY " << env_or_unset("OMP_WAIT_POLICY")
      << ", GOMP_SPINCOUNT " << env_or_unset("GOMP_SPINCOUNT") << ")\n"
      << "cuda " << (torch::cuda::is_available() ? "available, " + std::to_string(torch::cuda::device_count()) + " device(s)" : "not available") << "\n";
  const auto accel = device::accelerator_report();
  out << "libtorch cuda build " << (accel.built_with_cuda ? "yes" : "no") << "\n";
  auto or_none = [](const std::string& s) { return s.empty() ? std::string("none") : s; };
  if (accel.built_with_cuda)
    out << "cuda runtime " << or_none(accel.cuda_runtime) << ", driver " << or_none(accel.cuda_driver) << "\n"
        << "cudnn " << or_none(accel.cudnn) << "\n";
  out << "nccl " << or_none(accel.nccl) << "\n";
  for (const auto& g : accel.gpus)
    out << fmt::format("gpu {} {}, {:.1f} GiB, compute capability {}.{}\n", g.index, g.name, g.memory_gib, g.major, g.minor);
  return out.str();
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

#include "perceiver/runtime/environment.h"

#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include <spdlog/fmt/fmt.h>

#include "perceiver/runtime/device.h"
#include "perceiver/ops/matmul.h"
#include "perceiver/runtime/runtime.h"

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

}  // namespace perceiver::runtime

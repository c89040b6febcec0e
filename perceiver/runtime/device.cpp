#include "perceiver/runtime/device.h"

#include <dlfcn.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "perceiver/runtime/runtime.h"
#include "perceiver/ops/torch_compat.h"

#if PERCEIVER_WITH_CUDA
#include <ATen/detail/CUDAHooksInterface.h>
#include <cuda_runtime_api.h>
#endif

namespace perceiver::device {

torch::Device parse(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (name.rfind("cuda", 0) != 0)
    throw std::invalid_argument("unknown device '" + name + "' (expected cpu, cuda, cuda:N or auto)");
  torch::Device device = torch::kCPU;
  try {
    device = torch::Device(name);
  } catch (const c10::Error&) {
    throw std::invalid_argument("unknown device '" + name + "' (expected cpu, cuda, cuda:N or auto)");
  }
#if !PERCEIVER_WITH_CUDA
  throw std::invalid_argument("device '" + name + "': this perceiver is built against a CPU-only LibTorch (" +
                              compat::torch_version() + "); build against a CUDA LibTorch (README, GPU) to use GPUs");
#endif
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (count == 0) throw std::invalid_argument("device '" + name + "': no CUDA GPU is visible on this machine");
  const int64_t index = device.has_index() ? device.index() : 0;
  if (index >= count)
    throw std::invalid_argument("device '" + name + "': this machine has " + std::to_string(count) + " GPU(s)");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

torch::Tensor to(const torch::Tensor& t, const torch::Device& device) {
  if (t.device() == device) return t;
  if (device.is_cuda() && t.device().is_cpu()) {
    const auto pinned = t.is_pinned() ? t : t.pin_memory();
    return pinned.to(device, /*non_blocking=*/true);
  }
  return t.to(device);
}

std::map<std::string, torch::Tensor> to(const std::map<std::string, torch::Tensor>& tensors, const torch::Device& device) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : tensors) out[name] = to(t, device);
  return out;
}

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  throw std::invalid_argument("unknown precision '" + name + "' (expected fp32 or bf16)");
}

std::string to_string(Precision precision) { return precision == Precision::bf16 ? "bf16" : "fp32"; }

Bf16Support bf16_support(bool cuda, const std::vector<std::string>& cpu_flags, const std::string& gpu_name,
                         int compute_capability_major) {
  if (cuda) {
    const auto gpu = gpu_name + " (compute capability " + std::to_string(compute_capability_major) + ".x)";
    return compute_capability_major >= 8 ? Bf16Support{true, gpu + " has bf16 tensor cores"}
                                         : Bf16Support{false, gpu + " has no bf16 tensor cores"};
  }
  for (const char* flag : {"amx_bf16", "avx512_bf16"})
    if (std::find(cpu_flags.begin(), cpu_flags.end(), flag) != cpu_flags.end())
      return {true, std::string("this CPU lists ") + flag};
  return {false, "this CPU lists neither avx512_bf16 nor amx_bf16 in /proc/cpuinfo"};
}

Bf16Support bf16_support(const torch::Device& device) {
  if (device.is_cuda()) {
#if PERCEIVER_WITH_CUDA
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, device.index()) == cudaSuccess) return bf16_support(true, {}, p.name, p.major);
#endif
    return {true, "the GPU's properties are unavailable; assumed to run bf16"};
  }
  std::vector<std::string> flags;
  for (const char* flag : {"amx_bf16", "avx512_bf16"})
    if (runtime::cpu_has_flag(flag)) flags.emplace_back(flag);
  return bf16_support(false, flags, "", 0);
}

std::string bf16_slowdown_warning(const torch::Device& device) {
  const auto support = bf16_support(device);
  if (support.native) return "";
  return "bf16 requested, but " + support.evidence + ": bf16 is emulated here and expected to be slower than fp32";
}

PrecisionChoice choose_precision(const std::string& setting, const Bf16Support& support) {
  if (setting != "auto") return {parse_precision(setting), "set to " + setting};
  if (support.native) return {Precision::bf16, "auto: " + support.evidence};
  return {Precision::fp32, "auto: " + support.evidence + " (bf16 would be emulated, slower than fp32)"};
}

AutocastGuard::AutocastGuard(const torch::Device& device, Precision precision) : type_(device.type()) {
  if (precision != Precision::bf16) return;
  active_ = true;
  was_enabled_ = compat::autocast_enabled(type_);
  compat::set_autocast(type_, true, torch::kBFloat16);
  compat::enter_autocast();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  compat::leave_autocast();
  compat::set_autocast(type_, was_enabled_, torch::kBFloat16);
}

void allow_tf32(bool allow) { compat::set_allow_tf32(allow); }

void set_deterministic(bool deterministic) {
  // cuBLAS reads this when its first handle is made: set it before any GPU matmul.
  if (deterministic) setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setDeterministicAlgorithms(deterministic, /*warn_only=*/false);
}

std::map<std::string, torch::Tensor> cuda_rng_states() {
  std::map<std::string, torch::Tensor> out;
  if (!torch::cuda::is_available()) return out;
  for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i) {
    const torch::Device d(torch::kCUDA, static_cast<c10::DeviceIndex>(i));
    out["cuda:" + std::to_string(i)] = at::globalContext().defaultGenerator(d).get_state();
  }
  return out;
}

std::vector<std::string> set_cuda_rng_states(const std::map<std::string, torch::Tensor>& states) {
  std::vector<std::string> missing;
  const auto count = torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
  for (const auto& [name, state] : states) {
    const torch::Device d(name);
    if (!d.is_cuda() || d.index() >= count) {
      missing.push_back(name);
      continue;
    }
    auto generator = at::globalContext().defaultGenerator(d);
    generator.set_state(state);
  }
  return missing;
}

namespace {

// NCCL comes with CUDA LibTorch as its own shared library; its version is read from the loaded
// library itself, so no header is needed (and a CPU build simply finds none).
std::string nccl_version() {
  using GetVersion = int (*)(int*);
  const auto fn = reinterpret_cast<GetVersion>(dlsym(RTLD_DEFAULT, "ncclGetVersion"));
  int v = 0;
  if (fn == nullptr || fn(&v) != 0) return "";
  // 2.x encodes major*10000 + minor*100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

#if PERCEIVER_WITH_CUDA
std::string cuda_version_string(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
#endif

}  // namespace

AcceleratorReport accelerator_report() {
  AcceleratorReport r;
#if PERCEIVER_WITH_CUDA
  r.built_with_cuda = true;
  int v = 0;
  if (cudaRuntimeGetVersion(&v) == cudaSuccess) r.cuda_runtime = cuda_version_string(v);
  if (cudaDriverGetVersion(&v) == cudaSuccess && v > 0) r.cuda_driver = cuda_version_string(v);
  if (torch::cuda::is_available()) {
    for (int i = 0; i < static_cast<int>(torch::cuda::device_count()); ++i) {
      cudaDeviceProp p{};
      if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
      r.gpus.push_back({i, p.name, static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024 * 1024), p.major, p.minor});
    }
    if (at::detail::getCUDAHooks().compiledWithCuDNN()) {
      const long c = at::detail::getCUDAHooks().versionCuDNN();
      // cuDNN 9 encodes major*10000 + minor*100 + patch, cuDNN 8 major*1000 + minor*100 + patch.
      r.cudnn = c >= 90000 ? std::to_string(c / 10000) + "." + std::to_string(c / 100 % 100) + "." + std::to_string(c % 100)
                           : std::to_string(c / 1000) + "." + std::to_string(c / 100 % 10) + "." + std::to_string(c % 100);
    }
  }
#endif
  r.nccl = nccl_version();
  return r;
}

}  // namespace perceiver::device

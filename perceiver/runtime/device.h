// Where tensors live and how they get there: device names, host-to-GPU copies, mixed precision,
// TF32, the CUDA generators' states (for exact resume) and a report of the GPUs, CUDA, cuDNN and NCCL.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

namespace perceiver::device {

// "cpu", "cuda", "cuda:N" or "auto" (the first GPU when CUDA is available, else the CPU). Asking
// for a GPU that this build or machine lacks is an error naming what is missing.
torch::Device parse(const std::string& name);

// `t` on `device`. Host tensors bound for a GPU go through pinned memory with a non-blocking copy,
// so the copy overlaps the work queued before it.
torch::Tensor to(const torch::Tensor& t, const torch::Device& device);
// Every tensor of a name -> tensor map (a batch, HF-named inputs) moved as above.
std::map<std::string, torch::Tensor> to(const std::map<std::string, torch::Tensor>& tensors, const torch::Device& device);

// Waits until the work queued on `device` is done (a no-op on the CPU): before a timer reads.
void synchronize(const torch::Device& device);

// Mixed precision of the forward pass: "fp32" (none) or "bf16" (autocast to bfloat16 on the
// device's type; softmax, layer norms and losses stay in fp32 as autocast decides).
enum class Precision { fp32, bf16 };
Precision parse_precision(const std::string& name);  // fp32 or bf16
std::string to_string(Precision precision);

// Whether bf16 runs natively on a device, and the fact that decides it: a GPU of compute capability 8
// or more, or a CPU whose /proc/cpuinfo lists avx512_bf16 or amx_bf16. Elsewhere bf16 is emulated and
// slower than fp32 (measured: 11 against 314 samples/s on an AVX2-only CPU).
struct Bf16Support {
  bool native = false;
  std::string evidence;  // e.g. "this CPU lists avx512_bf16"
};
Bf16Support bf16_support(const torch::Device& device);
// The same decision from given facts: `cpu_flags` as /proc/cpuinfo lists them; on a GPU its name and
// compute capability (major).
Bf16Support bf16_support(bool cuda, const std::vector<std::string>& cpu_flags, const std::string& gpu_name,
                         int compute_capability_major);

// "" where bf16 on `device` has hardware behind it; otherwise a warning that bf16 will be slower than fp32 there.
std::string bf16_slowdown_warning(const torch::Device& device);

// A precision setting (fp32, bf16 or auto) resolved for a device: auto picks bf16 where the hardware
// runs it natively and fp32 elsewhere; `reason` says why, for the log.
struct PrecisionChoice {
  Precision precision = Precision::fp32;
  std::string reason;
};
PrecisionChoice choose_precision(const std::string& setting, const Bf16Support& support);

// Autocast on `device`'s type for the guard's lifetime when `precision` is bf16.
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, Precision precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  bool was_enabled_ = false;
  c10::DeviceType type_;
};

// TF32 matmuls and convolutions on GPUs that have it: off by default so that results match fp32
// references; on trades about 10 bits of mantissa for speed.
void allow_tf32(bool allow);

// Deterministic kernels only (an error names any op that has none), so that a run and its resume
// give bit-identical weights on a GPU too; sets CUBLAS_WORKSPACE_CONFIG=:4096:8 unless it is set.
void set_deterministic(bool deterministic);

// The default generator state of every CUDA device ("cuda:0", ...); empty without CUDA.
std::map<std::string, torch::Tensor> cuda_rng_states();
// Restores states from cuda_rng_states(). Returns the names of the states it could not restore
// because this build or machine lacks that GPU (e.g. a GPU run resumed on a CPU).
std::vector<std::string> set_cuda_rng_states(const std::map<std::string, torch::Tensor>& states);

struct GpuInfo {
  int index = 0;
  std::string name;
  double memory_gib = 0;
  int major = 0, minor = 0;  // compute capability
};
struct AcceleratorReport {
  bool built_with_cuda = false;
  std::vector<GpuInfo> gpus;
  std::string cuda_runtime, cuda_driver, cudnn, nccl;  // "" where not present
};
AcceleratorReport accelerator_report();

}  // namespace perceiver::device

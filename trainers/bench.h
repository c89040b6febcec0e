// `perceiver bench`: training and inference workloads timed against the GEMM peak measured in the
// same run (2048^3 torch::mm with the same threads), so that figures from these shared machines,
// whose absolute speed moves by 30 % between runs, compare as fractions and ratios.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <string>
#include <vector>

#include "perceiver/runtime/device.h"

namespace perceiver::trainers {

struct BenchOptions {
  std::vector<std::string> only;  // workload names; empty: all
  int iters = 5;                  // timed iterations (the median is reported)
  int warmup = 2;
  int threads = 0;  // intra-op threads, 0: all cores
  torch::Device device = torch::kCPU;
  device::Precision precision = device::Precision::fp32;  // bf16: the workloads' forwards under autocast
  std::filesystem::path configs_dir = "configs";  // the `configs` workload: every *.yaml run file in it
  int profile = 0;  // > 0: one more iteration per workload under OpProfile, its top `profile` ops in `extra`
  // The data workloads (data-text, data-images) at 1x and 10x these sizes: generated into data_dir
  // (kept and reused there) or, when empty, into a temporary folder removed afterwards.
  double data_text_mb = 20;
  int64_t data_images = 200;
  std::filesystem::path data_dir;
};

struct GemmPeak {
  double fp32_gflops = 0;        // through the model's own products (ops::matmul: oneDNN where built)
  double fp32_aten_gflops = 0;   // through ATen's mm (the system BLAS on a CPU), for comparison
  double bf16_gflops = 0;
  std::string fp32_backend;      // ops::matmul_backend()
  bool bf16_hardware = false;  // avx512_bf16 or amx_bf16 in /proc/cpuinfo
  std::string cpu_flags;       // the bf16/AMX flags present, for the record
};

struct BenchResult {
  std::string workload;
  std::string precision = "fp32";
  int64_t num_parameters = 0;
  double seconds_per_iter = 0;  // median
  double samples_per_s = 0;
  double peak_rss_mb = 0;
  double gflop_per_iter = 0;  // analytic: matmuls and attention, training = 3x forward
  double gflops = 0;
  double fp32_peak_fraction = 0;
  double bf16_peak_fraction = 0;
  // Workload-specific fields (e.g. scaling's exponent) and, with BenchOptions::profile, "profile": one
  // {op, self_ms, total_ms, calls, self_share} per operator of one iteration, largest self time first.
  nlohmann::json extra = nlohmann::json::object();
  nlohmann::json to_json() const;
};

// Shapes that fix a Perceiver's forward cost beyond its config.
struct FlopShape {
  int64_t batch = 1;
  int64_t inputs = 0;      // M: positions the encoder cross-attends to
  int64_t queries = 0;     // decoder queries
  double extra_macs = 0;   // multiply-adds outside the Perceiver layers (projections, output embeddings), per example
};
// Forward GFLOPs (2 per multiply-add) of every encoder cross-attention, self-attention (times
// num_blocks) and decoder cross-attention layer of `model`, their channels read from its weights:
// Q/K/V projections, scores, weighted values, output projection and MLP; LayerNorm and softmax left out.
double forward_gflop(torch::nn::Module& model, int64_t num_latents, int64_t num_blocks, const FlopShape& shape);

// Median time of n^3 matrix products in fp32 and bf16 on `device` (n = 2048 on a CPU, 8192 on a GPU).
GemmPeak measure_gemm_peak(int iters, const torch::Device& device = torch::kCPU);

// The workloads by name (mlm-train, mlm-infer-full, img-train, flow-infer, scaling, configs, data-text,
// data-images). `configs`
// times the training steps of every run file in BenchOptions::configs_dir as `perceiver train` runs
// them (data loading included, the file's own precision), one result "config:<name>" each; it counts
// no FLOPs (gflop_per_iter 0).
using BenchWorkload = std::function<std::vector<BenchResult>(const BenchOptions& options)>;
const std::map<std::string, BenchWorkload>& bench_workloads();

// Measures the peak, then runs the selected workloads, calling on_result as each result is ready
// (fractions filled in). Throws naming an unknown workload and listing the known ones.
GemmPeak run_bench(const BenchOptions& options, const std::function<void(const BenchResult&)>& on_result);

}  // namespace perceiver::trainers

#include "tests/test_support.h"

#include "perceiver/models/attention.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>

namespace perceiver::testing {

std::filesystem::path hf_fixtures_dir() {
  if (const char* env = std::getenv("PERCEIVER_FIXTURES")) return env;
  return std::filesystem::path(PERCEIVER_SOURCE_DIR) / ".." / "shared" / "fixtures" / "hf";
}

namespace {

torch::Device choose_test_device() {
  const char* env = std::getenv("PERCEIVER_TEST_DEVICE");
  const std::string name = env ? env : "";
  if (name.empty() || name == "cpu") return torch::kCPU;
  const std::string what = "PERCEIVER_TEST_DEVICE='" + name + "'";
  std::optional<torch::Device> device;
  try {
    device = torch::Device(name);
  } catch (const std::exception&) {
  }
  if (!device || !device->is_cuda())
    throw std::runtime_error(what + " is not a device these tests run on (expected cpu, cuda or cuda:N)");
  // Never a silent fallback: a GPU run that quietly tested the CPU would pass for the wrong reason.
  if (!torch::cuda::is_available())
    throw std::runtime_error(what + " but CUDA is not available (this LibTorch build has no CUDA, or no GPU or "
                             "driver is visible); not falling back to the CPU");
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (!device->has_index()) device = torch::Device(torch::kCUDA, 0);
  if (device->index() >= count)
    throw std::runtime_error(what + " but only " + std::to_string(count) + " CUDA device(s) are visible");
  // fp32 matmuls and convolutions in full precision, as on the CPU that produced the references.
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  return *device;
}

}  // namespace

torch::Device test_device() {
  static std::optional<torch::Device> chosen;
  if (!chosen) {
    chosen = choose_test_device();  // a throw leaves it unset: every test that asks fails the same way
    std::cout << "[ device   ] model tests run on " << chosen->str()
              << (chosen->is_cuda() ? " (PERCEIVER_TEST_DEVICE; TF32 off; parity tolerance >= 1e-4)" : "") << std::endl;
  }
  return *chosen;
}

double parity_tolerance(double cpu_tolerance) {
  return test_device().is_cpu() ? cpu_tolerance : std::max(cpu_tolerance, 1e-4);
}

torch::Tensor on_test_device(const torch::Tensor& t) { return t.defined() ? t.to(test_device()) : t; }

std::map<std::string, torch::Tensor> on_test_device(const std::map<std::string, torch::Tensor>& tensors) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : tensors) out[name] = on_test_device(t);
  return out;
}

std::map<std::string, torch::Tensor> parameter_gradients(torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model.named_parameters())
    out[p.key()] = p.value().grad().defined() ? p.value().grad().clone() : torch::zeros_like(p.value());
  return out;
}

double scaled_error(const torch::Tensor& actual, const torch::Tensor& expected, double largest, double floor) {
  TORCH_CHECK(actual.sizes() == expected.sizes(), "shapes differ: ", actual.sizes(), " and ", expected.sizes());
  const double scale = std::max(expected.abs().max().item<double>(), floor * largest);
  return (actual.to(torch::kDouble) - expected.to(torch::kDouble)).abs().max().item<double>() / scale;
}

std::string tensor_mismatch(const torch::Tensor& actual, const torch::Tensor& expected, double atol, double rtol) {
  std::ostringstream report;
  if (actual.scalar_type() != expected.scalar_type()) {
    report << "dtype " << actual.scalar_type() << ", expected " << expected.scalar_type();
    return report.str();
  }
  if (actual.sizes() != expected.sizes()) {
    report << "shape " << actual.sizes() << ", expected " << expected.sizes();
    return report.str();
  }
  const auto g = actual.detach().to(torch::kCPU, torch::kDouble), w = expected.detach().to(torch::kCPU, torch::kDouble);
  // As numpy: finite values within the tolerance, or exactly equal (infinities). A comparison with
  // NaN is false, so NaN is never close.
  const auto close = (g.isfinite() & w.isfinite() & ((g - w).abs() <= atol + rtol * w.abs())) | (g == w);
  const auto bad = close.logical_not().flatten();
  const int64_t count = bad.sum().item<int64_t>();
  if (count == 0) return "";
  const int64_t idx = bad.nonzero()[0][0].item<int64_t>();
  report << count << " of " << w.numel() << " elements out of tolerance; first at flat index " << idx << ": got "
         << g.flatten()[idx].item<double>() << ", expected " << w.flatten()[idx].item<double>();
  return report.str();
}

TempDir::TempDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("perceiver-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

CommandResult run_cli(const std::string& args) { return run_command(std::string("'") + PERCEIVER_CLI_PATH + "' " + args); }

CommandResult run_command(const std::string& command) {
  TempDir tmp;
  const auto out = tmp.path() / "out", err = tmp.path() / "err";
  const std::string cmd = command + " >'" + out.string() + "' 2>'" + err.string() + "' </dev/null";
  const int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

PerceiverSelfAttention small_cross_attention(int64_t kv_dim, int64_t heads) {
  PerceiverSelfAttentionOptions o;
  o.is_cross_attention = true;
  o.q_dim = 8;
  o.kv_dim = kv_dim;
  o.qk_channels = 6;
  o.v_channels = 4;
  o.num_heads = heads;
  PerceiverSelfAttention attention(o);
  attention->eval();
  return attention;
}

}  // namespace perceiver::testing

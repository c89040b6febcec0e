// Helpers shared by the tests: where the shared fixtures live, running the CLI.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>

namespace perceiver {
class PerceiverSelfAttention;
}  // namespace perceiver

namespace perceiver::testing {

// ../shared/fixtures/hf relative to the project root (PERCEIVER_FIXTURES overrides).
std::filesystem::path hf_fixtures_dir();

// A fresh, empty temporary directory removed by the caller's TempDir.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Whole file as bytes ("" if it cannot be read); writes bytes, replacing the file.
std::string slurp(const std::filesystem::path& path);
void write_file(const std::filesystem::path& path, const std::string& bytes);

// The message of the exception `fn` throws, or "" when it does not throw.
std::string error_of(const std::function<void()>& fn);

// Runs fn, which must throw an exception whose message names `file`; returns the message.
template <typename Fn>
std::string expect_error(Fn&& fn, const std::filesystem::path& file) {
  try {
    fn();
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file.string()), std::string::npos) << "message does not name the file: " << msg;
    return msg;
  }
  ADD_FAILURE() << "no exception for " << file;
  return {};
}

// "" when `actual` has `expected`'s dtype and shape and every element satisfies numpy's
// isclose(atol, rtol) (equal infinities match; a NaN never does); otherwise what differs, with the
// number of bad elements and the first one.
std::string tensor_mismatch(const torch::Tensor& actual, const torch::Tensor& expected, double atol = 1e-5,
                            double rtol = 1e-5);

// Each parameter's gradient by name, cloned (zeros where it has none).
std::map<std::string, torch::Tensor> parameter_gradients(torch::nn::Module& model);

// max|actual - expected| over max(max|expected|, floor * largest): the gradient parity measure (largest:
// the largest magnitude over every tensor compared, so that a gradient whose true value is zero is held
// only to rounding noise). Throws where the shapes differ.
double scaled_error(const torch::Tensor& actual, const torch::Tensor& expected, double largest, double floor = 1e-3);

// A small cross-attention in eval mode: 8-channel queries, 6 query/key and 4 value channels.
PerceiverSelfAttention small_cross_attention(int64_t kv_dim, int64_t heads);

// The device the model parity tests run their forward passes on, from PERCEIVER_TEST_DEVICE: unset,
// "" or "cpu" = the CPU; "cuda" or "cuda:N" = that GPU, with TF32 turned off for cuBLAS and cuDNN.
// Throws (never falls back to the CPU) when the variable is not such a name or names a GPU that this
// LibTorch build or machine lacks. The choice is printed once.
torch::Device test_device();
// The atol = rtol of a parity comparison on test_device(): `cpu_tolerance` on the CPU; on a GPU, whose
// kernels round differently, at least 1e-4.
double parity_tolerance(double cpu_tolerance);
// `t` (every tensor of `tensors`) on test_device(); undefined stays undefined.
torch::Tensor on_test_device(const torch::Tensor& t);
std::map<std::string, torch::Tensor> on_test_device(const std::map<std::string, torch::Tensor>& tensors);

// Runs the built `perceiver` CLI with the given argument string (shell-quoted by the caller).
CommandResult run_cli(const std::string& args);
// Runs a shell command line (quoted by the caller) with no input, capturing its output.
CommandResult run_command(const std::string& command);

}  // namespace perceiver::testing

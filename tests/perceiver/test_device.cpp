// Device names, mixed precision and the GPU generator states, as far as a machine without a GPU
// can check them (scripts/gpu-check.sh runs the CUDA side on a GPU machine).
#include <gtest/gtest.h>

#include "perceiver/runtime/device.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

TEST(Device, NamesParseAndBadOnesAreExplained) {
  EXPECT_EQ(device::parse("cpu"), torch::Device(torch::kCPU));
  EXPECT_EQ(device::parse("auto").is_cuda(), torch::cuda::is_available());
  const auto unknown = error_of([] { device::parse("gpu0"); });
  EXPECT_NE(unknown.find("expected cpu, cuda, cuda:N or auto"), std::string::npos) << unknown;
  EXPECT_NE(error_of([] { device::parse("cuda:x"); }), "");
  if (!torch::cuda::is_available()) {
    const auto msg = error_of([] { device::parse("cuda"); });
    EXPECT_NE(msg.find("'cuda'"), std::string::npos) << msg;
  } else {
    EXPECT_EQ(device::parse("cuda"), torch::Device(torch::kCUDA, 0));
    const auto msg = error_of([] { device::parse("cuda:99"); });
    EXPECT_NE(msg.find("GPU(s)"), std::string::npos) << msg;
  }
}

TEST(Device, PrecisionNames) {
  EXPECT_EQ(device::parse_precision("fp32"), device::Precision::fp32);
  EXPECT_EQ(device::parse_precision("bf16"), device::Precision::bf16);
  EXPECT_EQ(device::to_string(device::Precision::bf16), "bf16");
  const auto msg = error_of([] { device::parse_precision("fp16"); });
  EXPECT_NE(msg.find("fp32 or bf16"), std::string::npos) << msg;
}

// precision: auto picks bf16 only where the hardware runs it natively, on made-up machines.
TEST(Device, AutoPrecisionFollowsTheHardware) {
  const auto on_cpu = [](const std::vector<std::string>& flags) {
    return device::choose_precision("auto", device::bf16_support(false, flags, "", 0));
  };
  const auto zen3 = on_cpu({"avx2", "fma"});  // AVX2 only: bf16 would be emulated
  EXPECT_EQ(zen3.precision, device::Precision::fp32);
  EXPECT_NE(zen3.reason.find("neither avx512_bf16 nor amx_bf16"), std::string::npos) << zen3.reason;
  EXPECT_EQ(on_cpu({"avx2", "avx512f"}).precision, device::Precision::fp32);  // AVX-512 without its bf16 part
  const auto zen4 = on_cpu({"avx2", "avx512f", "avx512_bf16"});
  EXPECT_EQ(zen4.precision, device::Precision::bf16);
  EXPECT_NE(zen4.reason.find("avx512_bf16"), std::string::npos) << zen4.reason;
  EXPECT_EQ(on_cpu({"avx512f", "amx_tile", "amx_bf16"}).precision, device::Precision::bf16);
  const auto gpu = [](int major) { return device::choose_precision("auto", device::bf16_support(true, {}, "GPU", major)); };
  EXPECT_EQ(gpu(7).precision, device::Precision::fp32);  // V100, T4
  EXPECT_EQ(gpu(8).precision, device::Precision::bf16);  // A100 and later
  EXPECT_EQ(gpu(9).precision, device::Precision::bf16);
  // An explicit choice is kept whatever the hardware.
  EXPECT_EQ(device::choose_precision("bf16", device::bf16_support(false, {"avx2"}, "", 0)).precision, device::Precision::bf16);
  EXPECT_EQ(device::choose_precision("fp32", device::bf16_support(true, {}, "GPU", 9)).precision, device::Precision::fp32);
  EXPECT_THROW(device::choose_precision("fp16", device::bf16_support(false, {}, "", 0)), std::invalid_argument);
}

TEST(Device, AutocastGuardRunsMatmulsInBf16AndRestoresTheState) {
  torch::nn::Linear linear(8, 4);
  const auto x = torch::randn({2, 8});
  EXPECT_EQ(linear(x).scalar_type(), torch::kFloat);
  {
    const device::AutocastGuard outer(torch::kCPU, device::Precision::bf16);
    EXPECT_EQ(linear(x).scalar_type(), torch::kBFloat16);
    {
      const device::AutocastGuard inner(torch::kCPU, device::Precision::bf16);
      EXPECT_EQ(linear(x).scalar_type(), torch::kBFloat16);
    }
    EXPECT_EQ(linear(x).scalar_type(), torch::kBFloat16) << "the inner guard turned autocast off";
    const device::AutocastGuard fp32(torch::kCPU, device::Precision::fp32);  // fp32 changes nothing
    EXPECT_EQ(linear(x).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(linear(x).scalar_type(), torch::kFloat);
}

TEST(Device, HostTensorsMoveAndCudaStatesAreOnlyRestoredWhereTheGpuExists) {
  const auto t = torch::arange(6);
  EXPECT_TRUE(torch::equal(device::to(t, torch::kCPU), t));
  const auto states = device::cuda_rng_states();
  EXPECT_EQ(states.size(), torch::cuda::is_available() ? torch::cuda::device_count() : 0u);
  // A checkpoint written on a GPU machine resumes here with a note, not an error.
  const auto missing = device::set_cuda_rng_states({{"cuda:63", torch::zeros({16}, torch::kUInt8)}});
  EXPECT_EQ(missing, std::vector<std::string>{"cuda:63"});
}

TEST(Device, EnvironmentReportNamesTheCudaBuildAndNccl) {
  const auto report = device::accelerator_report();
#if PERCEIVER_WITH_CUDA
  EXPECT_TRUE(report.built_with_cuda);
  EXPECT_FALSE(report.cuda_runtime.empty());
#else
  EXPECT_FALSE(report.built_with_cuda);
  EXPECT_TRUE(report.gpus.empty());
#endif
  const auto r = run_cli("env");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("libtorch cuda build"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nccl"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace perceiver::testing

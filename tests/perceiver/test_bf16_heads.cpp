// Every fixture head under CPU bf16 autocast, where the products run through oneDNN's bf16 kernels with
// their fused epilogues (activations and in-place residuals without gradients, factored position
// terms): outputs of the float32 shapes, finite and within bf16 rounding of the float32 outputs, with
// and without gradients, and a second call without gradients (kept terms) equal to the first.
#include <gtest/gtest.h>

#include <algorithm>

#include "perceiver/runtime/device.h"
#include "perceiver/models/model_dir.h"
#include "tests/perceiver/parity_support.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

TEST(Bf16Heads, EveryHeadStaysWithinBf16RoundingOfFloat32) {
  const auto fixtures = model_fixtures();
  ASSERT_FALSE(fixtures.empty()) << "no model fixtures under " << hf_fixtures_dir();
  for (const auto& fixture : fixtures) {
    SCOPED_TRACE(fixture.name);
    const auto model = io::load_pretrained(fixture.dir);
    model->eval();
    const auto inputs = fixture_inputs(fixture);
    NamedTensors reference;
    {
      const torch::NoGradGuard no_grad;
      reference = model->forward_named(inputs, {});
    }
    ASSERT_FALSE(reference.empty());
    NamedTensors first_no_grad;
    for (const bool grad : {false, true, false}) {
      SCOPED_TRACE(grad ? "with gradients" : "without gradients");
      const torch::AutoGradMode mode(grad);
      const device::AutocastGuard autocast(torch::kCPU, device::Precision::bf16);
      const auto out = model->forward_named(inputs, {});
      for (const auto& [name, want] : reference) {
        SCOPED_TRACE(name);
        ASSERT_TRUE(out.count(name));
        const auto got = out.at(name).detach().to(torch::kFloat32);
        ASSERT_EQ(got.sizes(), want.sizes());
        EXPECT_TRUE(torch::isfinite(got).all().item<bool>());
        const double scale = std::max(want.abs().max().item<double>(), 1.0);
        EXPECT_EQ(tensor_mismatch(got, want, 3e-2 * scale, 1e-2), "");  // seen here: at most 1.2e-2 * scale
        if (!grad && first_no_grad.count(name)) EXPECT_TRUE(torch::equal(got, first_no_grad.at(name)));
        if (!grad) first_no_grad.emplace(name, got);
      }
    }
  }
}

}  // namespace
}  // namespace perceiver::testing

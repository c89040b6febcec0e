// ops::softmax (oneDNN's for float32 CPU tensors) against ATen's softmax: values, gradients and second
// derivatives, masked rows, and the layouts and dtypes it hands to ATen.
#include <gtest/gtest.h>

#include <limits>
#include <set>

#include "perceiver/ops/matmul.h"
#include "perceiver/ops/softmax.h"
#include "trainers/op_profile.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

TEST(SoftmaxOp, MatchesAtenWithAndWithoutGradients) {
  torch::manual_seed(31);
  for (const auto& shape : std::vector<std::vector<int64_t>>{{7}, {3, 5}, {2, 3, 5, 7}, {1, 1, 16, 300}}) {
    SCOPED_TRACE(::testing::PrintToString(shape));
    const auto x = torch::randn(shape) * 4;
    {
      const torch::NoGradGuard no_grad;
      EXPECT_EQ(tensor_mismatch(ops::softmax(x), torch::softmax(x, -1), 1e-6, 1e-7), "");
    }
    // An intermediate of the graph (scores as the attention makes them), and a leaf.
    const auto weights = torch::randn(shape);
    const auto leaf_a = x.clone().requires_grad_(true), leaf_b = x.clone().requires_grad_(true);
    const auto ya = ops::softmax(leaf_a * 2.0), yb = torch::softmax(leaf_b * 2.0, -1);
    EXPECT_EQ(tensor_mismatch(ya.detach(), yb.detach(), 1e-6, 1e-7), "");
    (ya * weights).sum().backward();
    (yb * weights).sum().backward();
    EXPECT_EQ(tensor_mismatch(leaf_a.grad(), leaf_b.grad(), 1e-5, 1e-7), "");
    const auto leaf_c = x.clone().requires_grad_(true);
    (ops::softmax(leaf_c) * weights).sum().backward();
    const auto leaf_d = x.clone().requires_grad_(true);
    (torch::softmax(leaf_d, -1) * weights).sum().backward();
    EXPECT_EQ(tensor_mismatch(leaf_c.grad(), leaf_d.grad(), 1e-5, 1e-7), "");
  }
}

// HF's masks add the float32 minimum: a row masked everywhere is uniform, a masked entry is zero.
TEST(SoftmaxOp, MaskedRowsAreAsAtensIncludingFullyMaskedOnes) {
  torch::manual_seed(32);
  auto x = torch::randn({2, 4, 9});
  const float lowest = std::numeric_limits<float>::lowest();
  x.index_put_({0, 1}, x.index({0, 1}) + lowest);
  x.index_put_({1, 2, torch::indexing::Slice(0, 4)}, x.index({1, 2, torch::indexing::Slice(0, 4)}) + lowest);
  const torch::NoGradGuard no_grad;
  const auto y = ops::softmax(x.clone());
  EXPECT_EQ(tensor_mismatch(y, torch::softmax(x, -1), 1e-6, 1e-7), "");
  EXPECT_FALSE(y.isnan().any().item<bool>());
}

TEST(SoftmaxOp, OtherLayoutsAndDtypesAreAtens) {
  torch::manual_seed(33);
  const auto x = torch::randn({3, 6, 5});
  const torch::NoGradGuard no_grad;
  const auto transposed = x.transpose(1, 2);
  EXPECT_EQ(tensor_mismatch(ops::softmax(transposed), torch::softmax(transposed, -1), 1e-6, 1e-7), "");
  const auto xd = x.to(torch::kFloat64);
  EXPECT_TRUE(torch::equal(ops::softmax(xd), torch::softmax(xd, -1)));
}

TEST(SoftmaxOp, SecondDerivativesMatchAten) {
  torch::manual_seed(34);
  const auto x = torch::randn({3, 6});
  auto grad_of_grad = [&](bool use_ops) {
    const auto leaf = x.clone().requires_grad_(true);
    const auto y = use_ops ? ops::softmax(leaf * 1.0) : torch::softmax(leaf * 1.0, -1);
    const auto g = torch::autograd::grad({(y * x).sum()}, {leaf}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
    return torch::autograd::grad({g.square().sum()}, {leaf})[0];
  };
  EXPECT_EQ(tensor_mismatch(grad_of_grad(true), grad_of_grad(false), 1e-5, 1e-7), "");
}

// The attention's float32 scores go through oneDNN, with and without gradients (a silent fallback
// would still give ATen's values); without oneDNN, through ATen.
TEST(SoftmaxOp, Float32ScoresGoThroughTheBackendItNames) {
  const bool onednn = ops::matmul_backend().rfind("oneDNN ", 0) == 0;
  for (const bool grad : {false, true}) {
    const torch::AutoGradMode mode(grad);
    const auto x = torch::randn({2, 3, 5, 7}, torch::requires_grad());
    trainers::OpProfile profile;
    ops::softmax(x * 1.0);
    std::set<std::string> names;
    for (const auto& op : profile.table()) names.insert(op.name);
    EXPECT_EQ(names.count("perceiver::onednn_softmax"), onednn ? 1U : 0U) << ops::matmul_backend();
    EXPECT_EQ(names.count("aten::_softmax"), onednn ? 0U : 1U) << ops::matmul_backend();
  }
}

}  // namespace
}  // namespace perceiver::testing

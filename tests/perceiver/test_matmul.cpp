// ops::linear and ops::matmul (oneDNN for float32 CPU work) against ATen's linear and matmul: values
// and every gradient, for the layouts the model hands them (transposed, sliced, broadcast gradients),
// and ATen's own behaviour where they defer to it (autocast, other dtypes, broadcast batch dims).
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "perceiver/runtime/device.h"
#include "perceiver/ops/matmul.h"
#include "trainers/op_profile.h"
#include "tests/test_support.h"

namespace perceiver::testing {
namespace {

using Ops = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

struct Tolerance {
  double value_rtol = 1e-5, value_atol = 1e-5, grad_rtol = 1e-4, grad_atol = 1e-5;
};

// Values and gradients of f_ops and f_ref on copies of the same leaf inputs, with a weighted loss so
// that every output element has its own gradient; their dtypes must be the same too.
void expect_same_values_and_gradients(const std::vector<torch::Tensor>& inputs, const Ops& f_ops, const Ops& f_ref,
                                      const Tolerance& tol = {}) {
  auto leaves = [&] {
    std::vector<torch::Tensor> out;
    for (const auto& t : inputs) out.push_back(t.detach().clone().requires_grad_(true));
    return out;
  };
  const auto a = leaves(), b = leaves();
  const auto ya = f_ops(a), yb = f_ref(b);
  EXPECT_EQ(ya.scalar_type(), yb.scalar_type());
  EXPECT_EQ(tensor_mismatch(ya.detach().to(torch::kFloat32), yb.detach().to(torch::kFloat32), tol.value_atol,
                            tol.value_rtol),
            "");
  const auto weights = torch::randn(yb.sizes());
  (ya * weights).sum().backward();
  (yb * weights).sum().backward();
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_TRUE(a[i].grad().defined()) << "input " << i;
    EXPECT_EQ(a[i].grad().scalar_type(), b[i].grad().scalar_type()) << "input " << i;
    EXPECT_EQ(tensor_mismatch(a[i].grad(), b[i].grad(), tol.grad_atol, tol.grad_rtol), "") << "input " << i;
  }
}

TEST(MatmulOps, LinearMatchesAtenWithAndWithoutBiasOnAnyLeadingShape) {
  torch::manual_seed(1);
  for (const auto& shape : std::vector<std::vector<int64_t>>{{7, 24}, {3, 5, 24}, {2, 3, 4, 24}}) {
    SCOPED_TRACE(::testing::PrintToString(shape));
    const auto x = torch::randn(shape), w = torch::randn({9, 24}), bias = torch::randn({9});
    expect_same_values_and_gradients(
        {x, w, bias}, [](const auto& t) { return ops::linear(t[0], t[1], t[2]); },
        [](const auto& t) { return torch::nn::functional::linear(t[0], t[1], t[2]); });
    expect_same_values_and_gradients(
        {x, w}, [](const auto& t) { return ops::linear(t[0], t[1]); },
        [](const auto& t) { return torch::nn::functional::linear(t[0], t[1]); });
  }
}

TEST(MatmulOps, LinearTakesSlicedTransposedAndNonContiguousOperands) {
  torch::manual_seed(2);
  const auto x = torch::randn({4, 6, 40}), w = torch::randn({12, 50});
  // A column slice of the weight (its rows 50 apart), an input with a transposed middle, and an
  // expanded (stride-0) gradient from a plain sum.
  expect_same_values_and_gradients(
      {x, w},
      [](const auto& t) { return ops::linear(t[0].transpose(0, 1), t[1].narrow(1, 10, 40)); },
      [](const auto& t) { return torch::matmul(t[0].transpose(0, 1), t[1].narrow(1, 10, 40).t()); });
  // A bias with every other element of a longer vector.
  expect_same_values_and_gradients(
      {x, w, torch::randn({24})},
      [](const auto& t) { return ops::linear(t[0], t[1].narrow(1, 0, 40), t[2].slice(0, 0, 24, 2)); },
      [](const auto& t) { return torch::nn::functional::linear(t[0], t[1].narrow(1, 0, 40), t[2].slice(0, 0, 24, 2)); });
  const auto xs = x.detach().clone().requires_grad_(true);
  ops::linear(xs, w.narrow(1, 0, 40)).sum().backward();
  EXPECT_EQ(tensor_mismatch(xs.grad(), w.narrow(1, 0, 40).sum(0).expand({4, 6, 40}), 1e-4, 1e-5), "");
}

TEST(MatmulOps, BatchedMatmulMatchesAtenForAttentionLayouts) {
  torch::manual_seed(3);
  const auto q = torch::randn({2, 3, 5, 8}), k = torch::randn({2, 3, 7, 8}), v = torch::randn({2, 3, 7, 4});
  expect_same_values_and_gradients(
      {q, k, v},
      [](const auto& t) {
        return ops::matmul(torch::softmax(ops::matmul(t[0], t[1].transpose(-1, -2)), -1), t[2]);
      },
      [](const auto& t) {
        return torch::matmul(torch::softmax(torch::matmul(t[0], t[1].transpose(-1, -2)), -1), t[2]);
      });
  // Heads split from (B, T, H*C) and moved in front of T, as the attention layers do.
  const auto x = torch::randn({2, 5, 12});
  expect_same_values_and_gradients(
      {x, x.flip(1)},
      [](const auto& t) {
        return ops::matmul(t[0].unflatten(-1, {3, 4}).transpose(1, 2), t[1].unflatten(-1, {3, 4}).permute({0, 2, 3, 1}));
      },
      [](const auto& t) {
        return torch::matmul(t[0].unflatten(-1, {3, 4}).transpose(1, 2),
                             t[1].unflatten(-1, {3, 4}).permute({0, 2, 3, 1}));
      });
}

TEST(MatmulOps, ScaledProductsMatchAtenScaledAfterwards) {
  torch::manual_seed(7);
  const auto q = torch::randn({2, 3, 5, 8}), k = torch::randn({2, 3, 7, 8});
  const double scale = 1.0 / std::sqrt(8.0);
  expect_same_values_and_gradients(
      {q, k}, [&](const auto& t) { return ops::matmul(t[0], t[1].transpose(-1, -2), scale); },
      [&](const auto& t) { return torch::matmul(t[0], t[1].transpose(-1, -2)) / std::sqrt(8.0); });
  const torch::NoGradGuard no_grad;
  EXPECT_EQ(tensor_mismatch(ops::matmul(q, k.transpose(-1, -2), scale), torch::matmul(q, k.transpose(-1, -2)) * scale,
                            1e-5, 1e-6),
            "");
}

// activation(x W^T + b) + residual against ATen's ops one after another: with gradients (the residual
// fused, the activation ATen's) and without (both fused into the product), for every activation, and
// for residuals that are transposed or expanded.
TEST(MatmulOps, LinearEpiloguesMatchAtenOneOpAfterAnother) {
  namespace F = torch::nn::functional;
  torch::manual_seed(8);
  const std::vector<std::pair<ops::Activation, std::function<torch::Tensor(const torch::Tensor&)>>> activations{
      {ops::Activation::none, [](const torch::Tensor& y) { return y; }},
      {ops::Activation::gelu, [](const torch::Tensor& y) { return F::gelu(y); }},
      {ops::Activation::gelu_tanh, [](const torch::Tensor& y) { return F::gelu(y, F::GELUFuncOptions().approximate("tanh")); }},
      {ops::Activation::relu, [](const torch::Tensor& y) { return torch::relu(y); }}};
  const auto x = torch::randn({3, 5, 16}), w = torch::randn({6, 16}), bias = torch::randn({6});
  const std::vector<torch::Tensor> residuals{torch::Tensor(), torch::randn({3, 5, 6}),
                                             torch::randn({3, 6, 5}).transpose(1, 2), torch::randn({1, 5, 6}).expand({3, 5, 6})};
  for (const auto& [activation, reference] : activations) {
    for (size_t r = 0; r < residuals.size(); ++r) {
      SCOPED_TRACE("activation " + std::to_string(static_cast<int>(activation)) + ", residual " + std::to_string(r));
      const auto& residual = residuals[r];
      auto with_ops = [&, activation = activation](const std::vector<torch::Tensor>& t) {
        ops::LinearEpilogue epilogue;
        epilogue.activation = activation;
        if (residual.defined()) epilogue.residual = t[3];
        return ops::linear(t[0], t[1], t[2], epilogue);
      };
      auto with_aten = [&, reference = reference](const std::vector<torch::Tensor>& t) {
        const auto y = reference(F::linear(t[0], t[1], t[2]));
        return residual.defined() ? y + t[3] : y;
      };
      const std::vector<torch::Tensor> inputs{x, w, bias, residual.defined() ? residual : torch::zeros({1})};
      expect_same_values_and_gradients(residual.defined() ? inputs : std::vector<torch::Tensor>(inputs.begin(), inputs.end() - 1),
                                       with_ops, with_aten);
      const torch::NoGradGuard no_grad;
      EXPECT_EQ(tensor_mismatch(with_ops(inputs), with_aten(inputs), 1e-5, 1e-5), "");
    }
  }
}

// matmul_add is a linear whose weight is a per-example tensor: a b + bias, then the epilogue, fused
// without gradients; batch dims that differ are broadcast by ATen.
TEST(MatmulOps, MatmulAddMatchesAtenOneOpAfterAnother) {
  torch::manual_seed(10);
  const auto a = torch::randn({3, 5, 16}), bias = torch::randn({6});
  for (const auto& b : {torch::randn({3, 16, 6}), torch::randn({3, 6, 16}).transpose(1, 2), torch::randn({1, 16, 6})}) {
    for (const auto activation : {ops::Activation::none, ops::Activation::gelu}) {
      for (const bool with_residual : {false, true}) {
        SCOPED_TRACE(::testing::PrintToString(b.sizes()) + " activation " + std::to_string(static_cast<int>(activation)) +
                     (with_residual ? " with residual" : ""));
        auto with_ops = [&](const std::vector<torch::Tensor>& t) {
          ops::LinearEpilogue epilogue;
          epilogue.activation = activation;
          if (with_residual) epilogue.residual = t[3];
          return ops::matmul_add(t[0], t[1], t[2], epilogue);
        };
        auto with_aten = [&](const std::vector<torch::Tensor>& t) {
          const auto y = ops::activate(torch::matmul(t[0], t[1]) + t[2], activation);
          return with_residual ? y + t[3] : y;
        };
        std::vector<torch::Tensor> inputs{a, b, bias};
        if (with_residual) inputs.push_back(torch::randn({3, 5, 6}));
        expect_same_values_and_gradients(inputs, with_ops, with_aten);
        const torch::NoGradGuard no_grad;
        EXPECT_EQ(tensor_mismatch(with_ops(inputs), with_aten(inputs), 1e-5, 1e-5), "");
      }
    }
  }
  EXPECT_THROW(ops::matmul_add(a, torch::randn({3, 15, 6}), bias), c10::Error);
  EXPECT_THROW(ops::matmul_add(a, torch::randn({3, 16, 6}), torch::randn({5})), c10::Error);
}

// Under CPU bf16 autocast the products multiply bf16 operands with float32 accumulation; results come
// in the dtypes ATen's autocast gives (bf16; float32 once a float32 residual is added) and gradients
// in each input's own dtype. Compared with ATen's autocast ops one after another, within bf16's
// rounding (ATen also rounds the product before adding the residual), and with float32 arithmetic on
// bf16-rounded operands, which a float32 result matches to float32 precision.
TEST(MatmulOps, Bf16AutocastMatchesAtenAutocast) {
  namespace F = torch::nn::functional;
  torch::manual_seed(10);
  const auto x = torch::randn({3, 5, 16}), w = torch::randn({6, 16}), bias = torch::randn({6});
  const auto r = torch::randn({3, 5, 6});
  const auto rounded = [](const torch::Tensor& t) { return t.to(torch::kBFloat16).to(torch::kFloat32); };
  const auto exact = F::linear(rounded(x), rounded(w), bias) + r;

  const device::AutocastGuard autocast(torch::kCPU, device::Precision::bf16);
  Tolerance bf16;
  bf16.value_rtol = bf16.grad_rtol = 2e-2;
  bf16.value_atol = bf16.grad_atol = 5e-2;
  for (const auto activation : {ops::Activation::none, ops::Activation::gelu}) {
    for (const bool with_residual : {false, true}) {
      SCOPED_TRACE("activation " + std::to_string(static_cast<int>(activation)) +
                   (with_residual ? ", residual" : ", no residual"));
      const Ops with_ops = [&](const std::vector<torch::Tensor>& t) {
        ops::LinearEpilogue epilogue;
        epilogue.activation = activation;
        if (with_residual) epilogue.residual = t[3];
        return ops::linear(t[0], t[1], t[2], epilogue);
      };
      const Ops with_aten = [&](const std::vector<torch::Tensor>& t) {
        const auto y = ops::activate(F::linear(t[0], t[1], t[2]), activation);
        return with_residual ? y + t[3] : y;
      };
      const std::vector<torch::Tensor> inputs =
          with_residual ? std::vector<torch::Tensor>{x, w, bias, r} : std::vector<torch::Tensor>{x, w, bias};
      expect_same_values_and_gradients(inputs, with_ops, with_aten, bf16);
      const torch::NoGradGuard no_grad;
      const auto y = with_ops(inputs), y_aten = with_aten(inputs);
      EXPECT_EQ(y.scalar_type(), y_aten.scalar_type());
      EXPECT_EQ(tensor_mismatch(y.to(torch::kFloat32), y_aten.to(torch::kFloat32), 2e-2, 5e-2), "");
    }
  }
  // matmul_add under autocast is a linear's: bias in the product's dtype (bf16), a float32 residual
  // making the result float32. ATen rounds the product to bf16 before adding the bias and the
  // residual; values here are sums of 16 products of size about 1: an absolute tolerance.
  Tolerance rounded_twice = bf16;
  rounded_twice.value_atol = rounded_twice.grad_atol = 0.1;
  for (const bool with_residual : {false, true}) {
    SCOPED_TRACE(with_residual ? "matmul_add, residual" : "matmul_add");
    const auto b = torch::randn({3, 16, 6});
    const Ops with_ops = [&](const std::vector<torch::Tensor>& t) {
      ops::LinearEpilogue epilogue;
      if (with_residual) epilogue.residual = t[3];
      return ops::matmul_add(t[0], t[1], t[2], epilogue);
    };
    const Ops with_aten = [&](const std::vector<torch::Tensor>& t) {
      const auto y = torch::matmul(t[0], t[1]);
      const auto biased = y + t[2].to(y.scalar_type());
      return with_residual ? biased + t[3] : biased;
    };
    const std::vector<torch::Tensor> inputs =
        with_residual ? std::vector<torch::Tensor>{x, b, bias, r} : std::vector<torch::Tensor>{x, b, bias};
    expect_same_values_and_gradients(inputs, with_ops, with_aten, rounded_twice);
    const torch::NoGradGuard no_grad;
    const auto y = with_ops(inputs);
    EXPECT_EQ(y.scalar_type(), with_residual ? torch::kFloat32 : torch::kBFloat16);
    EXPECT_EQ(tensor_mismatch(y.to(torch::kFloat32), with_aten(inputs).to(torch::kFloat32), 0.1, 2e-2), "");
  }

  const double scale = 1.0 / std::sqrt(8.0);
  expect_same_values_and_gradients(
      {torch::randn({2, 3, 5, 8}), torch::randn({2, 3, 7, 8}), torch::randn({2, 3, 7, 4})},
      [&](const auto& t) { return ops::matmul(torch::softmax(ops::matmul(t[0], t[1].transpose(-1, -2), scale), -1), t[2]); },
      [&](const auto& t) {
        return torch::matmul(torch::softmax(torch::matmul(t[0], t[1].transpose(-1, -2)) * scale, -1), t[2]);
      },
      bf16);

  // ATen (a build without oneDNN, PERCEIVER_MATMUL=aten, a CPU without oneDNN bf16 kernels) rounds in
  // bf16 on the way (bias, product).
  const bool onednn = ops::matmul_backend(torch::kBFloat16).rfind("oneDNN ", 0) == 0;
  const double tol = onednn ? 1e-5 : 2e-2;
  ops::LinearEpilogue epilogue;
  epilogue.residual = r;
  for (const bool grad : {false, true}) {
    const auto xl = x.clone().requires_grad_(grad);
    const auto y = ops::linear(xl, w, bias, epilogue);
    ASSERT_EQ(y.scalar_type(), torch::kFloat32);
    EXPECT_EQ(tensor_mismatch(y.detach(), exact, tol, tol), "")
        << (grad ? "with gradients, " : "without, ") << ops::matmul_backend(torch::kBFloat16);
  }
}

// The bf16 path with inputs of every kind: no bias, only some inputs needing gradients (the gradient
// indices of optional inputs), bf16 operands and a bf16 residual (a bf16 result), as ATen's autocast.
TEST(MatmulOps, Bf16AutocastTakesAnyMixOfInputs) {
  namespace F = torch::nn::functional;
  torch::manual_seed(11);
  const device::AutocastGuard autocast(torch::kCPU, device::Precision::bf16);
  const auto x = torch::randn({4, 3, 16}), w = torch::randn({6, 16}), bias = torch::randn({6});
  const auto r = torch::randn({4, 3, 6});
  const auto bf16 = [](const torch::Tensor& t) { return t.to(torch::kBFloat16); };
  struct Case {
    const char* name;
    std::vector<torch::Tensor> inputs;  // x, weight, then bias and/or residual
    bool has_bias, has_residual;
    std::vector<bool> requires_grad;
  };
  const std::vector<Case> cases{
      {"no bias", {x, w, r}, false, true, {true, true, true}},
      {"only x needs a gradient", {x, w, bias, r}, true, true, {true, false, false, false}},
      {"only the residual", {x, w, bias, r}, true, true, {false, false, false, true}},
      {"only the bias", {x, w, bias}, true, false, {false, false, true}},
      {"bf16 operands and residual", {bf16(x), bf16(w), bias, bf16(r)}, true, true, {true, true, true, true}}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto leaves = [&] {
      std::vector<torch::Tensor> out;
      for (size_t i = 0; i < c.inputs.size(); ++i) out.push_back(c.inputs[i].clone().requires_grad_(c.requires_grad[i]));
      return out;
    };
    const auto run = [&](const std::vector<torch::Tensor>& t, bool with_ops) {
      const auto b = c.has_bias ? t[2] : torch::Tensor();
      const auto res = c.has_residual ? t.back() : torch::Tensor();
      if (!with_ops) {
        const auto y = F::linear(t[0], t[1], b);
        return res.defined() ? y + res : y;
      }
      ops::LinearEpilogue epilogue;
      epilogue.residual = res;
      return ops::linear(t[0], t[1], b, epilogue);
    };
    const auto a = leaves(), b = leaves();
    const auto ya = run(a, true), yb = run(b, false);
    EXPECT_EQ(ya.scalar_type(), yb.scalar_type());
    EXPECT_EQ(tensor_mismatch(ya.detach().to(torch::kFloat32), yb.detach().to(torch::kFloat32), 2e-2, 5e-2), "");
    const auto weights = torch::randn(yb.sizes());
    (ya.to(torch::kFloat32) * weights).sum().backward();
    (yb.to(torch::kFloat32) * weights).sum().backward();
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].grad().defined(), c.requires_grad[i]) << "input " << i;
      if (c.requires_grad[i])
        EXPECT_EQ(tensor_mismatch(a[i].grad().to(torch::kFloat32), b[i].grad().to(torch::kFloat32), 2e-2, 5e-2), "")
            << "input " << i;
    }
  }
}

// A bf16 product casts float32 operands inside itself, so a graph of its backward (create_graph)
// would miss the second derivatives through them: that fails loudly rather than coming out wrong.
// Operands already in bf16 have their history and differentiate twice.
TEST(MatmulOps, Bf16SecondDerivativesFailLoudlyWhereTheyWouldBeLost) {
  torch::manual_seed(12);
  const bool onednn = ops::matmul_backend(torch::kBFloat16).rfind("oneDNN ", 0) == 0;
  const device::AutocastGuard autocast(torch::kCPU, device::Precision::bf16);
  const auto x = torch::randn({3, 8}, torch::requires_grad()), w = torch::randn({5, 8}, torch::requires_grad());
  const auto grad_x_graph = [&] {
    const auto y = ops::linear(x, w);
    return torch::autograd::grad({y.to(torch::kFloat32).square().sum()}, {x}, {}, true, /*create_graph=*/true)[0];
  };
  if (onednn) {
    try {
      grad_x_graph();
      ADD_FAILURE() << "a graph of a bf16 product's backward was made";
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("second derivatives"), std::string::npos) << e.what();
    }
  } else {
    EXPECT_TRUE(grad_x_graph().requires_grad());  // ATen's autocast records its casts
  }
  // Once-differentiated gradients are unaffected.
  const auto y = ops::linear(x, w);
  EXPECT_TRUE(torch::autograd::grad({y.to(torch::kFloat32).sum()}, {x})[0].defined());
  // bf16 leaves: no cast inside, so the graph of the backward is whole.
  const auto xb = x.detach().to(torch::kBFloat16).requires_grad_(true), wb = w.detach().to(torch::kBFloat16).requires_grad_(true);
  const auto gx = torch::autograd::grad({ops::linear(xb, wb).to(torch::kFloat32).square().sum()}, {xb}, {}, true, true)[0];
  EXPECT_TRUE(torch::autograd::grad({gx.to(torch::kFloat32).square().sum()}, {wb})[0].defined());
}

// Without gradients the residual is added as the product is written, into new memory: the residual
// is left as it was, whoever else holds it (no in-place write decided by reference counts).
TEST(MatmulOps, ALinearAddsItsResidualIntoNewMemory) {
  torch::manual_seed(9);
  const torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 5, 8}), w = torch::randn({6, 8}), bias = torch::randn({6});
  const auto r = torch::randn({2, 5, 6});
  const auto expected = torch::nn::functional::linear(x, w, bias) + r;

  ops::LinearEpilogue epilogue;
  epilogue.residual = r.clone();
  const auto before = epilogue.residual.clone();
  const void* memory = epilogue.residual.data_ptr();
  const auto y = ops::linear(x, w, bias, epilogue);
  EXPECT_NE(y.data_ptr(), memory);
  EXPECT_TRUE(torch::equal(epilogue.residual, before));
  EXPECT_EQ(tensor_mismatch(y, expected, 1e-5, 1e-5), "");
}

TEST(MatmulOps, SecondDerivativesMatchAten) {
  torch::manual_seed(4);
  const auto x = torch::randn({3, 6}), w = torch::randn({5, 6}), bias = torch::randn({5});
  auto grad_of_grad = [&](bool use_ops) {
    const auto xl = x.clone().requires_grad_(true), wl = w.clone().requires_grad_(true);
    const auto y = use_ops ? ops::linear(xl, wl, bias) : torch::nn::functional::linear(xl, wl, bias);
    const auto gx = torch::autograd::grad({y.square().sum()}, {xl}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
    return torch::autograd::grad({gx.square().sum()}, {wl})[0];
  };
  EXPECT_EQ(tensor_mismatch(grad_of_grad(true), grad_of_grad(false), 1e-4, 1e-5), "");
}

TEST(MatmulOps, DefersToAtenWhereItDoesNotApply) {
  torch::manual_seed(5);
  const auto x = torch::randn({4, 8}), w = torch::randn({3, 8});
  // Other dtypes keep ATen's results exactly.
  const auto xd = x.to(torch::kFloat64), wd = w.to(torch::kFloat64);
  EXPECT_TRUE(torch::equal(ops::linear(xd, wd), torch::nn::functional::linear(xd, wd)));
  // Under CPU autocast, float64 is left alone, as ATen's autocast leaves it.
  {
    device::AutocastGuard autocast(torch::kCPU, device::Precision::bf16);
    EXPECT_TRUE(torch::equal(ops::linear(xd, wd), torch::nn::functional::linear(xd, wd)));
  }
  // Batch dims that broadcast.
  const auto a = torch::randn({2, 1, 4, 5}), b = torch::randn({3, 5, 6});
  EXPECT_EQ(tensor_mismatch(ops::matmul(a, b), torch::matmul(a, b), 1e-5, 1e-5), "");
  // Empty operands.
  EXPECT_EQ(ops::linear(torch::randn({0, 8}), w).sizes(), (std::vector<int64_t>{0, 3}));
}

// The names of the operators that ran in f, at any depth.
std::set<std::string> operators_in(const std::function<void()>& f) {
  std::set<std::string> names;
  trainers::OpProfile profile;
  f();
  for (const auto& op : profile.table()) names.insert(op.name);
  return names;
}

TEST(MatmulOps, Float32ProductsGoThroughTheBackendItNames) {
  const bool onednn = ops::matmul_backend().rfind("oneDNN ", 0) == 0;
  const auto names = operators_in([] { ops::linear(torch::randn({4, 8}), torch::randn({3, 8}), torch::randn({3})); });
  EXPECT_EQ(names.count("perceiver::onednn_matmul"), onednn ? 1U : 0U) << ops::matmul_backend();
  EXPECT_EQ(names.count("aten::addmm"), onednn ? 0U : 1U) << ops::matmul_backend();
}

// A product that oneDNN declines still comes out right through ATen, so only the operators tell a
// silent fallback (e.g. a bias described with the wrong rank) from the fast path. Without oneDNN,
// every product is ATen's and none is named as oneDNN's.
TEST(MatmulOps, NoProductFallsBackToAtenForTheModelsShapes) {
  const bool onednn = ops::matmul_backend().rfind("oneDNN ", 0) == 0;
  torch::manual_seed(5);
  const auto w = torch::randn({6, 8}, torch::requires_grad()), bias = torch::randn({6}, torch::requires_grad());
  const auto q = torch::randn({2, 3, 5, 4}, torch::requires_grad()), k = torch::randn({2, 3, 7, 4}, torch::requires_grad());
  for (const auto precision : {device::Precision::fp32, device::Precision::bf16}) {
    for (const bool grad : {false, true}) {
      const device::AutocastGuard autocast(torch::kCPU, precision);
      const torch::AutoGradMode mode(grad);
      for (const auto& shape : std::vector<std::vector<int64_t>>{{5, 8}, {2, 5, 8}, {2, 3, 5, 8}}) {
        const auto x = torch::randn(shape, torch::requires_grad());
        for (const bool with_bias : {false, true}) {
          const auto names = operators_in([&] {
            const auto y = ops::linear(x, w, with_bias ? bias : torch::Tensor());
            const auto scores = ops::matmul(q, k.transpose(-1, -2));
            if (grad) (y.sum() + scores.sum()).backward();
          });
          const auto where = ::testing::PrintToString(shape) + (with_bias ? " with bias" : " without bias") +
                             (grad ? " with gradients" : "") + " in " + device::to_string(precision);
          const bool fast = precision == device::Precision::bf16
                                ? ops::matmul_backend(torch::kBFloat16).rfind("oneDNN ", 0) == 0
                                : onednn;
          if (!fast) {
            EXPECT_EQ(names.count("perceiver::onednn_matmul"), 0U) << where;
            continue;
          }
          for (const char* aten : {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"})
            EXPECT_EQ(names.count(aten), 0U) << aten << " ran for input " << where;
        }
      }
    }
  }
}

// The result of a linear is no view (an in-place op on one made autograd copy it whole in backward),
// and the gradient reaching k in q k^T is dense where ours computes it (a transposed one made its
// reductions slow).
TEST(MatmulOps, ResultsAndGradientsKeepDenseLayouts) {
  torch::manual_seed(6);
  const auto x = torch::randn({2, 5, 8}, torch::requires_grad()), w = torch::randn({6, 8}, torch::requires_grad());
  const auto y = ops::linear(x, w, torch::randn({6}));
  EXPECT_FALSE(y.is_view());
  EXPECT_TRUE(y.is_contiguous());

  const auto q = torch::randn({2, 3, 5, 4}, torch::requires_grad());
  const auto k = (torch::randn({2, 3, 7, 4}, torch::requires_grad()) * 1.0);  // a non-leaf: its gradient as it arrives
  torch::Tensor k_grad;
  k.register_hook([&](const torch::Tensor& g) { k_grad = g; });
  (ops::matmul(q, k.transpose(-1, -2)) * torch::randn({2, 3, 5, 7})).sum().backward();
  ASSERT_TRUE(k_grad.defined());
  // ATen's own backward (a build without oneDNN, PERCEIVER_MATMUL=aten) hands it back transposed.
  const bool onednn = ops::matmul_backend().rfind("oneDNN ", 0) == 0;
  EXPECT_EQ(k_grad.is_contiguous(), onednn) << k_grad.strides() << ", " << ops::matmul_backend();
}

}  // namespace
}  // namespace perceiver::testing

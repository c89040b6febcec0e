// Matrix products of the model's float32 CPU work through oneDNN's matmul (Debian's libdnnl, the
// library LibTorch itself links), with their own backward; under CPU bf16 autocast too, with bf16
// operands and float32 accumulation, results in the dtypes ATen's autocast gives them (a float32
// residual added in the epilogue makes a float32 result) and gradients in each input's dtype.
// Everything else (other dtypes, CUDA, tracing for export, a build without oneDNN) goes to ATen's
// linear/matmul unchanged.
// Why: LibTorch 1.13 multiplies float32 through the system BLAS, whose speed depends on how OpenBLAS
// was told about the CPU (OPENBLAS_CORETYPE), and runs a batched product as one small GEMM after
// another; oneDNN picks its kernels from the CPU itself and spreads a batch over the threads.
#pragma once

#include <torch/torch.h>

#include <string>

namespace perceiver::ops {

// In a namespace of their own: ATen's linear and matmul would be found by argument lookup.

// Activations that oneDNN applies to a product as it writes it.
enum class Activation { none, gelu, gelu_tanh, relu };

// ATen's op for `activation` (what the fused kernels compute).
torch::Tensor activate(const torch::Tensor& x, Activation activation);

// What a linear does to its result: activation(x W^T + b) + residual. Without gradients both are fused
// into the product (no extra pass over the result); with them only the residual is (the activation's
// backward needs its input). `residual` has the result's shape, or is added by ATen.
struct LinearEpilogue {
  Activation activation = Activation::none;
  torch::Tensor residual;
};

// x (..., K) times weight (N, K) transposed, plus bias (N) where defined: at::linear; then the epilogue.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {},
                     const LinearEpilogue& epilogue = {});
inline torch::Tensor linear(const torch::Tensor& x, const torch::nn::Linear& layer, const LinearEpilogue& epilogue = {}) {
  return linear(x, layer->weight, layer->bias, epilogue);
}

// scale * (a (..., M, K) times b (..., K, N)): at::matmul, the scale fused into the product. Leading
// dims that differ are broadcast by ATen.
torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b, double scale = 1.0);

// a (..., M, K) times b (..., K, N), plus bias (N) where defined, then the epilogue: a linear whose
// weight is a per-example tensor. Without gradients the bias and the epilogue are fused into the
// product, as in linear.
torch::Tensor matmul_add(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& bias,
                         const LinearEpilogue& epilogue = {});

// Which library multiplies CPU matrices of `dtype` (float32, or bfloat16 under autocast): "oneDNN
// x.y.z", or "ATen (why)" where the build has no oneDNN, PERCEIVER_MATMUL=aten is set in the
// environment (read once, at the first product) or, for bf16, oneDNN has no kernels for the CPU.
std::string matmul_backend(torch::ScalarType dtype = torch::kFloat32);

}  // namespace perceiver::ops

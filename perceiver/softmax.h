// Softmax over the last dim for the attention scores: oneDNN's for float32 CPU tensors (about twice
// ATen's speed on the optical-flow scores here), ATen's everywhere else (other dtypes, CUDA, tracing
// for export, a build without oneDNN, PERCEIVER_MATMUL=aten). The backward is ATen's softmax backward.
// (Written over its input, it raised flow-infer's peak memory by 6 MB and gained no time.)
#pragma once

#include <torch/torch.h>

namespace perceiver::ops {

torch::Tensor softmax(const torch::Tensor& x);

}  // namespace perceiver::ops

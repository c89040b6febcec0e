// Softmax over the last dim for the attention scores: oneDNN's for float32 CPU tensors (faster than
// ATen's on the attention's score shapes), ATen's everywhere else (other dtypes, CUDA, tracing for
// export, a build without oneDNN, PERCEIVER_MATMUL=aten). The backward is ATen's softmax backward.
// It writes a new tensor: writing over its input cost peak memory and gained no time
// (docs/performance.md has the figures).
#pragma once

#include <torch/torch.h>

namespace perceiver::ops {

torch::Tensor softmax(const torch::Tensor& x);

}  // namespace perceiver::ops

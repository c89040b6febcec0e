// What the ops that run on oneDNN (matmul.cpp, softmax.cpp) share: whether to use it, its CPU engine
// and how a tensor is described to it. Internal to the library, and only where the build has oneDNN.
#pragma once

#if PERCEIVER_WITH_ONEDNN

#include <torch/torch.h>

#include <dnnl.hpp>

namespace perceiver::ops::onednn {

// False where PERCEIVER_MATMUL=aten is set in the environment (read once, at the first use).
bool requested();

// Requested, and no graph is being traced (an exported graph must hold ATen ops).
bool active();

// A CPU tensor oneDNN reads as it is: strided, not empty, no lazy negation or conjugation (the dtype
// is the caller's to check).
bool readable(const torch::Tensor& t);

// oneDNN's name for a float32 or bfloat16 dtype.
dnnl::memory::data_type data_type(torch::ScalarType dtype);

// t's sizes, strides and dtype, as oneDNN reads them.
dnnl::memory::desc describe(const torch::Tensor& t);

const dnnl::engine& cpu_engine();

}  // namespace perceiver::ops::onednn

#endif  // PERCEIVER_WITH_ONEDNN

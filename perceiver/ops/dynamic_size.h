// Sizes that stay free in a TorchScript export (perceiver/export/export.h). LibTorch's tracer records every
// number a C++ forward reads with size() as a constant, so a traced module would accept only the
// example's batch size. A DynamicSize taken from a tensor (DynamicSize::of) also carries, while
// tracing, that tensor's traced aten::size; the ops below hand it to the tracer in place of the
// number. Outside a trace they are the plain ATen ops on the numbers: eager results do not change.
#pragma once

#include <torch/types.h>

#include <vector>

namespace perceiver {

class DynamicSize {
 public:
  DynamicSize(int64_t value = 0) : value_(value) {}  // NOLINT(google-explicit-constructor): a fixed size
  // t.size(dim), recorded as aten::size(t, dim) when tracing.
  static DynamicSize of(const torch::Tensor& t, int64_t dim);
  int64_t value() const { return value_; }
  // The 0-dim tensor the tracer knows as this size; undefined for a fixed size and outside a trace.
  const torch::Tensor& traced() const { return traced_; }
  DynamicSize operator+(const DynamicSize& other) const;

 private:
  int64_t value_;
  torch::Tensor traced_;
};

namespace dynamic {

// t.expand(sizes); -1 keeps that dimension.
torch::Tensor expand(const torch::Tensor& t, const std::vector<DynamicSize>& sizes);
// t.reshape(sizes).
torch::Tensor reshape(const torch::Tensor& t, const std::vector<DynamicSize>& sizes);
// t.narrow(dim, start, length).
torch::Tensor narrow(const torch::Tensor& t, int64_t dim, const DynamicSize& start, const DynamicSize& length);
// torch::arange(end, options).
torch::Tensor arange(const DynamicSize& end, const torch::TensorOptions& options);
// torch::full(sizes, value, options).
torch::Tensor full(const std::vector<DynamicSize>& sizes, double value, const torch::TensorOptions& options = {});

}  // namespace dynamic
}  // namespace perceiver

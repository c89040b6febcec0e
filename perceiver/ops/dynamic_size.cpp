#include "perceiver/ops/dynamic_size.h"

#include <torch/csrc/jit/frontend/tracer.h>

namespace perceiver {
namespace {

namespace tracer = torch::jit::tracer;

// The tracer's ArgumentStash holds traced values for the next recorded op that has an argument of
// that name (the ATen schema's), which then uses them instead of constants: how Python's tracer
// keeps `x.view(x.size(0), -1)` dynamic. Traced sizes exist only while tracing, so eager calls skip this.
std::vector<int64_t> stash_list(const char* argument, const std::vector<DynamicSize>& sizes) {
  std::vector<int64_t> values;
  values.reserve(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    values.push_back(sizes[i].value());
    if (sizes[i].traced().defined())
      tracer::ArgumentStash::stashIntArrayRefElem(argument, sizes.size(), i, sizes[i].traced());
  }
  return values;
}

int64_t stash_value(const char* argument, const DynamicSize& size) {
  if (size.traced().defined()) tracer::ArgumentStash::stashValue(argument, 0, size.traced(), c10::IntType::get());
  return size.value();
}

}  // namespace

DynamicSize DynamicSize::of(const torch::Tensor& t, int64_t dim) {
  DynamicSize size(t.size(dim));
  if (tracer::isTracing()) size.traced_ = tracer::getSizeOf(t, dim);
  return size;
}

DynamicSize DynamicSize::operator+(const DynamicSize& other) const {
  DynamicSize sum(value_ + other.value_);
  if (traced_.defined() && other.traced_.defined()) {
    sum.traced_ = traced_ + other.traced_;
  } else if (traced_.defined() || other.traced_.defined()) {
    sum.traced_ = traced_.defined() ? traced_ + other.value_ : other.traced_ + value_;
  }
  return sum;
}

namespace dynamic {

torch::Tensor expand(const torch::Tensor& t, const std::vector<DynamicSize>& sizes) {
  return t.expand(stash_list("size", sizes));
}

torch::Tensor reshape(const torch::Tensor& t, const std::vector<DynamicSize>& sizes) {
  return t.reshape(stash_list("shape", sizes));
}

torch::Tensor narrow(const torch::Tensor& t, int64_t dim, const DynamicSize& start, const DynamicSize& length) {
  const int64_t s = stash_value("start", start);
  return t.narrow(dim, s, stash_value("length", length));
}

torch::Tensor arange(const DynamicSize& end, const torch::TensorOptions& options) {
  return torch::arange(stash_value("end", end), options);
}

torch::Tensor full(const std::vector<DynamicSize>& sizes, double value, const torch::TensorOptions& options) {
  return torch::full(stash_list("size", sizes), value, options);
}

}  // namespace dynamic
}  // namespace perceiver

// Debian's libtorch-dev does not ship this header, but c10d's reducer.hpp includes it.
// The Reducer only holds a pointer to DistAutogradContext, so a declaration is enough.
#pragma once
#include <functional>
#include <memory>
#include <ATen/core/Tensor.h>

namespace torch::distributed::autograd {
class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};
using ContextPtr = std::shared_ptr<DistAutogradContext>;
}  // namespace torch::distributed::autograd

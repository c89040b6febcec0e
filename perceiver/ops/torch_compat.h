// The few LibTorch calls whose spelling differs between Debian's 1.13 and the 2.x releases that
// ship with Python's torch (the CUDA build): every version test of the project lives in
// torch_compat.cpp.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <torch/version.h>
#if TORCH_VERSION_MAJOR < 2
#include <c10/util/string_utils.h>
#endif

#include <string>

namespace perceiver::compat {

// Turns autocast for `device_type` (kCPU or kCUDA) on with `dtype`, or off.
void set_autocast(c10::DeviceType device_type, bool enabled, c10::ScalarType dtype);
bool autocast_enabled(c10::DeviceType device_type);
// The dtype autocast for `device_type` casts to (when enabled).
c10::ScalarType autocast_dtype(c10::DeviceType device_type);
// Autocast's nesting count and its cache of casted weights (cleared when the outermost guard ends).
void enter_autocast();
void leave_autocast();

// TF32 for CUDA matmuls (cuBLAS) and convolutions (cuDNN).
void set_allow_tf32(bool allow);

// The key of a parameter in torch::optim::Optimizer's state map: a string in 1.13, the TensorImpl
// pointer from 2.0 on.
inline auto optimizer_state_key(const at::Tensor& p) {
#if TORCH_VERSION_MAJOR >= 2
  return static_cast<void*>(p.unsafeGetTensorImpl());
#else
  return c10::guts::to_string(p.unsafeGetTensorImpl());
#endif
}

// The linked LibTorch's version, e.g. "1.13.1" or "2.11.0".
std::string torch_version();

}  // namespace perceiver::compat

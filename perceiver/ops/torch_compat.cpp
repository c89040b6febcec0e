#include "perceiver/ops/torch_compat.h"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace perceiver::compat {

// 2.4 replaced the per-device autocast setters by ones that take the device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define PERCEIVER_AUTOCAST_BY_DEVICE_TYPE 1
#else
#define PERCEIVER_AUTOCAST_BY_DEVICE_TYPE 0
#endif

void set_autocast(c10::DeviceType device_type, bool enabled, c10::ScalarType dtype) {
#if PERCEIVER_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(device_type, dtype);
  at::autocast::set_autocast_enabled(device_type, enabled);
#else
  if (device_type == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

bool autocast_enabled(c10::DeviceType device_type) {
#if PERCEIVER_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(device_type);
#else
  return device_type == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

c10::ScalarType autocast_dtype(c10::DeviceType device_type) {
#if PERCEIVER_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(device_type);
#else
  return device_type == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                              : at::autocast::get_autocast_cpu_dtype();
#endif
}

void enter_autocast() { at::autocast::increment_nesting(); }

void leave_autocast() {
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
}

void set_allow_tf32(bool allow) {
  at::globalContext().setAllowTF32CuBLAS(allow);
  at::globalContext().setAllowTF32CuDNN(allow);
}

std::string torch_version() { return TORCH_VERSION; }

}  // namespace perceiver::compat
